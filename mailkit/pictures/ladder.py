"""Ladders (message sequence charts): actors side by side, each with a
lifeline, and the messages between them as arrows, top to bottom.

The one renderer for every such picture: TCP's handshake, threads, a relay
in the middle, rdt2.1, and the sequence diagram of a client's transcript
(:mod:`mailkit.pictures.sequence`, a two-actor ladder with its own
:class:`Layout`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..text import clip
from .drawing import COLOURS, Shown, esc, svg_open

__all__ = ["Ladder", "Step", "Layout", "KINDS"]

# The kinds of step, and the colour (a key of COLOURS) each is drawn in.
KINDS = {"ink": "ink", "OK": "OK", "KO": "KO", "ERROR": "ERROR", "flip": "flip",
         "lost": "no reply", "no reply": "no reply", "note": "no reply"}


@dataclass(frozen=True)
class Step:
    """One message from *src* to *dst* (a note on the lifeline when they
    are the same actor).  *margin* is text written at the left edge, beside
    the step, one line per item."""

    src: str
    dst: str
    label: str
    kind: str = "ink"
    note: str = ""
    margin: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """Where a ladder puts things, in SVG pixels."""

    width: int = 640
    xs: tuple[int, ...] = ()       # x of each lifeline; () spreads them from 90 to width - 90
    row: int = 40                  # the height of one step ...
    note_row: int = 12             # ... and what a note under its arrow adds
    note_dy: int = 40              # a note's baseline, from the top of its step
    first: int = 38                # the first step, from the top of the actor boxes
    tail: int = 14                 # below the last step
    lifeline_gap: int = 6          # lifelines end this far above the bottom
    label_chars: int = 0           # longest label on an arrow; 0: what fits between the lifelines
    note_chars: int = 60           # longest note
    lost: str = "two thirds"       # a lost message's arrow stops "two thirds" of the way, or
                                   # just short of "the middle"
    empty: str = ""                # shown (grey) when there is no step; room is kept for two

    def __post_init__(self):
        if self.lost not in ("two thirds", "the middle"):
            raise ValueError(f"lost is 'two thirds' or 'the middle', not {self.lost!r}")


class Ladder(Shown):
    """A message sequence chart between *actors*.

    Each step is a :class:`Step` or a tuple ``(source, destination, label)``
    with optional ``kind`` (``"ink"``, ``"OK"``, ``"KO"``, ``"ERROR"``,
    ``"flip"`` or ``"lost"``) and ``note``; a step from an actor to itself
    is a note on its lifeline.  Shows as SVG in Jupyter; its ``repr`` is one
    line per step.
    """

    def __init__(self, actors, steps, title: str | None = None, *, layout: Layout = Layout()):
        self.actors = list(actors)
        self.steps = [self._step(s) for s in steps]
        self.title = title
        self.layout = layout

    def _step(self, step) -> Step:
        if not isinstance(step, Step):
            src, dst, label, *rest = step
            step = Step(src, dst, str(label), *map(str, rest))
        for who in (step.src, step.dst):
            if who not in self.actors:
                raise ValueError(f"{who!r} is not one of the actors {self.actors}")
        if step.kind not in KINDS:
            raise ValueError(f"unknown kind {step.kind!r}; use one of {sorted(KINDS)}")
        return step

    @property
    def text(self) -> str:
        w = max(len(a) for a in self.actors)
        lines = [self.title] if self.title else []
        for s in self.steps:
            extra = f"  ({s.note})" if s.note else ""
            if s.src == s.dst:
                lines.append(f"{s.src:>{w}}  [{s.label}]{extra}")
            else:
                arrow = "--x " if s.kind == "lost" else "--> "
                lines.append(f"{s.src:>{w}} {arrow}{s.dst:<{w}}  {s.label}{extra}")
        return "\n".join(lines)

    def _x(self, actor: str) -> int:
        i, n = self.actors.index(actor), len(self.actors)
        if self.layout.xs:
            return self.layout.xs[i]
        if n == 1:
            return self.layout.width // 2
        return 90 + i * (self.layout.width - 180) // (n - 1)

    @property
    def svg(self) -> str:
        lay, W = self.layout, self.layout.width
        top = 34 if self.title else 8
        heights = [lay.row + (lay.note_row if s.note else 0) for s in self.steps]
        if not self.steps and lay.empty:
            heights = [lay.row, lay.row]
        height = top + lay.first + sum(heights) + lay.tail
        ink = COLOURS["ink"]
        out = [svg_open(W, height)]
        if self.title:
            out.append(f'<text x="{W // 2}" y="22" text-anchor="middle" font-size="14" '
                       f'font-weight="bold" fill="{ink}">{esc(self.title)}</text>')
        for actor in self.actors:
            x = self._x(actor)
            bw = max(90, 8 * len(actor) + 16)
            out.append(f'<rect x="{x - bw // 2}" y="{top}" width="{bw}" height="26" rx="4" '
                       f'fill="#eef2ff" stroke="{ink}"/>')
            out.append(f'<text x="{x}" y="{top + 17}" text-anchor="middle" fill="{ink}">{esc(actor)}</text>')
            out.append(f'<line x1="{x}" y1="{top + 26}" x2="{x}" y2="{height - lay.lifeline_gap}" '
                       f'stroke="{ink}" stroke-dasharray="4 3"/>')
        if not self.steps and lay.empty:
            out.append(f'<text x="{W // 2}" y="{top + lay.first + 26}" text-anchor="middle" '
                       f'fill="{COLOURS["no reply"]}">{esc(lay.empty)}</text>')
        y = top + lay.first
        for step, h in zip(self.steps, heights):
            out += self._step_svg(step, y)
            y += h
        out.append("</svg>")
        return "\n".join(out)

    def _step_svg(self, s: Step, y: int) -> list[str]:
        """One step, drawn from *y* down: margin, label, arrow, note."""
        lay = self.layout
        colour = COLOURS[KINDS[s.kind]]
        x1, x2 = self._x(s.src), self._x(s.dst)
        mid = (x1 + x2) // 2
        out = [f'<text x="8" y="{y + 24 + 12 * i}" font-size="10" fill="{COLOURS["no reply"]}">'
               f'{esc(text)}</text>' for i, text in enumerate(s.margin)]
        if s.src == s.dst:
            last = len(self.actors) > 1 and self.actors.index(s.src) == len(self.actors) - 1
            nx, anchor = (x1 - 8, "end") if last else (x1 + 8, "start")
            out.append(f'<text x="{nx}" y="{y + 20}" text-anchor="{anchor}" fill="{colour}" '
                       f'font-style="italic"{_HALO}>{esc(clip(s.label, 48))}</text>')
        else:
            nx, anchor = mid, "middle"
            chars = lay.label_chars or max(20, abs(x2 - x1) // 7 + 4)
            out.append(f'<text x="{mid}" y="{y + 10}" text-anchor="middle" fill="{colour}"{_HALO}>'
                       f'{esc(clip(s.label, chars))}</text>')
            if s.kind == "lost":
                out += self._lost_arrow(x1, x2, y, colour)
            else:
                out.append(f'<line x1="{x1}" y1="{y + 16}" x2="{x2}" y2="{y + 26}" stroke="{colour}" '
                           f'stroke-width="1.5" marker-end="url(#mk-arrow-{_arrow_key(s.kind)})"/>')
        if s.note:
            out.append(f'<text x="{nx}" y="{y + lay.note_dy}" text-anchor="{anchor}" font-size="10" '
                       f'fill="{colour}"{_HALO}>{esc(clip(s.note, lay.note_chars))}</text>')
        return out

    def _lost_arrow(self, x1: int, x2: int, y: int, colour: str) -> list[str]:
        """A dashed arrow that stops on the way, and a cross where it stopped."""
        if self.layout.lost == "the middle":
            cross = (x1 + x2) // 2
            end, dy = cross + (12 if x1 > x2 else -12), 5
        else:
            end = cross = x1 + (x2 - x1) * 2 // 3
            dy = 8
        return [f'<line x1="{x1}" y1="{y + 16}" x2="{end}" y2="{y + 16 + dy}" stroke="{colour}" '
                f'stroke-width="1.5" stroke-dasharray="5 4"/>',
                f'<text x="{cross}" y="{y + 22 + dy}" text-anchor="middle" font-size="16" '
                f'font-weight="bold" fill="{colour}">✗</text>']

    def _repr_svg_(self) -> str:
        return self.svg


# A white outline under a label's letters: where a label crosses a lifeline,
# the line stops at the letters instead of running through them.
_HALO = ' stroke="white" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'


def _arrow_key(kind: str) -> str:
    return {"lost": "ink", "no reply": "ink", "note": "ink"}.get(kind, kind)
