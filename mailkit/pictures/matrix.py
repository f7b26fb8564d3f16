"""The class interop matrix as a picture: a row per server, a column per
client, each cell coloured by what got through (``conform matrix --svg``)."""

from __future__ import annotations

from .drawing import COLOURS, esc, svg_open

__all__ = ["matrix_svg", "STATUS_COLOURS"]

# ok: every mail once; lossy: some lost, none twice; broken: twice, none, or no login.
STATUS_COLOURS = {"ok": COLOURS["OK"], "lossy": COLOURS["KO"], "broken": COLOURS["ERROR"]}
CELL_W, CELL_H, GAP = 96, 34, 4


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


def matrix_svg(rows: list[str], cols: list[str], cells) -> str:
    """An SVG of the matrix; *cells[i][j]* has ``status`` and ``label``
    (a :class:`mailkit.conform.matrix.Cell`)."""
    left = 24 + int(7.3 * min(44, max((len(r) for r in rows), default=8)))   # 12 px monospace: ~7.2 px a character
    top = 40 + 16 * len(cols) + 24
    width = max(left + len(cols) * (CELL_W + GAP) + 12, 12 + int(7.3 * (6 + max((len(c) for c in cols), default=0))))
    height = top + len(rows) * (CELL_H + GAP) + 40
    out = [svg_open(width, height),
           f'<text x="12" y="20" font-weight="bold" fill="{COLOURS["ink"]}">'
           f'who interoperates with whom (clients across, servers down)</text>']
    for j, name in enumerate(cols):
        out.append(f'<text x="12" y="{40 + 16 * j}" fill="{COLOURS["ink"]}">C{j + 1} = {esc(_short(name, 80))}</text>')
    for j in range(len(cols)):
        x = left + j * (CELL_W + GAP) + CELL_W / 2
        out.append(f'<text x="{x}" y="{top - 6}" text-anchor="middle" fill="{COLOURS["ink"]}">C{j + 1}</text>')
    for i, (name, row) in enumerate(zip(rows, cells)):
        y = top + i * (CELL_H + GAP)
        out.append(f'<text x="12" y="{y + CELL_H / 2 + 4}" fill="{COLOURS["ink"]}">{esc(_short(name, 44))}</text>')
        for j, cell in enumerate(row):
            x = left + j * (CELL_W + GAP)
            colour = STATUS_COLOURS.get(cell.status, COLOURS["no reply"])
            out.append(f'<rect x="{x}" y="{y}" width="{CELL_W}" height="{CELL_H}" rx="4" fill="{colour}">'
                       f'<title>{esc(cell.detail)}</title></rect>')
            out.append(f'<text x="{x + CELL_W / 2}" y="{y + CELL_H / 2 + 4}" text-anchor="middle" '
                       f'fill="white">{esc(cell.label)}</text>')
    legend_y = top + len(rows) * (CELL_H + GAP) + 20
    x = 12
    for status, colour in STATUS_COLOURS.items():
        out.append(f'<rect x="{x}" y="{legend_y - 11}" width="14" height="14" fill="{colour}"/>'
                   f'<text x="{x + 20}" y="{legend_y}" fill="{COLOURS["ink"]}">{status}</text>')
        x += 110
    out.append("</svg>")
    return "\n".join(out)
