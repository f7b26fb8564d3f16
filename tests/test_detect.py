"""mailkit.detect: the checks agree with their definitions and the tables are reproducible."""

from __future__ import annotations

import binascii
import hashlib
import random
import zlib

from mailkit import detect as D
from mailkit import make_frame


def test_internet_checksum_rfc1071_example_and_properties():
    data = bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7])   # RFC 1071 §3: sum ddf2
    assert D.internet_checksum(data) == 0x220D
    assert D.internet_checksum(b"") == 0xFFFF
    assert D.internet_checksum(b"\x01") == D.internet_checksum(b"\x01\x00")   # odd: padded
    rng = random.Random(5)
    for _ in range(50):
        msg = rng.randbytes(rng.randrange(0, 300) * 2)
        c = D.internet_checksum(msg)
        # a receiver summing the data and the checksum gets all ones (checksum 0)
        assert D.internet_checksum(msg + c.to_bytes(2, "big")) == 0


def test_crc32_and_sha1_are_the_standard_ones():
    assert D.crc32(b"123456789") == 0xCBF43926          # the CRC-32 check value
    assert D.crc32(b"abc") == binascii.crc32(b"abc") == zlib.crc32(b"abc")
    assert D.sha1(b"abc") == hashlib.sha1(b"abc").hexdigest()


def test_the_pair_a_byte_sum_misses_is_caught_by_rfc1071_and_a_blind_pair_exists():
    frame = make_frame("0123456789", "email", "bob", "Lunch", "Shall we meet at noon by the fountain?")
    content = frame.rpartition(b"#")[0]
    adjacent = ((27, 0), (28, 0))                        # notebook 04's byte-sum blind pair
    verdicts = {n: caught for n, _, _, caught in D.compare(content, D.flip(content, adjacent)).rows}
    assert verdicts == {"byte sum": False, "Internet checksum": True, "CRC-32": True, "SHA-1": True}
    blind = D.internet_blind_flips(content, start=27)
    assert (blind[1][0] - blind[0][0]) % 2 == 0
    verdicts = {n: caught for n, _, _, caught in D.compare(content, D.flip(content, blind)).rows}
    assert verdicts == {"byte sum": False, "Internet checksum": False, "CRC-32": True, "SHA-1": True}


def test_detection_table_is_seeded_and_crc_misses_nothing_it_guarantees():
    data = make_frame("0123456789", "email", "bob", "Lunch", "Shall we meet?").rpartition(b"#")[0]
    kinds = ["1 random bit", "2 random bits", "3 random bits", "burst of 32 bits"]
    t1 = D.detection_table(data, trials=300, kinds=kinds)
    assert t1.text == D.detection_table(data, trials=300, kinds=kinds).text
    assert t1.missed["CRC-32"] == [0, 0, 0, 0] and t1.missed["SHA-1"] == [0, 0, 0, 0]
    assert t1.missed["Internet checksum"][0] == 0 and t1.missed["byte sum"][0] == 0
    assert t1.missed["Internet checksum"][1] > 0        # some 2-bit patterns cancel
    assert t1.missed["byte sum"][1] >= t1.missed["Internet checksum"][1]


def test_burst_has_its_length():
    rng = random.Random(3)
    for length in (1, 2, 16, 32):
        flips = D.burst(rng, 100, length)
        pos = sorted(byte * 8 + (7 - bit) for byte, bit in flips)
        assert pos[-1] - pos[0] + 1 == length


def test_cost_table_names_every_check():
    table = D.cost_per_mb(megabytes=1, repeat=1)
    assert set(table.ms_per_mb) == set(D.CHECKS) and all(v > 0 for v in table.ms_per_mb.values())
    assert table.text.count("ms per MB") == 4
