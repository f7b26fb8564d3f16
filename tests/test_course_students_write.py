"""The exercises where students write the protocol: Go-Back-N's receiver
(notebook 07, checked inside pipelining.simulate) and TCP's checksum with
its pseudo-header over the capture's own segments (notebook 08)."""

from __future__ import annotations

import pytest

from mailkit import detect, pipelining
from mailkit.course import exercises as X
from mailkit.course_tcp import check_tcp_checksum, load_capture, tcp_checksum_cases


def stub(*args):
    raise NotImplementedError


# -- 07 · Go-Back-N's receiver --------------------------------------------------

def right_gbn(expected, n):
    if n == expected:
        return True, n, expected + 1
    return False, expected - 1, expected          # -1: "nothing yet", as K&R's initial ACK


def test_the_simulation_with_the_builtin_receiver_is_unchanged():
    # the numbers notebook 07 states (181 and 137 sends) come from the same rule
    assert pipelining.simulate("gbn", window=4, loss=0.1, seed=1).sends == 181
    assert pipelining.simulate("gbn", window=4, loss=0.1, seed=1, receiver=right_gbn).sends == 181


def test_a_right_gbn_receiver_passes_and_the_stub_shows_no_hint():
    assert X.check_gbn_receiver(right_gbn).right
    assert X.check_gbn_receiver(pipelining.gbn_receiver).right
    stubbed = X.check_gbn_receiver(stub)
    assert stubbed.stub and "Hint" not in stubbed.text


@pytest.mark.parametrize("name, wrong, words", [
    ("delivers whatever comes (a receiver without order)",
     lambda e, n: (True, n, max(e, n + 1)), ["Should it be delivered"]),
    ("acknowledges each packet, not cumulatively (SR's ACK with GBN's sender)",
     lambda e, n: (True, n, e + 1) if n == e else (False, n, e), ["you acknowledged 1"]),
    ("right on single packets, but skips packet 50 (only the simulation sees it)",
     lambda e, n: (True, n, e + 1 + (n == 49)) if n == e else (False, e - 1, e), ["never delivered"]),
    ("no ACK for a packet out of order",
     lambda e, n: (True, n, e + 1) if n == e else (False, None, e), ["you acknowledged None"]),
    ("acknowledges the packet it expects next (one too far)",
     lambda e, n: (True, n + 1, e + 1) if n == e else (False, e, e), ["you acknowledged"]),
    ("never moves on",
     lambda e, n: (n == e, n, e), ["which packet comes next"]),
    ("buffers out of order and delivers later (SR's receiver, with GBN's sender)",
     None, ["Should it be delivered"]),
    ("returns two values", lambda e, n: (n == e, e), ["three values"]),
    ("raises on a packet out of order", lambda e, n: 1 // (n == e) and (True, n, e + 1), ["ZeroDivisionError"]),
])
def test_wrong_gbn_receivers_are_rejected(name, wrong, words):
    if wrong is None:
        held = set()

        def wrong(e, n):                               # noqa: F811 - a receiver with a buffer
            held.add(n)
            if n != e:
                return True, n, e                      # "keeps" it: not GBN
            while e in held:
                e += 1
            return True, e - 1, e
    verdict = X.check_gbn_receiver(wrong)
    assert not verdict and not verdict.stub, name
    assert verdict.text.endswith("Hint: " + X.HINTS["gbn_receiver"])
    for w in words:
        assert w in verdict.text, (name, verdict.text)


# -- 08 · TCP's checksum with its pseudo-header ----------------------------------

def pseudo(src, dst, segment, *, protocol=bytes([0, 6]), length=None):
    length = len(segment) if length is None else length
    return src + dst + protocol + length.to_bytes(2, "big")


def right_tcp(src, dst, segment):
    return detect.internet_checksum(pseudo(src, dst, segment) + segment)


def sum_words(data: bytes, *, pad=True) -> int:
    if len(data) % 2 and pad:
        data += b"\x00"
    return sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data) - 1, 2))


def folded_once(src, dst, segment):
    total = sum_words(pseudo(src, dst, segment) + segment)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def not_padded(src, dst, segment):
    total = sum_words(pseudo(src, dst, segment) + segment, pad=False)     # drops an odd last byte
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@pytest.fixture(scope="module")
def capture():
    return load_capture()


def test_the_cases_are_the_captures_segments_odd_ones_included(capture):
    cases = tcp_checksum_cases(capture)
    assert len(cases) == len(capture.segments) + 1
    assert sum(len(c.segment) % 2 for c in cases) >= 3
    [rst] = [c for c in cases if "RST" in c.name]
    [segment] = [s for s in capture.segments if s.flags & 0x04]
    assert rst.want == int.from_bytes(segment.tcp_header[16:18], "big")    # what the kernel wrote
    made_up = cases[-1]
    assert folded_once(made_up.src, made_up.dst, made_up.segment) != made_up.want


def test_a_right_tcp_checksum_passes(capture):
    assert repr(check_tcp_checksum(right_tcp, capture)).startswith("✓ right")
    assert repr(check_tcp_checksum(stub, capture)).startswith("· not answered yet")
    assert "Hint" not in repr(check_tcp_checksum(stub, capture))


@pytest.mark.parametrize("name, wrong, words", [
    ("no pseudo-header (notebook 04's checksum of the segment)",
     lambda s, d, g: detect.internet_checksum(g), ["pseudo-header too"]),
    ("the carry folded only once", folded_once, ["carry again"]),
    ("an odd last byte dropped, not padded", not_padded, ["odd length"]),
    ("the pseudo-header's length without the TCP header",
     lambda s, d, g: detect.internet_checksum(pseudo(s, d, g, length=len(g) - 20) + g), ["length"]),
    ("zero and protocol swapped",
     lambda s, d, g: detect.internet_checksum(pseudo(s, d, g, protocol=bytes([6, 0])) + g), ["field by field"]),
    ("addresses swapped (harmless for a sum: caught only if order mattered)", None, []),
    ("the sum, not its complement",
     lambda s, d, g: ~right_tcp(s, d, g) & 0xFFFF, ["complement"]),
    ("bytes returned", lambda s, d, g: right_tcp(s, d, g).to_bytes(2, "big"), ["as an int"]),
])
def test_wrong_tcp_checksums_are_rejected(capture, name, wrong, words):
    if wrong is None:
        # one's-complement addition commutes: src and dst swapped give the same checksum,
        # and the check must not call that wrong
        swapped = lambda s, d, g: detect.internet_checksum(pseudo(d, s, g) + g)   # noqa: E731
        assert repr(check_tcp_checksum(swapped, capture)).startswith("✓ right")
        return
    verdict = repr(check_tcp_checksum(wrong, capture))
    assert verdict.startswith("✗ not yet"), (name, verdict)
    for w in words:
        assert w in verdict, (name, verdict)
