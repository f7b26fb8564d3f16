"""A mail client that speaks PROTOCOL.md and retries after ``KO``.

    client = MailClient(*server.address)
    client.login("alice", "wonderland")
    client.send("bob", "Hello", "How are you?")
    client.transcript        # every attempt: bytes sent, reply, time

Each request goes out on a new connection.  The client sends it, closes its
sending side (so the server knows the request is complete) and reads the
reply until the server closes.  A bare ``KO`` (checksum mismatch) or a
connection that breaks before a reply is worth another try: the request is
sent again on a new connection, up to ``retries`` more times.  Anything else
the server names as an error is raised at once, since sending it again
would give the same answer.
"""

from __future__ import annotations

import socket
import time

from . import protocol as P
from .protocol import Message, Reply
from .trace import Exchange, Transcript

__all__ = [
    "MailClient", "MailClientError", "ServerError", "LoginFailed", "NotLoggedIn",
    "RetriesExhausted", "ServerUnreachable", "UnexpectedReply", "DEFAULT_RETRIES", "request_once",
]

# PROTOCOL.md names the success reply of these; anything else is a damaged reply.
_REPLIES_START_WITH_OK = ("email", "logoff")
DEFAULT_RETRIES = 3        # PROTOCOL.md: "up to three times"
DEFAULT_TIMEOUT_S = 5.0    # connect and each read; a server that says nothing for 5 s is gone


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


class MailClient:
    """A client for one user of one server.

    *retries* is how many times a request is sent again after ``KO`` or a
    broken connection (so at most ``1 + retries`` attempts).  *channel*, if
    given, is a :class:`mailkit.noise.BitFlipChannel` (or anything with its
    ``transmit(bytes) -> (bytes, flips)``) that may corrupt command frames on
    their way out.  Handshakes carry no checksum in the protocol, so the
    channel leaves them alone.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 2525, *,
                 retries: int = DEFAULT_RETRIES, timeout: float = DEFAULT_TIMEOUT_S, channel=None):
        self.host, self.port = host, port
        self.retries, self.timeout, self.channel = retries, timeout, channel
        self.user: str | None = None
        self.session_id: str | None = None
        self.transcript = Transcript()

    def __repr__(self) -> str:
        who = f"{self.user} (session {self.session_id})" if self.session_id else "not logged in"
        return f"<MailClient {self.host}:{self.port}, {who}>"

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
        return _listing(self.command("getmsg", sender))

    def dump(self) -> list[Message]:
        """All your messages, oldest first."""
        return _listing(self.command("dump"))

    def count(self) -> int:
        """How many messages you have."""
        return _first_int(self.command("count").text)

    def delete(self, sender: str, subject: str) -> int:
        """Delete your message(s) from *sender* with *subject*; return how many."""
        return _first_int(self.command("delmsg", sender, subject).text)

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
        frame = P.make_frame(self.session_id or "0" * P.SESSION_ID_LEN, name, *fields)
        reply = self._request(name, frame, noisy=True)
        if reply.kind == "ERROR":
            raise ServerError(reply.text.strip())
        if name in _REPLIES_START_WITH_OK and not reply.text.lstrip().startswith("OK"):
            raise UnexpectedReply(name, reply.text)
        return reply

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
            try:
                exchange.reply = self._exchange(wire, exchange)
            except ConnectionRefusedError as exc:
                exchange.error = "connection refused"
                raise ServerUnreachable(
                    f"nothing is listening at {self.host}:{self.port} (is the server running?)"
                ) from exc
            except MailClientError:
                raise
            except OSError as exc:       # broken connection: worth another try
                exchange.error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                continue
            if exchange.reply:
                reply = P.parse_reply(exchange.reply)
                if reply.kind != "KO" or not retry_on_ko:
                    return reply
        raise RetriesExhausted(command, attempts)

    def _exchange(self, data: bytes, exchange: Exchange) -> bytes:
        start = time.perf_counter()
        try:
            return request_once((self.host, self.port), data, timeout=self.timeout)
        finally:
            exchange.duration = time.perf_counter() - start


def request_once(address, data: bytes, *, half_close: bool = True,
                 timeout: float = DEFAULT_TIMEOUT_S) -> bytes:
    """One request, one reply, as the protocol says: connect to *address*,
    send *data*, close the sending side ("that was all"), read the reply
    until the server closes.  ``b""`` means it closed without a reply.

    ``half_close=False`` behaves like a 2017 client, which sends and waits.
    """
    with socket.create_connection(tuple(address), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        chunks, size = [], 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > P.MAX_REPLY_BYTES:
                raise MailClientError(f"reply over {P.MAX_REPLY_BYTES} bytes")
        return b"".join(chunks)


def _listing(reply: Reply) -> list[Message]:
    try:
        return P.parse_messages(reply.text)
    except P.RemoteProtocolError as exc:
        raise ServerError(f"the server's reply is not a message listing: {exc}") from None


def _first_int(text: str) -> int:
    for word in text.replace(":", " ").split():
        if word.isdigit():
            return int(word)
    raise ServerError(f"expected a number in the reply, got {text[:60]!r}")
