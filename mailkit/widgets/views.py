"""What the mail-client app shows, as plain functions: objects in, text or
HTML out.  No widgets here, so every view can be tested (and read) alone.

* :func:`parse_address` / :func:`default_address` - the "server" field
* :func:`describe_error` - a client error as a sentence a student can act on
* :func:`inbox_label`, :func:`message_html` - the inbox list and the reader
* :func:`frames_html`, :func:`diagram_html` - the transcript pane
"""

from __future__ import annotations

import html
import os
import time

from ..cli import DEFAULT_PORT
from ..client import (
    LoginFailed, MailClientError, NotLoggedIn, RetriesExhausted, ServerError, ServerUnreachable,
)
from ..protocol import Message, ProtocolError, checksum
from ..trace import Exchange, Transcript

__all__ = [
    "ENV_SERVER", "parse_address", "format_address", "default_address", "describe_error",
    "inbox_label", "message_html", "frames_html", "diagram_html", "status_html",
]

ENV_SERVER = "MAILKIT_SERVER"   # "host:port" of a class server, for a Voila link
PREVIEW_CHARS = 40              # enough to recognise a mail in a one-line list
FRAME_CHARS = 72                # a frame longer than this is cut in the middle
DIAGRAM_EXCHANGES = 8           # more arrows than this make a picture nobody reads
TEXT_EXCHANGES = 60             # the text view keeps the recent past, not all of it

_MONO = "font-family:var(--jp-code-font-family,monospace);font-size:11px;line-height:1.35"


def _tail_box(inner: str, height: int) -> str:
    """A box of at most *height* pixels that scrolls, and starts scrolled to
    its end: the newest exchange is the one in view."""
    return (f'<div style="max-height:{height}px;overflow:auto;display:flex;flex-direction:column-reverse">'
            f"<div>{inner}</div></div>")


# -- the server address -------------------------------------------------------

def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``, or just ``"host"`` for port
    2525) as ``(host, port)``; a ``ValueError`` that says what was expected."""
    text = (text or "").strip()
    if not text:
        raise ValueError("the server address is empty: type HOST:PORT, e.g. 127.0.0.1:2525")
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):                       # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"expected [HOST]:PORT, got {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"the server address should be HOST:PORT with a port from 1 to 65535, got {text!r}")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connectable(host: str) -> str:
    """A server bound to every interface is reached on the loopback."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def default_address(server=None) -> str:
    """The address the login form starts with.

    *server* may be a running :class:`~mailkit.MailServer` (anything with
    ``.address``), a ``(host, port)`` pair or a ``"host:port"`` string.
    Without one: the ``MAILKIT_SERVER`` environment variable, else the
    running MailServer this notebook holds in a variable, else
    ``127.0.0.1:2525`` (where ``python -m mailkit serve`` listens).
    """
    if server is None:
        server = os.environ.get(ENV_SERVER) or _notebook_server()
    if server is None:
        return format_address("127.0.0.1", DEFAULT_PORT)
    if isinstance(server, str):
        return format_address(*parse_address(server))
    host, port = getattr(server, "address", server)
    return format_address(_connectable(host), int(port))


def _notebook_server():
    """The last running MailServer among the notebook's variables, if any."""
    from ..server import MailServer

    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is None:
        return None
    found = [v for k, v in shell.user_ns.items()
             if isinstance(v, MailServer) and v.running and not k.startswith("_")]
    return found[-1] if found else None


# -- errors ---------------------------------------------------------------------

def describe_error(exc: BaseException) -> str:
    """One or two plain sentences for an error, never a traceback."""
    if isinstance(exc, LoginFailed):
        reason = exc.reply.partition(":")[2].strip() or "wrong username or password"
        return f"Login refused: {reason} (the server said {exc.reply!r})."
    if isinstance(exc, ServerUnreachable):
        return f"Cannot reach the server: {exc}. Check the address, or start the server."
    if isinstance(exc, RetriesExhausted):
        if all(e.outcome == "KO" for e in exc.attempts):
            why = ("every attempt was damaged on the way (KO is the server's answer to a bad "
                   "checksum): lower the noise and try again")
        else:
            why = "the server stopped answering: check that it still runs"
        return f"{exc}: {why}."
    if isinstance(exc, ServerError):
        hint = " Log in again." if "session" in exc.reply.lower() else ""
        return f"The server said: {exc.reply}.{hint}"
    if isinstance(exc, NotLoggedIn):
        return "Log in first."
    if isinstance(exc, (ProtocolError, ValueError)):
        return str(exc)
    if isinstance(exc, (MailClientError, OSError)):
        return f"Network error: {exc}"
    return f"Unexpected error ({type(exc).__name__}): {exc}"


def status_html(kind: str, text: str) -> str:
    icon = {"ok": "✔", "error": "✖", "busy": "⏳", "info": "ℹ"}.get(kind, "")
    color = {"ok": "#1a7f37", "error": "#c62828", "busy": "#8a6d00"}.get(kind, "#555")
    return f'<span style="color:{color}">{icon} {html.escape(text)}</span>'


# -- the inbox -------------------------------------------------------------------

def _one_line(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def inbox_label(m: Message) -> str:
    """One line of the inbox list: sender, subject, the start of the body."""
    return f"{m.sender} · {_one_line(m.subject, 30) or '(no subject)'} · {_one_line(m.body, PREVIEW_CHARS)}"


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def message_html(m: Message | None) -> str:
    if m is None:
        return '<i style="color:#777">Select a message to read it.</i>'
    e = html.escape
    head = "".join(f"<b>{k}:</b> {e(v)}<br>" for k, v in
                   (("From", m.sender), ("To", m.recipient), ("Date", _when(m.sent_at)),
                    ("Subject", m.subject or "(no subject)")))
    return (f'<div>{head}<pre style="white-space:pre-wrap;border-top:1px solid #ddd;'
            f'padding-top:4px;margin:4px 0">{e(m.body)}</pre></div>')


# -- the transcript ----------------------------------------------------------------

def _frame_parts(e: Exchange) -> tuple[str, str]:
    """The request as it went on the wire, readable, as (content, "#checksum"):
    a handshake with its password hidden, a long frame cut in the middle but
    with its whole checksum."""
    data = e.request
    if e.command == "login":
        user, sep, _ = data.decode("utf-8", "replace").partition(":")
        return f"{user}{sep}{'•' * 8}", ""
    content, sep, claimed = data.rpartition(b"#")
    if not sep:
        content, claimed = data, b""
    text = content.decode("utf-8", "replace").replace("\n", "\\n")
    if len(text) > FRAME_CHARS:
        text = text[: FRAME_CHARS - 12] + "…" + text[-11:]
    return text, (f"#{claimed.decode('ascii', 'replace')}" if sep else "")


def _checksum_note(e: Exchange, shown_content: str) -> str:
    """For a damaged frame: the checksum its content now has, right under
    the checksum it carries, so the difference (why the server said KO)
    can be seen."""
    if not e.corrupted or e.command == "login":
        return ""
    content, sep, claimed = e.request.rpartition(b"#")
    if not sep:
        return "no '#' left before the checksum: nothing to check"
    actual = checksum(content)
    if claimed.decode("ascii", "replace") == actual:
        return ""
    label = "content hashes to" if len(shown_content) >= 17 else "sha1 now"
    return f"{label.rjust(len(shown_content))} {actual}"


def frames_html(transcript: Transcript, *, limit: int = TEXT_EXCHANGES) -> str:
    """Every exchange: the core's one-line summary, then the frame itself."""
    exchanges = list(transcript)
    if not exchanges:
        return f'<pre style="{_MONO}">(no exchanges yet)</pre>'
    e_ = html.escape
    lines = []
    if len(exchanges) > limit:
        lines.append(f"… {len(exchanges) - limit} earlier exchanges not shown")
        exchanges = exchanges[-limit:]
    for e in exchanges:
        summary = e_(e.summary())
        if e.outcome == "KO":
            summary = f'<span style="color:#c62828">{summary}</span>'
        elif e.attempt > 1:
            summary = f'<span style="color:#1a7f37">{summary}</span>'
        lines.append(summary)
        content, claimed = _frame_parts(e)
        lines.append("  " + e_(content + claimed))
        note = _checksum_note(e, content)
        if note:
            lines.append(f'  <span style="color:#c62828">{e_(note)}</span>')
    return _tail_box(f'<pre style="{_MONO};white-space:pre;margin:0">' + "\n".join(lines) + "</pre>", 280)


def _sequence_diagram():
    try:
        from ..pictures import sequence_diagram
    except Exception:      # not there (yet), or matplotlib missing: the text diagram will do
        return None
    return sequence_diagram


def diagram_html(transcript: Transcript, *, limit: int = DIAGRAM_EXCHANGES, title: str | None = None) -> str:
    """The last *limit* exchanges as a sequence diagram: an SVG from
    :mod:`mailkit.pictures` when it is available, else the text one."""
    recent = Transcript(list(transcript)[-limit:])
    if not recent:
        return f'<pre style="{_MONO}">(no exchanges yet: log in, and each request will appear here)</pre>'
    draw = _sequence_diagram()
    if draw is not None:
        try:
            svg = draw(recent, title=title)._repr_svg_()
        except Exception:  # a picture must never break the app: fall back to text
            svg = None
        if svg:
            svg = svg.replace("<svg ", '<svg style="max-width:100%;height:auto" ', 1)
            return _tail_box(f'<div class="mailkit-svg">{svg}</div>', 420)
    return _tail_box(f'<pre style="{_MONO};margin:0">{html.escape(recent.sequence(60))}</pre>', 420)
