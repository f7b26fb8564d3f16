"""What the mail-client app shows, as plain functions: objects in, text or
HTML out.  No widgets here, so every view can be tested (and read) alone.

* :func:`parse_address` / :func:`default_address` - the "server" field
* :func:`describe_error` - a client error as a sentence a student can act on
* :func:`inbox_label`, :func:`message_html` - the inbox list and the reader
* :func:`frames_html`, :func:`diagram_html` - the transcript pane
"""

from __future__ import annotations

import html
import ipaddress
import os
import re
import socket
import ssl
import time

from ..client import (
    LoginFailed, MailClientError, NotLoggedIn, RetriesExhausted, ServerError, ServerUnreachable,
)
from ..protocol import DEFAULT_PORT, Message, ProtocolError, checksum
from ..trace import Exchange, Transcript

__all__ = [
    "ENV_SERVER", "UnknownHost", "parse_address", "format_address", "resolve", "default_address",
    "describe_error",
    "inbox_label", "message_html", "frames_html", "diagram_html", "status_html", "page_url",
    "about_this_page",
]

ENV_SERVER = "MAILKIT_SERVER"   # "host:port" of a class server, for a Voila link
ENV_VOILA_URL = "VOILA_REQUEST_URL"   # Voila gives each page's kernel the URL it was opened with
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

class UnknownHost(ValueError):
    """The server's name cannot be looked up (DNS): asking again will not help."""


# A host name is dot-separated labels of letters, digits and '-', not at either
# end of a label (RFC 1123); '_' is let through for local names.
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")
_EXPECTED = "type the server as HOST:PORT, e.g. 127.0.0.1:2525"


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[::1]:port"``, or just ``"host"`` for port
    2525) as ``(host, port)``; a ``ValueError`` that says what was expected."""
    text = (text or "").strip()
    if not text:
        raise ValueError(f"The server address is empty: {_EXPECTED}.")
    if "://" in text or "/" in text:
        raise ValueError(f"{text!r} is not a server address: {_EXPECTED} (no http://, no path).")
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):                       # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"Expected [HOST]:PORT, got {text!r}: {_EXPECTED}.")
            port = rest[1:]
        if not _is_ipv6(host):
            raise ValueError(f"{host!r} in brackets is not an IPv6 address: {_EXPECTED}.")
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif ":" in text and not _is_ipv6(text):       # a:b:c is neither HOST:PORT nor IPv6
        raise ValueError(f"{text!r} has more than one ':': {_EXPECTED}.")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"The port in {text!r} should be a number from 1 to 65535: {_EXPECTED}.")
    if not host or not (_is_ipv6(host) or _HOSTNAME.fullmatch(host)):
        raise ValueError(f"{host!r} is not a host name or an IP address: {_EXPECTED}.")
    return host, int(port)


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def resolve(host: str, port: int) -> None:
    """Look *host* up once, before any request: a name that does not exist
    is one clear :class:`UnknownHost`, not four attempts that fail alike
    (the client retries broken connections, and a failed lookup is not one)."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnknownHost(f"There is no server called {host!r}: the name could not be looked up "
                          f"({_lookup_reason(exc)}). Check the spelling, or type an IP address "
                          "such as 127.0.0.1.") from None


def _lookup_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


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
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: the server's certificate is not accepted ({exc.verify_message}). "
                "Nothing was sent; check the server's name, or the CA file you trust.")
    if isinstance(exc, ServerUnreachable):
        return f"Cannot reach the server: {exc}. Check the address, or start the server."
    if isinstance(exc, socket.gaierror):
        return f"Cannot find the server: its name could not be looked up ({_lookup_reason(exc)})."
    if isinstance(exc, RetriesExhausted):
        if any(e.error.startswith("gaierror") for e in exc.attempts):
            return (f"{exc.command} failed: the server's name could not be looked up. "
                    "Check the server address, or type an IP address such as 127.0.0.1.")
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

_FAILED, _RETRIED = "#c62828", "#1a7f37"
_FLIP_STYLE = "background:#c62828;color:#fff;font-weight:bold;border-radius:2px"
INDENT = "    "                  # frame lines sit under their summary line


def _units(data: bytes, start: int, flipped: set[int]) -> list[tuple[str, bool]]:
    """*data* (bytes *start*.. of a frame) as printed characters, each with
    whether a flipped bit sits in it.  A flipped byte is decoded alone, so it
    is one character that can be marked (a damaged UTF-8 byte shows as '�')."""
    units: list[tuple[str, bool]] = []
    run_start = 0
    for i in range(len(data) + 1):
        if i < len(data) and start + i not in flipped:
            continue
        run = data[run_start:i].decode("utf-8", "replace")
        units.extend((c if c != "\n" else "\\n", False) for c in run)
        if i < len(data):
            c = data[i:i + 1].decode("utf-8", "replace")
            units.append((c if c != "\n" else "\\n", True))
        run_start = i + 1
    return units


def _frame_units(e: Exchange) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """The request as it went on the wire, readable, as (content, "#checksum")
    units: a handshake with its password hidden, a long frame cut in the
    middle (an ellipsis that is marked if a flip hides there) but with its
    whole checksum."""
    data = e.request
    if e.command == "login":
        user, sep, _ = data.decode("utf-8", "replace").partition(":")
        return [(c, False) for c in f"{user}{sep}{'•' * 8}"], []
    flipped = {byte for byte, _bit in e.flips}
    content, sep, claimed = data.rpartition(b"#")
    if not sep:
        content, claimed = data, b""
    shown = _units(content, 0, flipped)
    if len(shown) > FRAME_CHARS:
        hidden = shown[FRAME_CHARS - 12:-11]
        shown = shown[:FRAME_CHARS - 12] + [("…", any(f for _, f in hidden))] + shown[-11:]
    return shown, (_units(sep + claimed, len(content), flipped) if sep else [])


def _width(units) -> int:
    return sum(len(text) for text, _ in units)


def _checksum_note(e: Exchange, content_width: int) -> str:
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
    label = "content hashes to" if content_width >= 17 else "sha1 now"
    return f"{label.rjust(content_width)} {actual}"


def _flip_lines(e: Exchange, content, claimed) -> list[str]:
    """A caret under every flipped character, and what the flip hit."""
    units = content + claimed
    if not any(f for _, f in units):
        return []
    carets = "".join(("^" if f else " ") * len(text) for text, f in units).rstrip()
    n = len(e.flips)
    what = "a flipped bit" if n == 1 else f"{n} flipped bits"
    in_checksum = any(f for _, f in claimed[1:])
    in_content = any(f for _, f in content) or bool(claimed and claimed[0][1])
    # Short lines: the pane is narrow, and it does not wrap.
    if in_checksum and not in_content:
        return [f"{carets} {what}",
                "the flip hit the checksum itself: the content arrived intact,",
                "but no longer matches the checksum it carries, so: KO"]
    if in_checksum:
        return [f"{carets} {what}", "flips hit both the content and the checksum"]
    return [f"{carets} {what}"]


def _marked(units) -> str:
    return "".join(f'<span class="mailkit-flip" style="{_FLIP_STYLE}">{html.escape(text)}</span>' if f
                   else html.escape(text) for text, f in units)


def frames_html(transcript: Transcript, *, limit: int = TEXT_EXCHANGES) -> str:
    """Every exchange: the core's one-line summary (red with ✖ if the
    attempt failed, green with ✔ if a retry got through), then the frame
    itself with its flipped characters marked."""
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
        if e.outcome in ("KO", "ERROR", "no reply"):
            summary = f'<span class="mailkit-attempt-failed" style="color:{_FAILED}">✖ {summary}</span>'
        elif e.attempt > 1:
            summary = f'<span class="mailkit-attempt-retried" style="color:{_RETRIED}">✔ {summary}</span>'
        else:
            summary = f"  {summary}"
        lines.append(summary)
        content, claimed = _frame_units(e)
        lines.append(INDENT + _marked(content) + _marked(claimed))
        for line in _flip_lines(e, content, claimed):
            lines.append(f'{INDENT}<span style="color:{_FAILED}">{e_(line)}</span>')
        note = _checksum_note(e, _width(content))
        if note:
            lines.append(f'{INDENT}<span style="color:{_FAILED}">{e_(note)}</span>')
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


# -- the page, when Voila serves the notebook ------------------------------------------

def page_url() -> str | None:
    """The address of this page when Voila serves the notebook (without its
    query string), else None: in JupyterLab and under nbval."""
    from urllib.parse import urlsplit

    url = os.environ.get(ENV_VOILA_URL, "")
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class _Note:
    """A short text for the page, as Markdown with a plain-text form."""

    def __init__(self, markdown: str, text: str):
        self.markdown, self.plain = markdown, text

    def __repr__(self) -> str:
        return self.plain

    def _repr_markdown_(self) -> str:
        return self.markdown


def about_this_page() -> _Note:
    """Where the client runs, for the reader of this notebook: in Voila, the
    page's real address (whatever port it was served on) and where its
    forms point; in JupyterLab, how to serve the notebook as a page."""
    url = page_url()
    server = os.environ.get(ENV_SERVER)
    if url is None:
        text = ("To hand this client out as a web page: `make app` serves this notebook with "
                "Voilà (the text and the two apps, no code) and prints the page's address "
                "(port 8866 unless you set APP_PORT). "
                "`MAILKIT_SERVER=HOST:2525 make app` points every form at a class server.")
        return _Note(text, text.replace("`", ""))
    where = (f"Its forms start at the class server **{html.escape(server)}**." if server else
             "It has a practice mail server of its own, with the accounts above, "
             "which stops a few minutes after you close the tab.")
    link = html.escape(url)
    return _Note(f"This page: [{link}]({link}). {where} Reload it for a fresh start.",
                 f"This page: {url}. {where.replace('**', '')} Reload it for a fresh start.")
