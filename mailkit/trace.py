"""Transcripts: a record of every exchange a client made, for students to read.

An :class:`Exchange` is one attempt: the bytes the client meant to send, the
bytes that went on the wire (different if a bit was flipped), the reply and
how long it took.  A :class:`Transcript` is a list of them, printable as a
table or as a text sequence diagram, and :func:`hexdump` shows bytes with
flipped bits marked by carets.  Drawn pictures (SVG sequence diagrams, a
coloured hexdump) live in :mod:`mailkit.pictures`.  This module needs
nothing but the standard library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .protocol import parse_reply

__all__ = ["Exchange", "Transcript", "hexdump"]


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
    def outcome(self) -> str:
        """``OK``, ``KO``, ``ERROR``, or ``no reply``."""
        if self.error or not self.reply:
            return "no reply"
        return parse_reply(self.reply).kind

    def summary(self) -> str:
        reply = self.reply.decode("utf-8", "replace").split("\n", 1)[0] or f"({self.error or 'no reply'})"
        flips = f"  flipped {', '.join(f'bit {b} of byte {i}' for i, b in self.flips)}" if self.flips else ""
        return f"#{self.attempt} {self.command:<7} {len(self.request):>6} B -> {_clip(reply, 48)}{flips}"


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
            lines.append(f"  |--{_clip(f'{e.command} #{e.attempt}{mark}', inner):-<{inner}}->|")
            rep = e.reply.decode("utf-8", "replace").split("\n", 1)[0] or "(no reply)"
            lines.append(f"  |<-{_clip(rep, inner):-<{inner}}--|")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def _clip(text: str, n: int) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 1] + "…"


def hexdump(data: bytes, flips=(), *, width: int = 16) -> str:
    """A hexdump of *data*; bytes at the positions in *flips* ((byte, bit)
    pairs) are marked with a caret line under them, so the flipped bit reads
    in plain text too."""
    marked: dict[int, list[int]] = {}
    for i, b in flips:
        marked.setdefault(i + len(data) if i < 0 else i, []).append(b)
    lines = []
    for row in range(0, len(data), width):
        chunk = data[row : row + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{row:08x}  {hexes:<{width * 3 - 1}}  |{text}|")
        carets = [i - row for i in marked if row <= i < row + width]
        if carets:
            hexline = [" "] * (width * 3)
            textline = [" "] * width
            for c in carets:
                hexline[c * 3] = hexline[c * 3 + 1] = "^"
                textline[c] = "^"
            notes = ", ".join(
                f"byte {i}: bit{'s' if len(marked[i]) > 1 else ''} {' and '.join(map(str, sorted(marked[i])))}"
                for i in sorted(marked) if row <= i < row + width
            )
            lines.append(f"{'':8}  {''.join(hexline)[: width * 3 - 1]}   {''.join(textline)}  {notes}")
    return "\n".join(lines)
