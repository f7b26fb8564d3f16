"""Tests for mailkit.trace: exchanges, transcripts and hexdumps (pure, no sockets)."""
from __future__ import annotations

import math
import re

import pytest

from mailkit.noise import flip_bit
from mailkit.protocol import make_frame
from mailkit.trace import Exchange, HexRow, Transcript, bits_word, flipped_bytes, hexdump, hexdump_rows

FRAME = make_frame("0123456789", "email", "bob", "Hello", "How are you?")
FLIPPED = flip_bit(FRAME, 17, 3)
LISTING = b"OK: 1 message\n--- message 1 of 1 ---\nFrom: alice\n"


def exchange(reply: bytes = b"OK: Email Sent", *, attempt: int = 1, flips=(), error: str = "",
             command: str = "email") -> Exchange:
    wire = FRAME
    for byte, bit in flips:
        wire = flip_bit(wire, byte, bit)
    return Exchange(command, attempt, FRAME, wire, reply, flips=tuple(flips), error=error)


# -- Exchange -----------------------------------------------------------------

@pytest.mark.parametrize("reply, error, outcome", [
    (b"OK: Email Sent", "", "OK"),
    (b"OK:1234567890", "", "OK"),
    (LISTING, "", "OK"),
    (b"3", "", "OK"),
    (b"KO", "", "KO"),
    (b"KO: wrong username or password", "", "ERROR"),
    (b"ERROR: unknown recipient 'zed'", "", "ERROR"),
    (b"", "", "no reply"),
    (b"", "ConnectionResetError: [Errno 104] Connection reset by peer", "no reply"),
    (b"OK", "TimeoutError: timed out", "no reply"),    # an error wins over a partial reply
])
def test_exchange_outcome(reply, error, outcome):
    assert exchange(reply, error=error).outcome == outcome


def test_exchange_corrupted():
    assert not exchange().corrupted
    assert exchange(b"KO", flips=[(17, 3)]).corrupted
    assert exchange(b"KO", flips=[(17, 3), (17, 3)]).corrupted is False   # flipped back


# -- Transcript -----------------------------------------------------------------

def story() -> Transcript:
    """Login, a flipped email answered KO, its retry, a listing, a lost reply."""
    return Transcript([
        Exchange("login", 1, b"alice:wonderland", b"alice:wonderland", b"OK:1234567890"),
        exchange(b"KO", attempt=1, flips=[(17, 3)]),
        exchange(b"OK: Email Sent", attempt=2),
        exchange(LISTING, command="dump"),
        exchange(b"", command="count", error="ConnectionResetError: reset"),
    ])


def test_to_text_is_one_line_per_exchange():
    t = story()
    lines = t.to_text().splitlines()
    assert len(lines) == len(t) == t.attempts() == 5
    assert "flipped bit 3 of byte 17" in lines[1]
    assert "flipped" not in lines[0] + lines[2]
    assert lines[1].startswith("#1 email") and lines[2].startswith("#2 email")
    assert lines[1].rstrip().endswith("flipped bit 3 of byte 17") and "-> KO" in lines[1]
    assert "-> OK: 1 message" in lines[3] and "From: alice" not in lines[3]   # first line only
    assert "ConnectionResetError" in lines[4]
    assert str(t) == t.to_text()


def test_to_text_names_every_flip():
    line = Transcript([exchange(b"KO", flips=[(17, 3), (40, 0)])]).to_text()
    assert "\n" not in line
    assert "bit 3 of byte 17" in line and "bit 0 of byte 40" in line


def test_empty_transcript_says_so():
    assert Transcript().to_text() == "(no exchanges yet)"
    assert Transcript().sequence().splitlines() == [Transcript().sequence()]   # header only


def test_last_keeps_the_newest():
    t = story()
    assert isinstance(t.last(2), Transcript)
    assert list(t.last(2)) == t[-2:]
    assert list(t.last()) == [t[-1]]


@pytest.mark.parametrize("width", [40, 64, 100])
def test_sequence_has_a_header_and_two_lines_per_exchange(width):
    t = story()
    lines = t.sequence(width=width).splitlines()
    assert len(lines) == 1 + 2 * len(t)
    assert lines[0].startswith("client") and lines[0].endswith("server")
    arrows_out, arrows_back = lines[1::2], lines[2::2]
    assert all(a.startswith("  |--") and a.endswith("->|") for a in arrows_out)
    assert all(a.startswith("  |<-") and a.endswith("--|") for a in arrows_back)
    assert len({len(a) for a in lines[1:]}) == 1          # every arrow is as long as the others
    assert "bit flipped!" in lines[3] and "bit flipped!" not in lines[5]
    assert "KO" in lines[4]
    assert "(no reply)" in lines[10]


# -- hexdump ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 32, 33, 100])
def test_hexdump_is_one_line_per_16_bytes(size):
    data = bytes(range(256))[:size]
    lines = hexdump(data).splitlines()
    assert len(lines) == math.ceil(size / 16)
    for n, line in enumerate(lines):
        chunk = data[16 * n: 16 * n + 16]
        assert line.startswith(f"{16 * n:08x}  " + " ".join(f"{b:02x}" for b in chunk))
        assert line.endswith("|" + "".join(chr(b) if 32 <= b < 127 else "." for b in chunk) + "|")


def test_hexdump_rows_line_up():
    lines = hexdump(bytes(range(40))).splitlines()
    assert len({line.index("|") for line in lines}) == 1


def _columns(data_line: str, column: int) -> tuple[int, int]:
    """Where byte *column* of a row is printed: its hex digits and its text character."""
    hex_at = 10 + 3 * column            # "00000010  " then "xx " per byte
    text_at = data_line.index("|") + 1 + column
    return hex_at, text_at


def test_hexdump_marks_a_flipped_byte():
    lines = hexdump(FLIPPED, [(17, 3)]).splitlines()
    assert len(lines) == math.ceil(len(FLIPPED) / 16) + 1
    row, carets = lines[1], lines[2]
    assert row.startswith("00000010")
    hex_at, text_at = _columns(row, 1)
    assert row[hex_at: hex_at + 2] == f"{FLIPPED[17]:02x}"
    assert row[text_at] == chr(FLIPPED[17])
    assert carets[hex_at: hex_at + 2] == "^^"
    assert carets[text_at] == "^"
    assert carets.count("^") == 3
    assert carets.rstrip().endswith("byte 17: bit 3")
    assert not carets[:8].strip()                       # no offset on a caret line
    # the rows without a flip are untouched
    assert [ln for i, ln in enumerate(lines) if i != 2] == hexdump(FLIPPED).splitlines()


def test_hexdump_marks_flips_in_several_rows():
    lines = hexdump(FLIPPED, [(0, 1), (17, 3), (20, 0)]).splitlines()
    assert len(lines) == math.ceil(len(FLIPPED) / 16) + 2
    assert lines[1].rstrip().endswith("byte 0: bit 1")
    assert lines[3].rstrip().endswith("byte 17: bit 3, byte 20: bit 0")
    assert lines[3].count("^") == 6
    hex_at, text_at = _columns(lines[2], 4)              # byte 20 is column 4 of row 16
    assert lines[3][hex_at: hex_at + 2] == "^^" and lines[3][text_at] == "^"


def test_hexdump_ignores_flips_outside_the_data():
    assert hexdump(b"abc", [(99, 0)]) == hexdump(b"abc")


def test_hexdump_names_both_bits_flipped_in_one_byte():
    carets = hexdump(FLIPPED, [(17, 3), (17, 5)]).splitlines()[2]
    notes = carets[carets.rindex("^") + 1:]
    assert re.search(r"\b3\b", notes) and re.search(r"\b5\b", notes), notes


# -- hexdump rows (the data behind the text and the coloured hexdump) -------------

def test_hexdump_rows_are_the_lines_of_hexdump():
    flips = [(0, 1), (17, 3), (17, 5), (20, 0)]
    rows = hexdump_rows(FLIPPED, flips)
    assert [r.offset for r in rows] == list(range(0, len(FLIPPED), 16))
    assert b"".join(r.data for r in rows) == FLIPPED
    assert rows[1].flips == {17: (3, 5), 20: (0,)} and rows[0].flips == {0: (1,)}
    assert all(not r.flips and r.carets == "" for r in rows[2:])
    text = [line for r in rows for line in ([r.line, r.carets] if r.flips else [r.line])]
    assert "\n".join(text) == hexdump(FLIPPED, flips)


def test_hexdump_row_cells():
    row = hexdump_rows(b"A\x00~\x7f", [(-1, 7)], width=8)[0]
    assert isinstance(row, HexRow) and row.width == 8
    assert row.cells() == [(0, "41", "A"), (1, "00", "."), (2, "7e", "~"), (3, "7f", ".")]
    assert row.flips == {3: (7,)}
    assert row.carets.endswith("byte 3: bit 7")


def test_flipped_bytes_counts_from_the_end_and_leaves_out_what_is_outside():
    assert flipped_bytes(b"abcdef", [(-1, 0), (2, 4), (2, 1), (2, 4), (6, 0), (-7, 0)]) == {
        2: (1, 4), 5: (0,)}


def test_a_flip_past_the_end_gets_no_caret_even_in_the_last_row():
    data = bytes(20)                                   # the last row has room for bytes 20..31
    assert hexdump(data, [(25, 1)]) == hexdump(data)


def test_bits_word():
    assert bits_word((3,)) == "bit 3"
    assert bits_word((0, 2)) == "bits 0 and 2"
