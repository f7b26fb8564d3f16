"""Pictures for the course: sequence diagrams, marked hexdumps, the retry plot.

Every picture is an object that Jupyter shows as an image *and* that has a
plain-text form (its ``repr``), so it reads in a terminal, in a diff and
wherever images are not shown.  nbval compares the text form and the
SVG/HTML forms of committed notebooks, so all of them are deterministic:

* :func:`sequence_diagram` draws its SVG by hand (a few lines and words):
  the same transcript gives the same bytes on every machine and every
  matplotlib version, and it needs no plotting library at all;
* :func:`hexdump_html` is HTML around :func:`mailkit.trace.hexdump`;
* :func:`retry_plot` uses matplotlib (imported when called, on its own
  ``Figure`` with the Agg canvas: no pyplot, no global state) and shows as
  PNG; nbval does not compare PNG bytes, so its text form carries the
  numbers of the plot, and those are compared.
"""

from __future__ import annotations

import html
import io
import re

from . import protocol as P
from .trace import Exchange, Transcript, hexdump

__all__ = ["SequenceDiagram", "sequence_diagram", "HexdumpView", "hexdump_html",
           "RetryPlot", "retry_plot", "Ladder", "ladder", "link_diagram", "FrameView",
           "frame_html", "pieces_svg", "COLOURS"]

# One colour per outcome, used by every picture (and by mailkit.forms).
COLOURS = {
    "OK": "#1a7f37",        # green: delivered / accepted
    "KO": "#c2410c",        # orange: checksum failed, worth a retry
    "ERROR": "#b91c1c",     # red: a named error, no retry
    "no reply": "#6b7280",  # grey: the connection closed without a reply
    "flip": "#d6336c",      # the flipped bit
    "ink": "#1f2937",
}

_LABEL_CHARS = 46          # longest label on an arrow, in characters


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _clip(text: str, n: int = _LABEL_CHARS) -> str:
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= n else text[: n - 1] + "…"


def _request_label(e: Exchange) -> str:
    """What the arrow of a request says: the frame the client sent, up to
    its checksum (the flips are named in a note of their own)."""
    text = e.intended.decode("utf-8", "replace")
    if e.command == "login":
        user = text.partition(":")[0]
        return f"{user}:••••••"          # never draw a password
    head, sep, _ = text.rpartition("#")
    return (head + "#…") if sep else text


def _reply_label(e: Exchange) -> str:
    first = _reply_text(e.reply)
    return first or (f"(no reply: {e.error})" if e.error else "(no reply)")


# --------------------------------------------------------------------------
# Sequence diagram


class Shown:
    """Something a notebook shows, with a text form: ``text`` is what a
    terminal prints and what nbval compares; subclasses add an SVG or HTML
    form (``_repr_svg_``, ``_repr_html_``) for Jupyter to draw."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)


class SequenceDiagram(Shown):
    """A transcript drawn as a sequence diagram.

    Shows as SVG in Jupyter (:meth:`_repr_svg_`); its ``repr`` is the text
    diagram of :meth:`mailkit.trace.Transcript.sequence`.  ``.svg`` and
    ``.text`` give the two forms as strings.
    """

    ROW = 84            # vertical space per exchange (request + reply)
    WIDTH = 600
    LEFT, RIGHT = 110, 490   # x of the client's and the server's lifelines

    def __init__(self, transcript, title: str | None = None):
        self.transcript = Transcript(transcript)
        self.title = title

    # -- text ---------------------------------------------------------------
    @property
    def text(self) -> str:
        lines = [self.title] if self.title else []
        if not self.transcript:
            lines.append("(no exchanges yet)")
        else:
            lines.append(self.transcript.sequence())
            for e in self.transcript:
                if e.flips:
                    where = ", ".join(f"bit {bit} of byte {byte}" for byte, bit in e.flips)
                    lines.append(f"  {e.command} #{e.attempt}: flipped {where}")
        return "\n".join(lines)

    # -- SVG ----------------------------------------------------------------
    @property
    def svg(self) -> str:
        n = len(self.transcript)
        top = 34 if self.title else 8
        height = top + 36 + max(n, 1) * self.ROW + 8
        L, R, W = self.LEFT, self.RIGHT, self.WIDTH
        ink = COLOURS["ink"]
        out = [_svg_open(W, height)]
        if self.title:
            out.append(f'<text x="{W // 2}" y="22" text-anchor="middle" font-size="14" '
                       f'font-weight="bold" fill="{ink}">{_esc(self.title)}</text>')
        for x, name in ((L, "client"), (R, "server")):
            out.append(f'<rect x="{x - 45}" y="{top}" width="90" height="26" rx="4" '
                       f'fill="#eef2ff" stroke="{ink}"/>')
            out.append(f'<text x="{x}" y="{top + 17}" text-anchor="middle" fill="{ink}">{name}</text>')
            out.append(f'<line x1="{x}" y1="{top + 26}" x2="{x}" y2="{height - 8}" '
                       f'stroke="{ink}" stroke-dasharray="4 3"/>')
        if not n:
            out.append(f'<text x="{W // 2}" y="{top + 60}" text-anchor="middle" '
                       f'fill="{COLOURS["no reply"]}">(no exchanges yet)</text>')
        for i, e in enumerate(self.transcript):
            y = top + 34 + i * self.ROW
            out += self._exchange_svg(e, y)
        out.append("</svg>")
        return "\n".join(out)

    def _exchange_svg(self, e: Exchange, y: int) -> list[str]:
        """One attempt, drawn from *y* down: label, request arrow, the flip
        (if any), reply label, reply arrow."""
        L, R = self.LEFT, self.RIGHT
        mid = (L + R) // 2
        grey = COLOURS["no reply"]
        req_colour = COLOURS["flip"] if e.corrupted else COLOURS["ink"]
        req_key = "flip" if e.corrupted else "ink"
        label = f"{e.command} #{e.attempt}: {_request_label(e)}"
        parts = [
            # every attempt is a connection of its own
            f'<text x="8" y="{y + 24}" font-size="10" fill="{grey}">connection</text>',
            f'<text x="8" y="{y + 36}" font-size="10" fill="{grey}">{_esc(e.command)} #{e.attempt}</text>',
            f'<text x="{mid}" y="{y + 10}" text-anchor="middle" fill="{req_colour}">'
            f'{_esc(_clip(label))}</text>',
            f'<line x1="{L}" y1="{y + 16}" x2="{R}" y2="{y + 26}" stroke="{req_colour}" '
            f'stroke-width="1.5" marker-end="url(#mk-arrow-{req_key})"/>',
        ]
        if e.corrupted:
            where = ", ".join(f"byte {b} bit {bit}" for b, bit in e.flips) or "bits changed"
            parts.append(f'<text x="{mid}" y="{y + 36}" text-anchor="middle" font-size="10" '
                         f'fill="{COLOURS["flip"]}">⚡ flipped on the way: {_esc(_clip(where, 40))}</text>')
        outcome = e.outcome
        colour = COLOURS.get(outcome, COLOURS["ink"])
        if outcome == "no reply":
            parts.append(f'<text x="{mid}" y="{y + 52}" text-anchor="middle" fill="{colour}">'
                         f'{_esc(_clip(_reply_label(e)))}</text>')
            parts.append(f'<line x1="{R}" y1="{y + 58}" x2="{mid + 12}" y2="{y + 63}" stroke="{colour}" '
                         f'stroke-width="1.5" stroke-dasharray="5 4"/>')
            parts.append(f'<text x="{mid}" y="{y + 69}" text-anchor="middle" font-size="16" '
                         f'font-weight="bold" fill="{colour}">✗</text>')
        else:
            parts.append(f'<text x="{mid}" y="{y + 52}" text-anchor="middle" fill="{colour}">'
                         f'{_esc(_clip(_reply_label(e)))}</text>')
            parts.append(f'<line x1="{R}" y1="{y + 58}" x2="{L}" y2="{y + 68}" stroke="{colour}" '
                         f'stroke-width="1.5" marker-end="url(#mk-arrow-{_key(outcome)})"/>')
        return parts

    def _repr_svg_(self) -> str:
        return self.svg


_ARROW_KEYS = {
    "ink": COLOURS["ink"], "flip": COLOURS["flip"], "OK": COLOURS["OK"],
    "KO": COLOURS["KO"], "ERROR": COLOURS["ERROR"],
}


def _key(outcome: str) -> str:
    return outcome if outcome in _ARROW_KEYS else "ink"


def sequence_diagram(transcript, title: str | None = None) -> SequenceDiagram:
    """Draw *transcript* (a :class:`~mailkit.trace.Transcript` or any list of
    :class:`~mailkit.trace.Exchange`) as a sequence diagram.

    In Jupyter the result shows as an SVG picture: one arrow per request
    (red, with the flipped bits named, if the channel corrupted it) and one
    per reply (green ``OK``, orange ``KO``, red error, a dashed grey arrow
    with a cross when no reply came).  Its text form is the text diagram of
    :meth:`~mailkit.trace.Transcript.sequence`.  Passwords are never drawn.
    """
    return SequenceDiagram(transcript, title)


# --------------------------------------------------------------------------
# Ladders: any message sequence between two or more actors


_KIND_COLOUR = {"ink": "ink", "OK": "OK", "KO": "KO", "ERROR": "ERROR", "flip": "flip",
                "lost": "no reply", "no reply": "no reply", "note": "no reply"}


class Ladder(Shown):
    """A message sequence chart between *actors*: the same picture as
    :class:`SequenceDiagram`, for any steps (TCP's handshake, threads, a
    relay in the middle, rdt2.1).

    Each step is ``(source, destination, label)`` with optional ``kind``
    (``"ink"``, ``"OK"``, ``"KO"``, ``"ERROR"``, ``"flip"`` or ``"lost"``)
    and ``note``; a step from an actor to itself is a note on its lifeline.
    """

    ROW = 40
    WIDTH = 640

    def __init__(self, actors, steps, title: str | None = None):
        self.actors = list(actors)
        self.steps = [self._step(s) for s in steps]
        self.title = title

    def _step(self, step) -> tuple[str, str, str, str, str]:
        src, dst, label, *rest = step
        kind = rest[0] if rest else "ink"
        note = rest[1] if len(rest) > 1 else ""
        for who in (src, dst):
            if who not in self.actors:
                raise ValueError(f"{who!r} is not one of the actors {self.actors}")
        if kind not in _KIND_COLOUR:
            raise ValueError(f"unknown kind {kind!r}; use one of {sorted(_KIND_COLOUR)}")
        return src, dst, str(label), kind, str(note)

    @property
    def text(self) -> str:
        w = max(len(a) for a in self.actors)
        lines = [self.title] if self.title else []
        for src, dst, label, kind, note in self.steps:
            extra = f"  ({note})" if note else ""
            if src == dst:
                lines.append(f"{src:>{w}}  [{label}]{extra}")
            else:
                arrow = "--x " if kind == "lost" else "--> "
                lines.append(f"{src:>{w}} {arrow}{dst:<{w}}  {label}{extra}")
        return "\n".join(lines)

    def _x(self, actor: str) -> int:
        n = len(self.actors)
        if n == 1:
            return self.WIDTH // 2
        return 90 + self.actors.index(actor) * (self.WIDTH - 180) // (n - 1)

    @property
    def svg(self) -> str:
        W = self.WIDTH
        top = 34 if self.title else 8
        heights = [self.ROW + (12 if note else 0) for *_, note in self.steps]
        height = top + 40 + sum(heights) + 12
        ink = COLOURS["ink"]
        out = [_svg_open(W, height)]
        if self.title:
            out.append(f'<text x="{W // 2}" y="22" text-anchor="middle" font-size="14" '
                       f'font-weight="bold" fill="{ink}">{_esc(self.title)}</text>')
        for actor in self.actors:
            x = self._x(actor)
            bw = max(90, 8 * len(actor) + 16)
            out.append(f'<rect x="{x - bw // 2}" y="{top}" width="{bw}" height="26" rx="4" '
                       f'fill="#eef2ff" stroke="{ink}"/>')
            out.append(f'<text x="{x}" y="{top + 17}" text-anchor="middle" fill="{ink}">{_esc(actor)}</text>')
            out.append(f'<line x1="{x}" y1="{top + 26}" x2="{x}" y2="{height - 6}" '
                       f'stroke="{ink}" stroke-dasharray="4 3"/>')
        y = top + 38
        for (src, dst, label, kind, note), h in zip(self.steps, heights):
            colour = COLOURS[_KIND_COLOUR[kind]]
            x1, x2 = self._x(src), self._x(dst)
            if src == dst:
                last = len(self.actors) > 1 and self.actors.index(src) == len(self.actors) - 1
                nx, anchor = (x1 - 8, "end") if last else (x1 + 8, "start")
                out.append(f'<text x="{nx}" y="{y + 20}" text-anchor="{anchor}" fill="{colour}" '
                           f'font-style="italic"{_HALO}>{_esc(_clip(label, 48))}</text>')
            else:
                mid = (x1 + x2) // 2
                out.append(f'<text x="{mid}" y="{y + 10}" text-anchor="middle" fill="{colour}"{_HALO}>'
                           f'{_esc(_clip(label, max(20, abs(x2 - x1) // 7 + 4)))}</text>')
                if kind == "lost":
                    end = x1 + (x2 - x1) * 2 // 3
                    out.append(f'<line x1="{x1}" y1="{y + 16}" x2="{end}" y2="{y + 24}" stroke="{colour}" '
                               f'stroke-width="1.5" stroke-dasharray="5 4"/>')
                    out.append(f'<text x="{end}" y="{y + 30}" text-anchor="middle" font-size="16" '
                               f'font-weight="bold" fill="{colour}">✗</text>')
                else:
                    out.append(f'<line x1="{x1}" y1="{y + 16}" x2="{x2}" y2="{y + 26}" stroke="{colour}" '
                               f'stroke-width="1.5" marker-end="url(#mk-arrow-{_arrow_key(kind)})"/>')
            if note:
                nx, anchor = (x1 + x2) // 2, "middle"
                if src == dst:
                    nx, anchor = (x1 - 8, "end") if last else (x1 + 8, "start")
                out.append(f'<text x="{nx}" y="{y + 40}" text-anchor="{anchor}" font-size="10" '
                           f'fill="{colour}"{_HALO}>{_esc(_clip(note, 60))}</text>')
            y += h
        out.append("</svg>")
        return "\n".join(out)

    def _repr_svg_(self) -> str:
        return self.svg


# A white outline under a label's letters: where a label crosses a lifeline,
# the line stops at the letters instead of running through them.
_HALO = ' stroke="white" stroke-width="4" stroke-linejoin="round" paint-order="stroke"'


def _arrow_key(kind: str) -> str:
    return {"lost": "ink", "no reply": "ink", "note": "ink"}.get(kind, kind)


def _svg_open(width: int, height: int) -> str:
    """The opening of every hand-drawn SVG: size, font, arrow heads, background."""
    markers = "".join(
        f'<marker id="mk-arrow-{key}" viewBox="0 0 10 10" refX="10" refY="5" '
        f'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for key, colour in _ARROW_KEYS.items()
    )
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" '
            f'font-size="12" role="img">\n<defs>{markers}</defs>\n'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>')


def ladder(actors, steps, title: str | None = None) -> Ladder:
    """Draw a message sequence between *actors* (see :class:`Ladder`)."""
    return Ladder(actors, steps, title)


def _safe_request(data: bytes) -> str:
    """A request as a label: a frame up to its checksum, a handshake without
    its password."""
    text = data.decode("utf-8", "replace")
    head, sep, _ = text.rpartition("#")
    if sep and len(text) - len(head) == P.CHECKSUM_LEN + 1:
        return head + "#…"
    if not P._is_frame(data):
        return text.partition(":")[0] + ":••••••"
    return text


_TRAILING_CHECKSUM = re.compile(r"#([0-9a-f]{40})$")


def _reply_text(reply: bytes) -> str:
    """The first line of a reply, a trailing checksum (some demonstration
    servers add one) shortened to its first 8 digits."""
    first = reply.decode("utf-8", "replace").split("\n", 1)[0]
    return _TRAILING_CHECKSUM.sub(lambda m: "#" + m.group(1)[:8] + "…", first)


def _reply_kind(reply: bytes) -> str:
    """OK / KO / ERROR of a reply, judged without a trailing checksum."""
    text = reply.decode("utf-8", "replace")
    head, sep, tail = text.rpartition("#")
    if sep and re.fullmatch(r"[0-9a-f]{40}", tail):
        text = head
    return P.parse_reply(text.encode("utf-8")).kind


def link_diagram(events, title: str | None = None) -> Ladder:
    """What a :class:`~mailkit.noise.NoisyLink` did, as a ladder with three
    actors: client, link, server (flipped bits in pink, a dropped reply as
    a dashed arrow ending in a cross)."""
    steps = []
    for ev in events:
        req = _safe_request(ev.request)
        steps.append(("client", "link", f"#{ev.number} {req}"))
        if ev.request_flips:
            where = ", ".join(f"bit {bit} of byte {b}" for b, bit in ev.request_flips)
            steps.append(("link", "server", req, "flip", f"flipped {where}"))
        else:
            steps.append(("link", "server", req))
        if ev.error:
            steps.append(("link", "link", ev.error, "ERROR"))
            continue
        first, kind = _reply_text(ev.reply), _reply_kind(ev.reply)
        steps.append(("server", "link", first, kind))
        if ev.dropped_reply:
            steps.append(("link", "client", "(reply dropped)", "lost"))
        elif ev.reply_flips:
            flipped = _reply_text(_apply_flips(ev.reply, ev.reply_flips))
            where = ", ".join(f"bit {bit} of byte {b}" for b, bit in ev.reply_flips)
            steps.append(("link", "client", flipped, "flip", f"flipped {where}"))
        else:
            steps.append(("link", "client", first, kind))
    return Ladder(["client", "link", "server"], steps, title)


def _apply_flips(data: bytes, flips) -> bytes:
    out = bytearray(data)
    for b, bit in flips:
        if -len(out) <= b < len(out):
            out[b] ^= 1 << bit
    return bytes(out)


# --------------------------------------------------------------------------
# A frame, its parts coloured


_PART_COLOURS = {"session id": "#1d4ed8", "command": "#7c3aed", "field": "#111827",
                 "#": "#d6336c", "checksum": "#6b7280", ":": "#9ca3af"}


class FrameView(Shown):
    """A frame with its parts named: session id, command, fields, the ``#``
    and the checksum (coloured in HTML, listed in text)."""

    def __init__(self, frame: bytes):
        self.frame = bytes(frame)

    def parts(self) -> list[tuple[str, str]]:
        """(name, text) for every part of the frame, in order."""
        text = self.frame.decode("utf-8", "replace")
        content, sep, claimed = text.rpartition("#")
        if not sep:
            content, claimed = text, ""
        sid, _, rest = content.partition(":")
        name, _, rest = rest.partition(":")
        spec = P.COMMANDS.get(name)
        n = len(spec.fields) if spec else 0
        fields = rest.split(":", n - 1) if n and rest else ([rest] if rest else [])
        names = list(spec.fields) if spec else []
        out = [("session id", sid), (":", ":"), ("command", name)]
        for i, f in enumerate(fields):
            out += [(":", ":"), (names[i].lower() if i < len(names) else "field", f)]
        if sep:
            out += [("#", "#"), ("checksum", claimed)]
        return out

    @property
    def verifies(self) -> bool:
        return P._verifies(self.frame)

    @property
    def text(self) -> str:
        content = self.frame.rpartition(b"#")[0]
        lines = [f"frame, {len(self.frame)} bytes: {_clip(self.frame.decode('utf-8', 'replace'), 100)}"]
        for name, part in self.parts():
            if name in (":", "#"):
                continue
            lines.append(f"  {name:<10} {_clip(part, 60)}")
        lines.append(f"  the checksum is the SHA-1 of the {len(content)} bytes before the last '#': "
                     f"{'matches' if self.verifies else 'does NOT match'}")
        return "\n".join(lines)

    @property
    def html(self) -> str:
        spans = []
        for name, part in self.parts():
            colour = _PART_COLOURS.get(name, _PART_COLOURS["field"])
            weight = "bold" if name in ("#", "command") else "normal"
            title = "" if name in (":", "#") else f' title="{_esc(name)}"'
            spans.append(f'<span style="color:{colour};font-weight:{weight}"{title}>'
                         f'{_esc(_clip(part, 200))}</span>')
        legend = " ".join(
            f'<span style="color:{_PART_COLOURS[k]}">■ {k}</span>'
            for k in ("session id", "command", "field", "#", "checksum")
        )
        ok = ('<span style="color:#1a7f37">✓ checksum matches</span>' if self.verifies
              else '<span style="color:#b91c1c">✗ checksum does not match</span>')
        return (f'<div style="font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;font-size:13px">'
                f'<div style="word-break:break-all">{"".join(spans)}</div>'
                f'<div style="font-size:11px;margin-top:4px">{legend} &nbsp; {ok}</div></div>')

    def _repr_html_(self) -> str:
        return self.html


def frame_html(frame: bytes) -> FrameView:
    """Show a frame with its parts coloured and named."""
    return FrameView(frame)


# --------------------------------------------------------------------------
# A stream read in pieces


def pieces_svg(pieces, size: int, recv_size: int) -> str:
    """The bytes of one frame as a bar, cut where each ``recv()`` stopped."""
    W, H, left, bar = 640, 92, 10, 620
    out = [_svg_open(W, H)]
    total = max(size, 1)
    x = 0
    for i, n in enumerate(pieces):
        x0 = left + bar * x / total
        w = bar * n / total
        fill = "#c7d2fe" if i % 2 == 0 else "#818cf8"
        out.append(f'<rect x="{x0:.2f}" y="30" width="{w:.2f}" height="24" fill="{fill}"/>')
        x += n
    out.append(f'<rect x="{left}" y="30" width="{bar}" height="24" fill="none" stroke="{COLOURS["ink"]}"/>')
    out.append(f'<text x="{left}" y="20" fill="{COLOURS["ink"]}">one frame, {size:,} bytes: '
               f'{len(pieces)} recv({recv_size}) calls</text>')
    out.append(f'<text x="{left}" y="74" font-size="11" fill="{COLOURS["no reply"]}">'
               f'each band is what one recv() returned; the checksum at the far right arrives last</text>')
    out.append("</svg>")
    return "\n".join(out)


# --------------------------------------------------------------------------
# Hexdump with the flipped bits marked


class HexdumpView(Shown):
    """A hexdump whose flipped bytes are coloured (HTML) and marked with
    carets (text).  ``.text`` is :func:`mailkit.trace.hexdump`'s output
    (only the rows asked for), ``.html`` the coloured version."""

    WIDTH = 16

    def __init__(self, data: bytes, flips=(), *, context: int | None = None):
        self.data = bytes(data)
        self.flips = tuple((int(b), int(bit)) for b, bit in flips)
        self.context = context
        # byte -> its flipped bits (negative byte indices count from the end)
        self.marked: dict[int, list[int]] = {}
        for b, bit in self.flips:
            b = b + len(self.data) if b < 0 else b
            if 0 <= b < len(self.data):
                self.marked.setdefault(b, []).append(bit)

    def _rows(self) -> list[int | None]:
        """Row offsets to show, with ``None`` where rows are left out."""
        starts = list(range(0, len(self.data), self.WIDTH))
        if self.context is None or not self.marked:
            return starts
        keep = set()
        for byte in self.marked:
            row = byte - byte % self.WIDTH
            for k in range(-self.context, self.context + 1):
                keep.add(row + k * self.WIDTH)
        shown: list[int | None] = []
        for s in starts:
            if s in keep:
                shown.append(s)
            elif shown[-1:] != [None]:
                shown.append(None)
        return shown

    def _bit_lines(self) -> list[tuple[int, list[int], int, int]]:
        """(byte, its flipped bits, value as arrived, value as sent) per flipped byte."""
        out = []
        for byte in sorted(self.marked):
            bits = sorted(set(self.marked[byte]))
            now = self.data[byte]
            before = now
            for bit in bits:
                before ^= 1 << bit
            out.append((byte, bits, now, before))
        return out

    @staticmethod
    def _bits_word(bits: list[int]) -> str:
        return f"bit{'s' if len(bits) > 1 else ''} {' and '.join(map(str, bits))}"

    @property
    def text(self) -> str:
        full = hexdump(self.data, self.flips, width=self.WIDTH).split("\n")
        # hexdump gives each row, followed by a caret line when it has a flip
        by_row: dict[int, list[str]] = {}
        current = 0
        for line in full:
            if line[:8].strip() and not line.startswith(" "):
                current = int(line[:8], 16)
                by_row[current] = [line]
            elif line.strip():
                by_row[current].append(line)
        lines = []
        for row in self._rows():
            lines += ["   …"] if row is None else by_row[row]
        for byte, bits, now, before in self._bit_lines():
            lines.append(f"byte {byte}, {self._bits_word(bits)}: sent 0x{before:02x} {before:08b} "
                         f"{_shown(before)} -> arrived 0x{now:02x} {now:08b} {_shown(now)}")
        return "\n".join(lines)

    @property
    def html(self) -> str:
        marked = self.marked
        flip = COLOURS["flip"]
        hot = f'style="background:#ffe3ec;color:{flip};font-weight:bold"'
        w = self.WIDTH
        lines = []
        for row in self._rows():
            if row is None:
                lines.append("   …")
                continue
            chunk = self.data[row: row + w]
            hexes, chars = [], []
            for i, b in enumerate(chunk, row):
                h, c = f"{b:02x}", _esc(chr(b) if 32 <= b < 127 else ".")
                if i in marked:
                    h, c = f"<span {hot}>{h}</span>", f"<span {hot}>{c}</span>"
                hexes.append(h)
                chars.append(c)
            pad = "   " * (w - len(chunk))
            lines.append(f"{row:08x}  {' '.join(hexes)}{pad}  |{''.join(chars)}|")
            cols = [i - row for i in sorted(marked) if row <= i < row + w]
            if cols:
                hexline, textline = [" "] * (w * 3), [" "] * w
                for c in cols:
                    hexline[c * 3] = hexline[c * 3 + 1] = "^"
                    textline[c] = "^"
                notes = ", ".join(f"byte {i}: {self._bits_word(sorted(marked[i]))}"
                                  for i in sorted(marked) if row <= i < row + w)
                lines.append(f'<span style="color:{flip}">{"":8}  {"".join(hexline)[: w * 3 - 1]}'
                             f'   {"".join(textline)}  {notes}</span>')
        for byte, bits, now, before in self._bit_lines():
            lines.append(f"byte {byte}, {self._bits_word(bits)}: sent 0x{before:02x} "
                         f"{_bits_html(before, bits)} {_esc(_shown(before))} -> arrived 0x{now:02x} "
                         f"{_bits_html(now, bits)} {_esc(_shown(now))}")
        body = "\n".join(lines)
        return (f'<pre style="font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;'
                f'font-size:12px;line-height:1.35">{body}</pre>')

    def _repr_html_(self) -> str:
        return self.html


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


def hexdump_html(data: bytes, flips=(), *, context: int | None = None) -> HexdumpView:
    """A hexdump of *data* (the bytes as they arrived) with the bytes in
    *flips* (``(byte, bit)`` pairs) coloured, a caret line under them, and
    one line per flip spelling out the bits before and after.

    With *context* ``= k``, only the rows with a flip and *k* rows on either
    side are shown (``…`` marks the rows left out).
    """
    return HexdumpView(data, flips, context=context)


# --------------------------------------------------------------------------
# The retry plot


class RetryPlot(Shown):
    """The chance that a mail gets through within *attempts* attempts,
    against the flip rate: analytic curve and simulated points.

    Shows as a PNG (matplotlib, Agg canvas, no pyplot state); its ``repr``
    is the table of numbers behind the picture.
    """

    def __init__(self, rates, simulated, analytic, attempts: int = 4, *,
                 sends: int | None = None, title: str | None = None):
        self.rates = [float(r) for r in rates]
        self.simulated = [float(s) for s in simulated]
        self.analytic = [float(a) for a in analytic]
        if not len(self.rates) == len(self.simulated) == len(self.analytic):
            raise ValueError("rates, simulated and analytic must have the same length")
        self.attempts, self.sends = attempts, sends
        self.title = title or f"P(mail gets through within {attempts} attempts)"

    @property
    def text(self) -> str:
        sends = f" ({self.sends} sends per rate)" if self.sends else ""
        lines = [self.title + sends,
                 f"{'flip rate':>9}  {'analytic':>8}  {'simulated':>9}"]
        for r, a, s in zip(self.rates, self.analytic, self.simulated):
            lines.append(f"{r:>9.2f}  {a:>8.3f}  {s:>9.3f}")
        return "\n".join(lines)

    def figure(self):
        """A matplotlib ``Figure`` (not registered with pyplot)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.8), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        fine = [i / 200 for i in range(201)]
        ax.plot(fine, [1 - p for p in fine], color=COLOURS["no reply"], linestyle=":",
                label="1 attempt (no retry): 1 - p")
        ax.plot(self.rates, self.analytic, color=COLOURS["OK"],
                label=f"analytic, {self.attempts} attempts: 1 - p^{self.attempts}")
        ax.plot(self.rates, self.simulated, "o", color=COLOURS["KO"], markersize=5,
                label="simulated" + (f" ({self.sends} mails per rate)" if self.sends else ""))
        ax.set_xlabel("flip rate p (chance that a frame is corrupted)")
        ax.set_ylabel("fraction of mails delivered")
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=9)
        ax.set_title(self.title, fontsize=11)
        fig.tight_layout()
        return fig

    def _repr_png_(self) -> bytes:
        import matplotlib

        with matplotlib.rc_context({"svg.hashsalt": "mailkit", "svg.fonttype": "none"}):
            fig = self.figure()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()

    def svg(self) -> str:
        """The plot as SVG text, deterministic for one matplotlib version
        (fixed hash salt, text kept as text, no date)."""
        import matplotlib

        with matplotlib.rc_context({"svg.hashsalt": "mailkit", "svg.fonttype": "none"}):
            fig = self.figure()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        return buf.getvalue()


def retry_plot(rates, simulated, analytic, attempts: int = 4, *,
               sends: int | None = None, title: str | None = None) -> RetryPlot:
    """Plot the fraction of mails delivered within *attempts* attempts
    against the flip rate: *analytic* as a curve, *simulated* as points.

    Shows as a PNG in Jupyter; the text form is the table of the numbers.
    """
    return RetryPlot(rates, simulated, analytic, attempts, sends=sends, title=title)
