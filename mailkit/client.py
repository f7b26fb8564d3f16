"""A mail client that speaks PROTOCOL.md and retries after ``KO``.

    client = MailClient(*server.address)
    client.login("alice", "wonderland")
    client.send("bob", "Hello", "How are you?")
    client.transcript        # every attempt: bytes sent, reply, time

Each request goes out on a new connection.  The client sends it and closes
its sending side (so a mailkit server knows the request is complete).

When is a reply complete?  mailkit's servers close the connection after
the reply; the 2017 server never does (it keeps the login connection for
the whole session and a command's connection until the next one arrives;
see PROTOCOL.md).  So a reply is complete when the server closes, or:

* a login reply, as soon as it reads ``OK:`` and ten digits, or starts
  with ``KO``;
* any other reply, once some bytes came and then nothing for
  :data:`QUIET_S` seconds (every 2017 reply is one ``send``; a mailkit
  message listing that does not parse yet is waited for until the close).

When is a request sent again?  Only when it cannot have been carried out
twice by the client's own doing:

* after a reply of exactly ``KO`` (the checksum did not match: the server
  did nothing), on a new connection, up to ``retries`` more times;
* after a connection that broke before the request was fully sent, or that
  closed or was reset with no reply at all (the "lost reply" of notebook 5:
  the mail may arrive twice, and only sequence numbers can tell);
* NEVER once any reply bytes arrived, and never after a *timeout* with
  no reply for ``login``, ``email``, ``delmsg`` and ``logoff``: a server
  that is merely slow (busy, or a 2017 server serving someone else) may
  carry out the first copy too, so resending would deliver a second mail or
  start a second session (which crashes a 2017 server).  Instead the client
  waits on the same connection as long as its resends would have taken
  (``1 + retries`` timeouts), then raises :class:`NoReply` (a
  :class:`RetriesExhausted`).  ``help``, ``getmsg``, ``count`` and ``dump``
  change nothing and are resent after one timeout.

  ``resend_after_timeout=True`` turns this off, on purpose: then EVERY
  request is sent again after ``timeout`` seconds of silence (a
  retransmission timer, as in rdt3.0), up to ``retries`` times.  A lost
  request is then recovered, but a timeout shorter than the server's
  answer delivers a mail twice: notebook 07 shows both.  Only for
  teaching, or for a server that discards duplicates (sequence numbers).

Every timeout is in the transcript: the attempt's ``error`` reads
``timed out after 0.2 s`` (how long the client waited for a first reply
byte), and :attr:`Exchange.timed_out` is true.

Anything else the server names as an error is raised at once, since sending
it again would give the same answer.  A 2017 server answers a wrong session
id with a bare ``KO`` (the same reply as a damaged frame), so against it an
expired session ends in :class:`RetriesExhausted` after ``1 + retries``
attempts, not in a :class:`ServerError`.

The 2017 reply texts (``Total emails recived: 3``, ``Emails From:...``,
``Email deleated. Subject: ...``, ``Recipient Name Not Recognized: ...``)
give the same Python results as mailkit's: see :meth:`MailClient.count`,
:meth:`~MailClient.dump`, :meth:`~MailClient.delete`.
"""

from __future__ import annotations

import re
import socket
import ssl
import time

from . import protocol as P
from .protocol import Message, Reply
from .tls import client_context
from .trace import Exchange, Transcript

__all__ = [
    "MailClient", "MailClientError", "ServerError", "LoginFailed", "NotLoggedIn", "NoReply",
    "RetriesExhausted", "ServerUnreachable", "UnexpectedReply", "DEFAULT_RETRIES", "QUIET_S",
    "request_once",
]

# PROTOCOL.md names the success reply of these; anything else is a damaged reply.
_REPLIES_START_WITH_OK = ("email", "logoff")
# Commands that change nothing on the server: safe to send again after a timeout.
_READ_ONLY = frozenset({"help", "getmsg", "count", "dump"})
DEFAULT_RETRIES = 3        # PROTOCOL.md: "up to three times"
DEFAULT_TIMEOUT_S = 5.0    # connect and each read; a server that says nothing for 5 s is gone
# A reply from a server that does not close is complete after this much
# silence once its first bytes came.  The 2017 server sends each reply in one
# send(), so on any network its bytes come together; 0.25 s is far above a
# loopback or LAN gap and still keeps a command well under a second.
QUIET_S = 0.25

_LOGIN_OK = re.compile(rb"OK:\d{%d}\s*" % P.SESSION_ID_LEN)
_MAILKIT_LISTING = re.compile(r"OK: \d+ messages?")
# The 2017 server's error replies (PROTOCOL.md, last section): not KO, not ERROR.
_ERRORS_2017 = ("Recipient Name Not Recognized", "Sender Name Not Recognized", "KO. Email not found")


class MailClientError(OSError):
    """Base of every client error (an ``OSError``, like smtplib's)."""


class ServerError(MailClientError):
    """The server answered with an error; ``.reply`` is its text."""

    def __init__(self, reply: str):
        self.reply = reply
        super().__init__(reply)


class LoginFailed(ServerError):
    """Wrong username or password (or too many wrong tries)."""


class NotLoggedIn(MailClientError):
    """A command was called before ``login()`` (or after ``logoff()``)."""


class ServerUnreachable(MailClientError):
    """Nothing listens at the address (the server is not running?)."""


class UnexpectedReply(MailClientError):
    """A reply that is neither the success the protocol names nor an error:
    most likely damaged on its way back (replies carry no checksum)."""

    def __init__(self, command: str, reply: str):
        self.command, self.reply = command, reply
        super().__init__(
            f"the reply to {command} was not understood: {reply[:60]!r} (damaged on the way "
            "back? replies have no checksum, so the request may or may not have been carried out)"
        )


class RetriesExhausted(MailClientError):
    """Every attempt failed with ``KO`` or a broken connection."""

    def __init__(self, command: str, attempts: list[Exchange]):
        self.command, self.attempts = command, attempts
        outcomes = ", ".join(e.outcome if not e.error else e.error for e in attempts)
        n = len(attempts)
        super().__init__(f"{command} failed after {n} attempt{'' if n == 1 else 's'} ({outcomes})")


class NoReply(RetriesExhausted):
    """The request went out whole and no reply came in time.  It is not sent
    again: the server may still carry it out (a second mail, a second session)."""

    def __init__(self, command: str, attempts: list[Exchange], waited: float):
        super().__init__(command, attempts)
        self.waited = waited
        self.args = (f"{self.args[0]}: sent, but no reply within {waited:g} s; not sent again, "
                     "because the server may have carried it out (check before you try again)",)


class MailClient:
    """A client for one user of one server (mailkit's, or a 2017 one).

    *retries* is how many times a request is sent again after ``KO`` or a
    broken connection (so at most ``1 + retries`` attempts).  *channel*, if
    given, is a :class:`mailkit.noise.BitFlipChannel` (or anything with its
    ``transmit(bytes) -> (bytes, flips)``) that may corrupt command frames on
    their way out.  Handshakes carry no checksum in the protocol, so the
    channel leaves them alone.  *quiet* is :data:`QUIET_S`.

    *timeout* is per attempt: how long to wait to connect, for the first
    reply byte, and between reply bytes.  *resend_after_timeout* (off by
    default) resends every command after one *timeout* with no reply, even
    ``email``: a timer that can deliver duplicates (see the module docstring).

    *tls* (not part of the 2017 protocol; :mod:`mailkit.tls`): ``True``
    wraps every connection in TLS with the standard checks (the certificate
    must chain to a CA the system trusts, or, with *cafile*, to it instead, and name
    *server_hostname*, by default *host*); or pass your own
    ``ssl.SSLContext``.  A certificate that fails the checks raises
    :class:`ssl.SSLCertVerificationError` at once (never retried).  Over TLS
    the client does not half-close (Python's TLS cannot, and TLS 1.2 has
    no half-close): the server sees the end of a frame by its checksum and
    the end of a login by its quiet time, as for a 2017 client.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 2525, *,
                 retries: int = DEFAULT_RETRIES, timeout: float = DEFAULT_TIMEOUT_S, channel=None,
                 quiet: float = QUIET_S, resend_after_timeout: bool = False,
                 tls: bool | ssl.SSLContext = False, cafile: str | None = None,
                 server_hostname: str | None = None):
        self.host, self.port = host, port
        if tls is True:
            tls = client_context(cafile)
        elif cafile is not None and not tls:
            raise ValueError("cafile= is for TLS: pass tls=True too")
        self.tls: ssl.SSLContext | None = tls or None
        self.server_hostname = server_hostname or host
        self.retries, self.timeout, self.channel, self.quiet = retries, timeout, channel, quiet
        self.resend_after_timeout = resend_after_timeout
        self.user: str | None = None
        self.session_id: str | None = None
        self.transcript = Transcript()

    def __repr__(self) -> str:
        who = f"{self.user} (session {self.session_id})" if self.session_id else "not logged in"
        tls = ", TLS" if self.tls is not None else ""
        return f"<MailClient {self.host}:{self.port}{tls}, {who}>"

    # -- the commands -------------------------------------------------------

    def login(self, user: str, password: str) -> str:
        """Log in; return the session id.  Raises :class:`LoginFailed`."""
        # No retry on KO here: a handshake has no checksum, so a 2017 server's
        # bare KO means "wrong password", and sending it again will not help.
        reply = self._request("login", P.make_handshake(user, password), noisy=False, retry_on_ko=False)
        head, _, session_id = reply.text.strip().partition(":")
        if reply.kind != "OK" or head != "OK":
            raise LoginFailed(reply.text.strip())
        self.user, self.session_id = user, session_id.strip()
        return self.session_id

    def send(self, recipient: str, subject: str, body: str) -> str:
        """Send a mail; return the server's reply (``OK: Email Sent``)."""
        return self.command("email", recipient, subject, body).text

    def messages_from(self, sender: str) -> list[Message]:
        """Your messages from *sender*, oldest first."""
        return self._listing(self.command("getmsg", sender), sender)

    def dump(self) -> list[Message]:
        """All your messages, oldest first."""
        return self._listing(self.command("dump"))

    def count(self) -> int:
        """How many messages you have (``OK: 3 messages`` or, from a 2017
        server, ``Total emails recived: 3``)."""
        return _first_int(self.command("count").text)

    def delete(self, sender: str, subject: str) -> int:
        """Delete your message(s) from *sender* with *subject*; return how many.
        (A 2017 server says ``Email deleated. Subject: ...`` once per message,
        and ``KO. Email not found.``, a :class:`ServerError`, for none.)"""
        text = self.command("delmsg", sender, subject).text
        if "Email deleated" in text:
            return text.count("Email deleated")
        return _first_int(text)

    def help(self) -> str:
        """The server's list of commands."""
        return self.command("help").text

    def logoff(self) -> str:
        """End the session (a new ``login()`` starts another)."""
        reply = self.command("logoff")
        self.session_id = None
        return reply.text

    def command(self, name: str, *fields: str) -> Reply:
        """Send any command frame; return the reply, raising on errors."""
        if self.session_id is None and name != "help":
            raise NotLoggedIn(f"log in before '{name}' (client.login(user, password))")
        reply = self._request(name, self.frame(name, *fields), noisy=True)
        if reply.kind == "ERROR" or reply.text.startswith(_ERRORS_2017):
            raise ServerError(reply.text.strip())
        if name in _REPLIES_START_WITH_OK and not reply.text.lstrip().startswith("OK"):
            raise UnexpectedReply(name, reply.text)
        return reply

    def frame(self, name: str, *fields: str) -> bytes:
        """The frame :meth:`command` sends (a subclass may seal it differently:
        see :class:`mailkit.mac.MacClient`)."""
        return P.make_frame(self.session_id or "0" * P.SESSION_ID_LEN, name, *fields)

    def _listing(self, reply: Reply, sender: str | None = None) -> list[Message]:
        try:
            if reply.text.startswith(("Emails From:", "All emails recived:")):
                return _parse_2017_listing(reply.text, self.user or "")
            return P.parse_messages(reply.text)
        except P.RemoteProtocolError as exc:
            raise ServerError(f"the server's reply is not a message listing: {exc}") from None

    # -- one request, with retries ------------------------------------------

    def _request(self, command: str, payload: bytes, *, noisy: bool, retry_on_ko: bool = True) -> Reply:
        """Send *payload* until it gets a reply other than ``KO`` (at most
        ``1 + retries`` times); record every attempt in the transcript."""
        attempts: list[Exchange] = []
        for attempt in range(1, self.retries + 2):
            wire, flips = payload, ()
            if noisy and self.channel is not None:
                wire, flips = self.channel.transmit(payload)
            exchange = Exchange(command, attempt, payload, wire, flips=tuple(flips))
            attempts.append(exchange)
            self.transcript.append(exchange)
            progress = _Progress()
            start = time.perf_counter()
            # A request that will not be sent again after a timeout gets the
            # patience its resends would have had: 1 + retries timeouts.
            resend = self.resend_after_timeout or command in _READ_ONLY
            patience = self.timeout * (1 if resend else self.retries + 1)
            try:
                exchange.reply = _exchange((self.host, self.port), wire, progress, login=command == "login",
                                           timeout=self.timeout, first_reply=patience, quiet=self.quiet,
                                           tls=self.tls, server_hostname=self.server_hostname)
            except ConnectionRefusedError as exc:
                exchange.error = "connection refused"
                raise ServerUnreachable(
                    f"nothing is listening at {self.host}:{self.port} (is the server running?)"
                ) from exc
            except MailClientError:
                raise
            except ssl.SSLCertVerificationError as exc:   # the same certificate next time: no retry
                exchange.error = f"certificate not accepted: {exc.verify_message}"
                raise
            except TimeoutError as exc:
                waited = patience if progress.sent else self.timeout   # else: connecting
                exchange.error = f"timed out after {waited:g} s"
                if progress.sent and not resend:
                    raise NoReply(command, attempts, patience) from exc
                continue
            except OSError as exc:       # broken connection, nothing received: worth another try
                exchange.error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                continue
            finally:
                exchange.duration = time.perf_counter() - start
            if exchange.reply:
                reply = P.parse_reply(exchange.reply)
                if reply.kind != "KO" or not retry_on_ko:
                    return reply
        raise RetriesExhausted(command, attempts)


class _Progress:
    """How far one attempt got: whether the whole request went out."""

    sent = False


def _exchange(address, data: bytes, progress: _Progress, *, login: bool,
              timeout: float, first_reply: float, quiet: float,
              tls: ssl.SSLContext | None = None, server_hostname: str | None = None) -> bytes:
    """One attempt: connect, send, half-close, read the reply until it is
    complete (see the module docstring).  Raises ``OSError`` only if no
    reply byte arrived; bytes that came before a reset are the reply.
    With *tls*: the handshake first, and no half-close."""
    with socket.create_connection(tuple(address), timeout=timeout) as raw:
        sock = raw if tls is None else tls.wrap_socket(raw, server_hostname=server_hostname)
        return _send_and_read(sock, data, progress, login=login, timeout=timeout,
                              first_reply=first_reply, quiet=quiet, half_close=tls is None)


def _send_and_read(sock: socket.socket, data: bytes, progress: _Progress, *, login: bool,
                   timeout: float, first_reply: float, quiet: float, half_close: bool) -> bytes:
    with sock:
        sock.sendall(data)
        progress.sent = True
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        reply = bytearray()
        patient = False          # a mailkit listing still coming: wait for the close
        while True:
            sock.settimeout(first_reply if not reply else quiet if not patient else timeout)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if not reply:
                    raise
                if not patient and _listing_incomplete(reply):
                    patient = True
                    continue
                return bytes(reply)            # quiet after some bytes: complete
            except OSError:
                if reply:
                    return bytes(reply)
                raise
            if not chunk:
                return bytes(reply)            # the server closed: complete
            reply += chunk
            patient = False
            if len(reply) > P.MAX_REPLY_BYTES:
                raise MailClientError(f"reply over {P.MAX_REPLY_BYTES} bytes")
            if login and (_LOGIN_OK.fullmatch(reply) or reply.startswith(b"KO")):
                return bytes(reply)


def _listing_incomplete(reply: bytes) -> bool:
    """A mailkit listing (``OK: N messages`` ...) whose messages are not all there yet."""
    text = reply.decode("utf-8", "replace")
    if not _MAILKIT_LISTING.match(text):
        return False
    try:
        P.parse_messages(text)
    except P.RemoteProtocolError:
        return True
    return False


def request_once(address, data: bytes, *, half_close: bool = True,
                 timeout: float = DEFAULT_TIMEOUT_S, source_address=None) -> bytes:
    """One request, one reply, as the protocol says: connect to *address*,
    send *data*, close the sending side ("that was all"), read the reply
    until the server closes.  ``b""`` means it closed without a reply.

    ``half_close=False`` behaves like a 2017 client, which sends and waits.
    *source_address* ``(host, port)`` binds our end first (a test speaking
    from 127.0.0.2 while another "student" uses 127.0.0.3).
    (It still waits for the close: against a 2017 server, use MailClient.)
    """
    with socket.create_connection(tuple(address), timeout=timeout,
                                  source_address=source_address) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass    # the server answered and closed early (e.g. "too large"): read what it said
        chunks, size = [], 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > P.MAX_REPLY_BYTES:
                raise MailClientError(f"reply over {P.MAX_REPLY_BYTES} bytes")
        return b"".join(chunks)


def _parse_2017_listing(text: str, recipient: str) -> list[Message]:
    """A 2017 server's getmsg/dump reply as messages (best effort: its
    format has no lengths, so a body holding a blank-ish line ``\\n \\n``
    would be cut).  ``getmsg`` names the sender once at the top, ``dump``
    once per message; the date is ``time.strftime("%c")`` in the server's
    local time (``sent_at`` 0.0 if it does not parse)."""
    header, _, rest = text.partition("\n")
    sender = header.split(":")[1] if header.startswith("Emails From:") else ""
    messages = []
    for entry in rest.split("\n \n"):
        if not entry.strip():
            continue
        lines = entry.split("\n")
        fields: dict[str, str] = {}
        while lines and lines[0].partition(": ")[0] in ("Sender", "Subject"):
            key, _, value = lines.pop(0).partition(": ")
            fields[key] = value
        if len(lines) < 2 or not lines[0].startswith("Message: ") or "Subject" not in fields:
            raise P.RemoteProtocolError(f"not a 2017 listing entry: {entry[:40]!r}")
        body = "\n".join(lines[:-1])[len("Message: "):]
        messages.append(Message(fields.get("Sender", sender), recipient, fields["Subject"], body,
                                _parse_2017_date(lines[-1])))
    return messages


def _parse_2017_date(text: str) -> float:
    try:
        return time.mktime(time.strptime(text.strip(), "%c"))
    except (ValueError, OverflowError):
        return 0.0


def _first_int(text: str) -> int:
    for word in text.replace(":", " ").split():
        if word.isdigit():
            return int(word)
    raise ServerError(f"expected a number in the reply, got {text[:60]!r}")
