"""A frame with its parts named and coloured."""

from __future__ import annotations

from .. import protocol as P
from ..text import clip
from .drawing import Shown, esc

__all__ = ["FrameView", "frame_html"]

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
        return P.verifies(self.frame)

    @property
    def text(self) -> str:
        content = self.frame.rpartition(b"#")[0]
        lines = [f"frame, {len(self.frame)} bytes: {clip(self.frame.decode('utf-8', 'replace'), 100)}"]
        for name, part in self.parts():
            if name in (":", "#"):
                continue
            lines.append(f"  {name:<10} {clip(part, 60)}")
        lines.append(f"  the checksum is the SHA-1 of the {len(content)} bytes before the last '#': "
                     f"{'matches' if self.verifies else 'does NOT match'}")
        return "\n".join(lines)

    @property
    def html(self) -> str:
        spans = []
        for name, part in self.parts():
            colour = _PART_COLOURS.get(name, _PART_COLOURS["field"])
            weight = "bold" if name in ("#", "command") else "normal"
            title = "" if name in (":", "#") else f' title="{esc(name)}"'
            spans.append(f'<span style="color:{colour};font-weight:{weight}"{title}>'
                         f'{esc(clip(part, 200))}</span>')
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


frame_html = FrameView

