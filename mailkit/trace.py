"""Transcripts: a record of every exchange a client made, for students to read.

An :class:`Exchange` is one attempt: the bytes the client meant to send, the
bytes that went on the wire (different if a bit was flipped), the reply and
how long it took.  A :class:`Transcript` is a list of them, printable as a
table or as a text sequence diagram, and :func:`hexdump` shows bytes with
flipped bits marked by carets.  :func:`hexdump_rows` gives the same rows as
data, for the coloured hexdump of :mod:`mailkit.pictures` (where the drawn
pictures live).  This module needs nothing but the standard library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .protocol import parse_reply
from .text import clip, plural

__all__ = ["Exchange", "Transcript", "hexdump", "hexdump_rows", "HexRow", "bits_word", "flipped_bytes"]


@dataclass
class Exchange:
    """One request and its reply, on one connection."""

    command: str                     # "login", "email", ...
    attempt: int                     # 1 for the first try, 2 for the first retry, ...
    intended: bytes                  # what the client meant to send
    request: bytes                   # what went on the wire
    reply: bytes = b""               # b"" when the connection closed without one
    started: float = field(default_factory=time.time)
    duration: float = 0.0            # seconds, connect to close
    flips: tuple[tuple[int, int], ...] = ()   # (byte, bit) flipped by a channel
    error: str = ""                  # the connection error, if there was one

    @property
    def corrupted(self) -> bool:
        return self.request != self.intended

    @property
    def timed_out(self) -> bool:
        """True when the client gave up waiting (``error`` says after how long)."""
        return self.error.startswith("timed out")

    @property
    def outcome(self) -> str:
        """``OK``, ``KO``, ``ERROR``, or ``no reply``."""
        if self.error or not self.reply:
            return "no reply"
        return parse_reply(self.reply).kind

    def summary(self) -> str:
        reply = self.reply.decode("utf-8", "replace").split("\n", 1)[0] or f"({self.error or 'no reply'})"
        flips = f"  flipped {', '.join(f'bit {b} of byte {i}' for i, b in self.flips)}" if self.flips else ""
        return f"#{self.attempt} {self.command:<7} {len(self.request):>6} B -> {clip(reply, 48)}{flips}"


class Transcript(list):
    """Every :class:`Exchange` of a client, oldest first."""

    def last(self, n: int = 1) -> "Transcript":
        return Transcript(self[-n:])

    def attempts(self) -> int:
        return len(self)

    def to_text(self) -> str:
        """One line per exchange: attempt, command, size, reply, flips."""
        return "\n".join(e.summary() for e in self) or "(no exchanges yet)"

    def sequence(self, width: int = 64) -> str:
        """A text sequence diagram: client on the left, server on the right."""
        inner = width - 16
        lines = ["client" + " " * (width - 12) + "server"]
        for e in self:
            req = e.request.decode("utf-8", "replace").split("#", 1)[0]
            mark = " (bit flipped!)" if e.corrupted else ""
            lines.append(f"  |--{clip(f'{e.command} #{e.attempt}{mark}', inner):-<{inner}}->|")
            rep = (e.reply.decode("utf-8", "replace").split("\n", 1)[0]
                   or f"({e.error if e.timed_out else 'no reply'})")
            lines.append(f"  |<-{clip(rep, inner):-<{inner}}--|")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


@dataclass(frozen=True)
class HexRow:
    """One row of a hexdump, as data: where it starts, its bytes, and the
    flipped bits of the bytes in it.  :func:`hexdump` prints rows as text;
    :mod:`mailkit.pictures` draws the same rows as coloured HTML."""

    offset: int                                   # index of the row's first byte
    data: bytes                                   # the row's bytes (the last row may be short)
    width: int                                    # bytes in a full row
    flips: dict[int, tuple[int, ...]]             # byte index -> its flipped bits, sorted

    def cells(self) -> list[tuple[int, str, str]]:
        """(byte index, two hex digits, the character shown) per byte."""
        return [(i, f"{b:02x}", chr(b) if 32 <= b < 127 else ".")
                for i, b in enumerate(self.data, self.offset)]

    @property
    def line(self) -> str:
        """The row as text: offset, hex digits, characters."""
        cells = self.cells()
        hexes = " ".join(h for _, h, _ in cells)
        text = "".join(c for _, _, c in cells)
        return f"{self.offset:08x}  {hexes:<{self.width * 3 - 1}}  |{text}|"

    @property
    def carets(self) -> str:
        """The line under the row: ``^^`` under the hex digits and ``^``
        under the character of every flipped byte, then which bits flipped;
        ``""`` when no byte of the row flipped."""
        if not self.flips:
            return ""
        hexline, textline = [" "] * (self.width * 3), [" "] * self.width
        for i in self.flips:
            c = i - self.offset
            hexline[c * 3] = hexline[c * 3 + 1] = "^"
            textline[c] = "^"
        notes = ", ".join(f"byte {i}: {bits_word(bits)}" for i, bits in sorted(self.flips.items()))
        return f"{'':8}  {''.join(hexline)[: self.width * 3 - 1]}   {''.join(textline)}  {notes}"


def bits_word(bits) -> str:
    """``"bit 3"``, ``"bits 0 and 2"``."""
    return f"{plural(len(bits), 'bit', count=False)} {' and '.join(map(str, bits))}"


def flipped_bytes(data: bytes, flips) -> dict[int, tuple[int, ...]]:
    """Byte index -> its flipped bits (sorted, each once), for the *flips*
    (``(byte, bit)`` pairs; a negative byte counts from the end) that fall
    inside *data*."""
    marked: dict[int, set[int]] = {}
    for byte, bit in flips:
        byte = byte + len(data) if byte < 0 else byte
        if 0 <= byte < len(data):
            marked.setdefault(byte, set()).add(bit)
    return {byte: tuple(sorted(bits)) for byte, bits in sorted(marked.items())}


def hexdump_rows(data: bytes, flips=(), *, width: int = 16) -> list[HexRow]:
    """The rows of a hexdump of *data*, *width* bytes each, with the
    *flips* (``(byte, bit)`` pairs) of each row's bytes."""
    marked = flipped_bytes(data, flips)
    return [HexRow(row, data[row: row + width], width,
                   {i: bits for i, bits in marked.items() if row <= i < row + width})
            for row in range(0, len(data), width)]


def hexdump(data: bytes, flips=(), *, width: int = 16) -> str:
    """A hexdump of *data*; bytes at the positions in *flips* ((byte, bit)
    pairs) are marked with a caret line under them, so the flipped bit reads
    in plain text too."""
    lines = []
    for row in hexdump_rows(data, flips, width=width):
        lines.append(row.line)
        if row.flips:
            lines.append(row.carets)
    return "\n".join(lines)
