"""Small helpers for text that people read: counts with the right
plural, text clipped to one short line, and :class:`Shown`, the text form
of something a notebook shows.

The lowest layer of mailkit (standard library only, imports nothing from
mailkit), so that every module, the protocol included, can use them.
"""

from __future__ import annotations

__all__ = ["plural", "clip", "Shown"]


def plural(n: int, word: str, *, count: bool = True) -> str:
    """``"1 message"``, ``"3 messages"``, ``"0 messages"``: *word* with an
    ``s`` unless *n* is 1.  ``count=False`` leaves the number out
    (``"bits"``), for a phrase such as "bits 1 and 3"."""
    word = word if n == 1 else word + "s"
    return f"{n} {word}" if count else word


def clip(text: str, n: int) -> str:
    """*text* on one line (a newline shows as ``\\n``, a carriage return as
    ``\\r``) and at most *n* characters long, ending in ``…`` where it was
    cut."""
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= n else text[: n - 1] + "…"


class Shown:
    """Something a notebook shows, with a text form: ``text`` is what a
    terminal prints and what nbval compares; subclasses add an SVG or HTML
    form (``_repr_svg_``, ``_repr_html_``) for Jupyter to draw."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)
