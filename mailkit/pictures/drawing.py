"""What every picture shares: the text form (:class:`Shown`), the colours,
and the opening of a hand-drawn SVG."""

from __future__ import annotations

import html

from ..text import Shown  # noqa: F401 - the text form of a picture; re-exported here

__all__ = ["Shown", "COLOURS", "ARROW_KEYS", "esc", "svg_open"]

# One colour per outcome, used by every picture (and by mailkit.forms).
COLOURS = {
    "OK": "#1a7f37",        # green: delivered / accepted
    "KO": "#c2410c",        # orange: checksum failed, worth a retry
    "ERROR": "#b91c1c",     # red: a named error, no retry
    "no reply": "#6b7280",  # grey: the connection closed without a reply
    "flip": "#d6336c",      # the flipped bit
    "ink": "#1f2937",
}

# The arrow heads an SVG defines, one per colour an arrow can have.
ARROW_KEYS = {
    "ink": COLOURS["ink"], "flip": COLOURS["flip"], "OK": COLOURS["OK"],
    "KO": COLOURS["KO"], "ERROR": COLOURS["ERROR"],
}


def esc(text: str) -> str:
    """*text* safe inside SVG or HTML, quotes included."""
    return html.escape(text, quote=True)


def svg_open(width: int, height: int) -> str:
    """The opening of every hand-drawn SVG: size, font, arrow heads, background."""
    markers = "".join(
        f'<marker id="mk-arrow-{key}" viewBox="0 0 10 10" refX="10" refY="5" '
        f'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for key, colour in ARROW_KEYS.items()
    )
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
            f'font-size="12" role="img">\n<defs>{markers}</defs>\n'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>')
