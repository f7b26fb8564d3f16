"""Notebook 10's helpers: checksum, MAC and TLS.

* :class:`ChangedBytes`: a hexdump of a frame as the attacker sent it on,
  the bytes it changed coloured (what the server received);
* :func:`hmac_by_hand`: RFC 2104's formula with ``hashlib``, to compare
  with :func:`mailkit.mac.tag`;
* :class:`PathView`: what a tap on the path saw, per connection and
  direction: the text in clear, or TLS's record headers;
* :func:`clear_ladder`, :func:`tls_ladder`: the two sessions as ladders;
* :class:`PathForm`: an ipywidgets form: log in with or without TLS through
  a tap and see what crossed;
* :func:`stop_security`: stops every server, link and tap the kernel started;
* the quiz ``quiz("10", ...)``.
"""

from __future__ import annotations

import hashlib
import ssl

from ..attack import Tap, TapRecord, tls_records
from ..client import MailClient, MailClientError, ServerError
from ..noise import NoisyLink
from ..pictures import COLOURS, Ladder, Layout, Shown
from ..pictures.drawing import esc
from ..server import MailServer
from ..text import clip
from ..tls import TEACHING_CERT
from ..trace import hexdump_rows
from .quizzes import QUIZZES, Question

__all__ = ["ChangedBytes", "hmac_by_hand", "PathView", "clear_ladder", "tls_ladder", "PathForm",
           "stop_security", "login_result"]

BLOCK = 64          # SHA-256's block size in bytes (RFC 2104: B)


def hmac_by_hand(key: bytes, message: bytes) -> str:
    """HMAC-SHA256 as RFC 2104, section 2, writes it:
    ``H((K xor opad) || H((K xor ipad) || text))``, K padded with zeros to
    the block size (a key longer than a block is hashed first)."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    ipad = bytes(k ^ 0x36 for k in key)
    opad = bytes(k ^ 0x5C for k in key)
    inner = hashlib.sha256(ipad + message).digest()
    return hashlib.sha256(opad + inner).hexdigest()


class ChangedBytes(Shown):
    """*after* as a hexdump, the bytes that differ from *before* marked
    (``^`` in text, coloured in HTML), and a count."""

    def __init__(self, before: bytes, after: bytes, title: str = ""):
        self.before, self.after, self.title = bytes(before), bytes(after), title
        self.changed = {i for i in range(len(self.after))
                        if i >= len(self.before) or self.before[i] != self.after[i]}

    def _rows(self):
        return hexdump_rows(self.after)

    @property
    def text(self) -> str:
        lines = [self.title] if self.title else []
        for row in self._rows():
            lines.append(row.line)
            marks = "".join("^^ " if row.offset + i in self.changed else "   " for i in range(len(row.data)))
            if marks.strip():
                lines.append(" " * 10 + marks.rstrip())
        lines.append(f"{len(self.changed)} of {len(self.after)} bytes changed")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        hot = f'style="background:#ffe3ec;color:{COLOURS["flip"]};font-weight:bold"'
        lines = [f"<b>{esc(self.title)}</b>"] if self.title else []
        for row in self._rows():
            hexes, chars = [], []
            for i, h, c in row.cells():
                c = esc(c)
                if i in self.changed:
                    h, c = f"<span {hot}>{h}</span>", f"<span {hot}>{c}</span>"
                hexes.append(h)
                chars.append(c)
            pad = "   " * (row.width - len(row.data))
            lines.append(f"{row.offset:08x}  {' '.join(hexes)}{pad}  |{''.join(chars)}|")
        lines.append(f"{len(self.changed)} of {len(self.after)} bytes changed")
        return ('<pre style="font-family:DejaVu Sans Mono,Menlo,Consolas,monospace;font-size:12px">'
                + "\n".join(lines) + "</pre>")


def _streams(records: list[TapRecord]) -> list[tuple[int, str, bytes]]:
    """(connection, direction, every byte of that direction) in first-seen order."""
    joined: dict[tuple[int, str], bytearray] = {}
    for r in records:
        joined.setdefault((r.connection, r.direction), bytearray()).extend(r.data)
    return [(c, d, bytes(b)) for (c, d), b in sorted(joined.items(), key=lambda kv: (kv[0][0], kv[0][1] != "->"))]


def _describe(data: bytes) -> str:
    if data[:1] == b"\x16" and tls_records(data):
        kinds = [f"{r.kind} {r.length}" for r in tls_records(data)]
        return "TLS records: " + ", ".join(kinds)
    return "in clear: " + clip(data.decode("utf-8", "replace"), 70)


class PathView(Shown):
    """What *tap* saw: one line per connection and direction."""

    def __init__(self, tap: Tap, title: str = "what the path saw"):
        self.streams = _streams(list(tap.records))
        self.title = title

    @property
    def text(self) -> str:
        lines = [self.title]
        for number, direction, data in self.streams:
            who = "client -> server" if direction == "->" else "server -> client"
            lines.append(f"connection {number}, {who}, {len(data)} bytes, {_describe(data)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return f"<pre>{esc(self.text)}</pre>"


CLEAR_LAYOUT = Layout(width=640, note_chars=70)


def clear_ladder(tap: Tap, title: str = "without TLS: every byte in clear") -> Ladder:
    """The tap's connections in clear, one arrow per direction's bytes."""
    steps = []
    for _, direction, data in _streams(list(tap.records)):
        text = clip(data.decode("utf-8", "replace"), 46)
        if direction == "->":
            steps.append(("client", "server", text, "ink", "the path reads it"))
        else:
            steps.append(("server", "client", text, "OK" if data.startswith(b"OK") else "ink"))
    return Ladder(["client", "server"], steps, title, layout=CLEAR_LAYOUT)


def tls_ladder(title: str = "with TLS 1.3 (RFC 8446): after the hellos, records only") -> Ladder:
    """One TLS 1.3 connection carrying one login, as RFC 8446 section 2
    draws the full handshake ({braces}: encrypted with handshake keys,
    [brackets]: with application keys), plus what OpenSSL sends after it
    (two session tickets) and the server's close_notify alert.  The
    change_cipher_spec records of middlebox compatibility (D.4) are left out."""
    steps = [
        ("client", "server", "ClientHello + key_share", "ink", "in clear: versions, ciphers, a DH share, SNI if by name"),
        ("server", "client", "ServerHello + key_share", "ink", "in clear; from here on all is encrypted"),
        ("server", "client", "{EncryptedExtensions, Certificate, CertificateVerify}", "ink",
         "the client checks CA, dates, name"),
        ("server", "client", "{Finished}", "ink"),
        ("client", "server", "{Finished}", "ink"),
        ("client", "server", "[alice:wonderland]", "OK", "a 33-byte record: 16 + type byte + 16-byte tag"),
        ("server", "client", "[NewSessionTicket] x 2", "ink", "for a later resumption"),
        ("server", "client", "[OK:<session id>] + [close_notify]", "OK"),
    ]
    return Ladder(["client", "server"], steps, title, layout=CLEAR_LAYOUT)


class PathForm:
    """Log in through a tap, with or without TLS, and see what crossed.

    ``PathForm(users)``: the form has user, password, a TLS box and a button
    (CSS classes ``mailkit-path-user``, ``-password``, ``-tls``, ``-send``;
    the result in ``mailkit-path-result``).  Each click starts its own mail
    server (with TLS and the teaching certificate, or without) and a tap,
    logs in through the tap, and stops both: the form works whatever the
    notebook's other cells started or stopped.  ``form.last`` is the last
    :class:`PathView`."""

    def __init__(self, users: dict[str, str]):
        import ipywidgets as W

        self.users = dict(users)
        self.last: PathView | None = None
        self.user = W.Text("alice", description="user")
        self.password = W.Password("wonderland", description="password")
        self.tls = W.Checkbox(False, description="TLS", indent=False)
        self.send = W.Button(description="Log in through the tap", button_style="primary",
                             layout=W.Layout(width="auto"))
        self.result = W.HTML("<i>Nothing sent yet.</i>")
        for widget, css in ((self.user, "user"), (self.password, "password"), (self.tls, "tls"),
                            (self.send, "send"), (self.result, "result")):
            widget.add_class(f"mailkit-path-{css}")
        self.send.on_click(self._go)
        self.widget = W.VBox([W.HBox([self.user, self.password]), W.HBox([self.tls, self.send]), self.result])
        self.widget.add_class("mailkit-path-form")

    def run(self, user: str, password: str, tls: bool) -> PathView:
        """One login through a fresh server and tap; what crossed."""
        with MailServer(self.users, tls=tls or None) as server, Tap(server.address) as tap:
            outcome = login_result(tap.address, user, password, tls=tls,
                                   cafile=TEACHING_CERT if tls else None)
        view = PathView(tap, title=f"{'with TLS' if tls else 'without TLS'}: {outcome}")
        view.leaked = bool(password) and password.encode("utf-8") in tap.sent()
        return view

    def _go(self, _button=None) -> None:
        view = self.run(self.user.value, self.password.value, self.tls.value)
        self.last = view
        verdict = ("<b style='color:#b91c1c'>the password crossed in clear</b>" if view.leaked
                   else "<b style='color:#1a7f37'>the password is not in the bytes</b>")
        self.result.value = f"{verdict}<pre>{esc(view.text)}</pre>"


def login_result(address, user: str = "alice", password: str = "wonderland", **client) -> str:
    """Log in at *address* with ``MailClient(..., **client)``; one line:
    ``logged in``, ``refused: <why the certificate was not accepted>``,
    ``the server said: <its reply>`` or ``failed: <why>``."""
    try:
        MailClient(*address, retries=0, **client).login(user, password)
        return "logged in"
    except ssl.SSLCertVerificationError as exc:
        return f"refused: {exc.verify_message}"
    except ServerError as exc:
        return f"the server said: {exc.reply}"
    except MailClientError as exc:
        return f"failed: {exc}"


def stop_security() -> int:
    """Stop every server, link and tap this kernel started; how many."""
    return MailServer.stop_all() + NoisyLink.stop_all() + Tap.stop_all()


QUIZZES["10"] = [
    Question(("b",), "SHA-1 needs no secret: whoever changes a frame computes the SHA-1 of "
             "the new one. A checksum detects accidents (noise), not an adversary.",
             "What would the attacker need to know to recompute the checksum?"),
    Question(("c",), "The key was derived from the password and the session id, and both "
             "crossed the wire in clear (the login and its reply). A MAC is only as "
             "secret as its key.",
             "Look at link.logins(): what did the attacker read?"),
    Question(("a",), "With check_hostname off and CERT_NONE the client accepts any "
             "certificate: the impostor's too, and it hands the impostor the password. "
             "Encryption to the wrong party protects nothing (RFC 9525 checks the name).",
             "Whom does a client that checks nothing talk to?"),
]
