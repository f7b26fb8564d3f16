"""A hexdump whose flipped bytes are coloured: the rows come from
:func:`mailkit.trace.hexdump_rows`, the same rows the text hexdump prints."""

from __future__ import annotations

from ..trace import HexRow, bits_word, flipped_bytes, hexdump_rows
from .drawing import COLOURS, Shown, esc

__all__ = ["HexdumpView", "hexdump_html"]


class HexdumpView(Shown):
    """A hexdump of *data* (the bytes as they arrived) with the bytes in
    *flips* (``(byte, bit)`` pairs) coloured (HTML) or marked with carets
    (text), and one line per flipped byte spelling out its bits before and
    after.  ``.text`` is :func:`mailkit.trace.hexdump`'s output (only the
    rows shown) and those lines; ``.html`` the coloured version.

    With *context* ``= k``, only the rows with a flip and *k* rows on either
    side are shown (``…`` marks the rows left out).
    """

    WIDTH = 16

    def __init__(self, data: bytes, flips=(), *, context: int | None = None):
        self.data = bytes(data)
        self.flips = tuple((int(b), int(bit)) for b, bit in flips)
        self.context = context
        self.rows = hexdump_rows(self.data, self.flips, width=self.WIDTH)
        # byte -> its flipped bits (negative byte indices count from the end)
        self.marked = flipped_bytes(self.data, self.flips)

    def shown_rows(self) -> list[HexRow | None]:
        """The rows to show, with ``None`` where rows are left out."""
        if self.context is None or not self.marked:
            return list(self.rows)
        near = {byte // self.WIDTH + k for byte in self.marked
                for k in range(-self.context, self.context + 1)}
        shown: list[HexRow | None] = []
        for i, row in enumerate(self.rows):
            if i in near:
                shown.append(row)
            elif shown[-1:] != [None]:
                shown.append(None)
        return shown

    def _bit_lines(self) -> list[tuple[int, tuple[int, ...], int, int]]:
        """(byte, its flipped bits, value as arrived, value as sent) per flipped byte."""
        out = []
        for byte, bits in self.marked.items():
            now = before = self.data[byte]
            for bit in bits:
                before ^= 1 << bit
            out.append((byte, bits, now, before))
        return out

    @property
    def text(self) -> str:
        lines = []
        for row in self.shown_rows():
            if row is None:
                lines.append("   …")
            else:
                lines += [row.line, row.carets] if row.flips else [row.line]
        for byte, bits, now, before in self._bit_lines():
            lines.append(f"byte {byte}, {bits_word(bits)}: sent 0x{before:02x} {before:08b} "
                         f"{_shown(before)} -> arrived 0x{now:02x} {now:08b} {_shown(now)}")
        return "\n".join(lines)

    @property
    def html(self) -> str:
        flip = COLOURS["flip"]
        hot = f'style="background:#ffe3ec;color:{flip};font-weight:bold"'
        lines = []
        for row in self.shown_rows():
            if row is None:
                lines.append("   …")
                continue
            hexes, chars = [], []
            for i, h, c in row.cells():
                c = esc(c)
                if i in row.flips:
                    h, c = f"<span {hot}>{h}</span>", f"<span {hot}>{c}</span>"
                hexes.append(h)
                chars.append(c)
            pad = "   " * (row.width - len(row.data))
            lines.append(f"{row.offset:08x}  {' '.join(hexes)}{pad}  |{''.join(chars)}|")
            if row.flips:
                lines.append(f'<span style="color:{flip}">{row.carets}</span>')
        for byte, bits, now, before in self._bit_lines():
            lines.append(f"byte {byte}, {bits_word(bits)}: sent 0x{before:02x} "
                         f"{_bits_html(before, bits)} {esc(_shown(before))} -> arrived 0x{now:02x} "
                         f"{_bits_html(now, bits)} {esc(_shown(now))}")
        body = "\n".join(lines)
        return (f'<pre style="font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;'
                f'font-size:12px;line-height:1.35">{body}</pre>')

    def _repr_html_(self) -> str:
        return self.html


hexdump_html = HexdumpView


def _shown(b: int) -> str:
    return repr(chr(b)) if 32 <= b < 127 else "(unprintable)"


def _bits_html(value: int, bits) -> str:
    """The 8 bits of *value*, most significant first, the flipped *bits* highlighted."""
    flip = COLOURS["flip"]
    out = []
    for pos, ch in enumerate(f"{value:08b}"):
        if 7 - pos in bits:
            out.append(f'<span style="background:#ffe3ec;color:{flip};font-weight:bold;'
                       f'text-decoration:underline">{ch}</span>')
        else:
            out.append(ch)
    return "".join(out)
