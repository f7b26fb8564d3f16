"""What a client did and what a link did, drawn as ladders: the sequence
diagram of a :class:`~mailkit.trace.Transcript` (client and server) and the
link diagram of a :class:`~mailkit.noise.NoisyLink` (client, link, server)."""

from __future__ import annotations

import re

from .. import protocol as P
from ..noise import flip_bits
from ..text import clip
from ..trace import Exchange, Transcript
from .drawing import Shown
from .ladder import Ladder, Layout, Step

__all__ = ["SequenceDiagram", "sequence_diagram", "link_diagram", "SEQUENCE_LAYOUT"]

# A transcript's ladder: two lifelines, a fixed height per attempt (request
# and reply, 42 pixels each) and room at the left to say it is a connection.
SEQUENCE_LAYOUT = Layout(width=600, xs=(110, 490), row=42, note_row=0, note_dy=36, first=34,
                         tail=10, lifeline_gap=8, label_chars=46, note_chars=80,
                         lost="the middle", empty="(no exchanges yet)")


class SequenceDiagram(Shown):
    """A transcript (a :class:`~mailkit.trace.Transcript` or any list of
    :class:`~mailkit.trace.Exchange`) drawn as a sequence diagram.

    In Jupyter it shows as an SVG picture (:meth:`_repr_svg_`, a two-actor
    :class:`~mailkit.pictures.ladder.Ladder`): one arrow per request (red,
    with the flipped bits named, if the channel corrupted it) and one per
    reply (green ``OK``, orange ``KO``, red error, a dashed grey arrow with
    a cross when no reply came).  Its text form is the text diagram of
    :meth:`~mailkit.trace.Transcript.sequence`.  Passwords are never drawn.
    ``.svg`` and ``.text`` give the two forms as strings.
    """

    def __init__(self, transcript, title: str | None = None):
        self.transcript = Transcript(transcript)
        self.title = title

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

    @property
    def ladder(self) -> Ladder:
        """The picture: every attempt is a request step and a reply step."""
        steps = []
        for e in self.transcript:
            note = ""
            if e.corrupted:
                where = ", ".join(f"byte {b} bit {bit}" for b, bit in e.flips) or "bits changed"
                note = f"⚡ flipped on the way: {clip(where, 40)}"
            steps.append(Step("client", "server", f"{e.command} #{e.attempt}: {_request_label(e)}",
                              "flip" if e.corrupted else "ink", note,
                              margin=("connection", f"{e.command} #{e.attempt}")))
            kind = "lost" if e.outcome == "no reply" else e.outcome
            steps.append(Step("server", "client", _reply_label(e), kind))
        return Ladder(["client", "server"], steps, self.title, layout=SEQUENCE_LAYOUT)

    @property
    def svg(self) -> str:
        return self.ladder.svg

    def _repr_svg_(self) -> str:
        return self.svg


sequence_diagram = SequenceDiagram


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


def _safe_request(data: bytes) -> str:
    """A request as a label: a frame up to its checksum, a handshake without
    its password."""
    text = data.decode("utf-8", "replace")
    head, sep, _ = text.rpartition("#")
    if sep and len(text) - len(head) == P.CHECKSUM_LEN + 1:
        return head + "#…"
    if not P.is_frame(data):
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
    a dashed arrow ending in a cross, and so is a silently lost request or
    reply, with a note)."""
    steps = []
    for ev in events:
        req = _safe_request(ev.request)
        steps.append(("client", "link", f"#{ev.number} {req}"))
        if getattr(ev, "lost_request", False):
            steps.append(("link", "server", req, "lost", "lost silently: no reply, no close"))
            continue
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
        elif getattr(ev, "lost_reply", False):
            steps.append(("link", "client", first, "lost", "lost silently: no reply, no close"))
        elif ev.reply_flips:
            flipped = _reply_text(flip_bits(ev.reply, ev.reply_flips))
            where = ", ".join(f"bit {bit} of byte {b}" for b, bit in ev.reply_flips)
            steps.append(("link", "client", flipped, "flip", f"flipped {where}"))
        else:
            steps.append(("link", "client", first, kind))
    return Ladder(["client", "link", "server"], steps, title)
