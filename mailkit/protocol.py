"""The mail protocol as pure functions: bytes in, objects out, and back.

Theory of operation
-------------------
Every connection carries one request and one reply.  A request is either a
*handshake* ``USERNAME:PASSWORD`` or a *command frame*::

    SESSION_ID:COMMAND[:FIELD]...#CHECKSUM

where CHECKSUM is the lowercase hex SHA-1 of the UTF-8 bytes before the
``#``.  This module builds and parses both, and decides when a request that
arrives in pieces is complete (:class:`RequestReader`).  It never touches a
socket, a thread or a clock of its own: whoever owns the socket feeds it
bytes and asks it how long to wait.  (Its one piece of state changes no
answer: the frame :func:`verifies` last found right, which
:func:`parse_request` then need not hash again; see ``_last_verified``.)

Framing choices (see docs/protocol.md for the full story):

* The checksum follows the *last* ``#``, so ``#`` inside a field needs no
  escaping at all.
* Fields are split by the command's arity, so the last field (BODY, or the
  SUBJECT of ``delmsg``) keeps every ``:`` it contains, unescaped.
* Only a field that is *not* last (the SUBJECT of ``email``) needs an
  escape, and only when it holds a ``:``: then ``:`` is written ``#3A`` and
  ``#`` is written ``#23``.  A field is read as escaped only if it holds
  ``#3A``, so a 2017 client's ``Issue #23 fixed`` arrives as sent; the one
  2017 text read differently is a subject holding ``#3A`` itself (see
  :func:`unescape_field`).  Text without ``:`` (and without ``#3A``), and
  every last field, is byte-identical to what a 2017 client sends.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from dataclasses import dataclass, field

__all__ = [
    "CHECKSUM_LEN", "COMMANDS", "KO_RESEND_S", "MAX_REQUEST_BYTES", "SESSION_ID_LEN",
    "ProtocolError", "LocalProtocolError", "RemoteProtocolError",
    "ChecksumMismatch", "MalformedRequest", "UnknownCommand", "RequestTooLarge", "UppercaseChecksum",
    "Handshake", "Command", "Message", "Reply",
    "checksum", "escape_field", "unescape_field", "validate_username",
    "make_handshake", "make_frame", "parse_request", "parse_reply", "parse_2017",
    "format_messages", "parse_messages", "RequestReader",
    "looks_framed", "verifies", "is_frame", "preview", "normalize_frame", "uppercase_checksum",
]

SESSION_ID_LEN = 10          # PROTOCOL.md: "ten decimal digits"
CHECKSUM_LEN = 40            # hex digits of a SHA-1
DEFAULT_PORT = 2525          # a class server's port: unprivileged, and reads like SMTP's 25
# A 100 KB body must arrive whole; ten times that leaves room for any real
# mail and still stops a client from filling the server's memory.
MAX_REQUEST_BYTES = 1024 * 1024
# Longest reply the client will read: a dump of a full inbox can be large,
# but not unbounded (smtplib caps its reply lines for the same reason).
MAX_REPLY_BYTES = 64 * 1024 * 1024
# After replying exactly KO to a client that has not half-closed, a server
# keeps the connection open this long for ONE resend of the frame on it: the
# 2017 client resends on the same socket (at once; 2 s covers a loaded machine).
KO_RESEND_S = 2.0

USERNAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")
_FRAME_START = re.compile(rb"\d{%d}:" % SESSION_ID_LEN)
_HEX = frozenset(b"0123456789abcdef")
_HEX_DIGITS = b"0123456789abcdef"      # (bytes.translate deletes these: 9x faster than a set)
_HEX_ANY_CASE = frozenset(b"0123456789abcdefABCDEF")
_HEX_UPPER = b"ABCDEF"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    fields: tuple[str, ...]
    summary: str

    def usage(self) -> str:
        return ":".join((self.name, *self.fields))


# The command table: name -> the fields it takes, in wire order.
COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("help", (), "the list of commands"),
        CommandSpec("email", ("RECIPIENT", "SUBJECT", "BODY"), "send a message"),
        CommandSpec("getmsg", ("SENDER",), "your messages from SENDER"),
        CommandSpec("count", (), "how many messages you have"),
        CommandSpec("delmsg", ("SENDER", "SUBJECT"), "delete your message(s) from SENDER with SUBJECT"),
        CommandSpec("dump", (), "all your messages"),
        CommandSpec("logoff", (), "end the session"),
    )
}


# --------------------------------------------------------------------------
# Errors: one family, two sides (as in h11).  A *local* error means "you
# tried to build something the protocol cannot carry"; a *remote* error means
# "the peer sent something that is not a valid request or reply".


class ProtocolError(Exception):
    """Base of every protocol error."""


class LocalProtocolError(ProtocolError, ValueError):
    """We were asked to build a request the protocol cannot carry."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid request."""


class ChecksumMismatch(RemoteProtocolError):
    """The frame's checksum does not match its content (the reply is ``KO``)."""

    def __init__(self, claimed: str, actual: str):
        self.claimed, self.actual = claimed, actual
        super().__init__(
            f"checksum mismatch: frame says {_short(claimed)}, "
            f"content hashes to {_short(actual)}"
        )


class MalformedRequest(RemoteProtocolError):
    """Not a handshake and not a frame, or a frame with the wrong fields."""


class UnknownCommand(MalformedRequest):
    """A frame with a command that is not in :data:`COMMANDS`."""


class UppercaseChecksum(MalformedRequest):
    """A frame whose checksum is right but in uppercase hex (a client's
    habit, not a flipped bit: see :func:`uppercase_checksum`)."""


class RequestTooLarge(RemoteProtocolError):
    """More than :data:`MAX_REQUEST_BYTES` arrived without the request ending."""


def _short(digest: str) -> str:
    return digest[:4] + "…" if len(digest) > 4 else digest or "nothing"


# --------------------------------------------------------------------------
# Values


@dataclass(frozen=True)
class Handshake:
    """``USERNAME:PASSWORD``: the first request of every session."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Command:
    """A verified command frame: its session id, command name and fields."""

    session_id: str
    name: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Message:
    """One stored mail, as the store returns it and a reply lists it."""

    sender: str
    recipient: str
    subject: str
    body: str
    sent_at: float  # seconds since the epoch (time.time())


@dataclass(frozen=True)
class Reply:
    """A reply as the client sees it.

    ``kind`` is ``"KO"`` for exactly ``KO`` (a checksum failure, worth a
    retry), ``"ERROR"`` for an error the server named (``ERROR: ...``, or
    ``KO: ...`` for a refused login), ``"OK"`` for anything else.
    """

    text: str
    kind: str

    @property
    def ok(self) -> bool:
        return self.kind == "OK"

    @property
    def detail(self) -> str:
        """The text after the first ``:`` (or the whole text if none)."""
        return self.text.partition(":")[2].strip() if ":" in self.text else self.text


def validate_username(name: str) -> str:
    """Return *name* if it can be a username, else raise ``ValueError``.

    Usernames start with a letter, so a handshake can never be mistaken for
    a frame (which starts with a ten-digit session id).
    """
    if not isinstance(name, str) or not USERNAME_RE.fullmatch(name):
        raise LocalProtocolError(
            f"bad username {name!r}: use 1-32 characters, a letter first, "
            "then letters, digits, '_', '.' or '-'"
        )
    return name


# --------------------------------------------------------------------------
# Checksums and field escaping


def checksum(content: bytes) -> str:
    """The lowercase hex SHA-1 of *content*: what follows ``#`` in a frame."""
    return hashlib.sha1(content).hexdigest()


# Two escapes, for a field that is not the last one of its frame.
_ESCAPE_RE = re.compile("#(23|3A)")
# What marks a field as escaped: "#3A" (an escaped ':'), or an escaped
# literal "#3A" ("#233A", "#23233A", ...).  A field without it is read as it
# is, so a 2017 client's "Issue #23 fixed" or "C# tips" arrives unchanged.
_ESCAPED_MARK = re.compile("#(?:23)*3A")


def parse_2017(frame: bytes) -> tuple[bytes, str, bool]:
    """Split *frame* the 2017 way, at the FIRST ``#``: return (content, the
    checksum it claims, whether the checksum matches).  Correct only while
    no field contains a ``#`` (PROTOCOL.md, "Flaws of 2017"); mailkit itself
    splits at the last one."""
    content, _, claimed = frame.partition(b"#")
    claimed_text = claimed.decode("utf-8", "replace")
    return content, claimed_text, checksum(content) == claimed_text


def escape_field(text: str) -> str:
    """Make *text* safe for a field that is not the last one of its frame.

    Text without ``:`` travels as it is, ``#`` and all, unless it holds the
    mark of an escaped field (``#3A``, or ``#23``... before ``3A``); then,
    and whenever it holds a ``:``, every ``#`` becomes ``#23`` and every
    ``:`` becomes ``#3A``.  Either way ``unescape_field(escape_field(t)) == t``
    for every text *t*, and the result holds no ``:``.
    """
    if ":" not in text and not _ESCAPED_MARK.search(text):
        return text
    return text.replace("#", "#23").replace(":", "#3A")


def unescape_field(text: str) -> str:
    """Undo :func:`escape_field`.

    A field is escaped only if it holds ``#3A`` (or ``#23``... before
    ``3A``); any other field is taken as it is.  So the one text a 2017
    client sends that is not read back as sent is a subject holding ``#3A``
    (``Flat #3A`` arrives as ``Flat :``): docs/protocol.md explains why no
    escape can avoid that entirely.
    """
    if not _ESCAPED_MARK.search(text):
        return text
    return _ESCAPE_RE.sub(lambda m: "#" if m.group(1) == "23" else ":", text)


# --------------------------------------------------------------------------
# Building requests


def make_handshake(user: str, password: str) -> bytes:
    """``USERNAME:PASSWORD`` as bytes, exactly as a 2017 client sends it."""
    validate_username(user)
    if looks_framed(password.encode("utf-8").lower()):
        raise LocalProtocolError("a password may not end in '#' and 40 hex digits")
    if password.endswith(("\n", "\r")):
        raise LocalProtocolError("a password may not end in a line break")
    return f"{user}:{password}".encode("utf-8")


def make_frame(session_id: str, command: str, *fields: str) -> bytes:
    """Build a command frame with its checksum.

    >>> make_frame("0123456789", "count")
    b'0123456789:count#a1c6...'  # doctest: +SKIP
    """
    if not _is_session_id(session_id):
        raise LocalProtocolError(f"a session id is {SESSION_ID_LEN} digits, not {session_id!r}")
    spec = COMMANDS.get(command)
    if spec is None:
        raise LocalProtocolError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    if len(fields) != len(spec.fields):
        raise LocalProtocolError(
            f"{command} takes {len(spec.fields)} field(s) ({spec.usage()}), got {len(fields)}"
        )
    parts = [session_id, command]
    parts += [escape_field(f) for f in fields[:-1]]
    parts += list(fields[-1:])
    content = ":".join(parts).encode("utf-8")
    return content + b"#" + checksum(content).encode("ascii")


# --------------------------------------------------------------------------
# Parsing requests


def _is_session_id(text: str) -> bool:
    return len(text) == SESSION_ID_LEN and text.isascii() and text.isdigit()


def looks_framed(data: bytes) -> bool:
    """True if *data* ends in ``#`` and 40 lowercase hex digits."""
    tail = data[-CHECKSUM_LEN:]
    return (
        len(data) > CHECKSUM_LEN
        and data[-CHECKSUM_LEN - 1] == ord("#")
        and len(tail) == CHECKSUM_LEN
        and not tail.translate(None, _HEX_DIGITS)      # only lowercase hex digits (asked for every request)
    )


def verifies(data: bytes) -> bool:
    """True if *data* ends in ``#`` and the SHA-1 of everything before it."""
    return looks_framed(data) and _checksum_right(data)


def _checksum_right(data: bytes) -> bool:
    """verifies(), once looks_framed(data) is known to be True."""
    global _last_verified
    ok = hashlib.sha1(memoryview(data)[: -CHECKSUM_LEN - 1]).hexdigest() == data[-CHECKSUM_LEN:].decode()
    if ok and type(data) is bytes:      # (never a bytearray: it could change before the parse)
        _last_verified = data
    return ok


# The frame that verifies() last found right, by identity.  A server's
# RequestReader checks a frame's SHA-1 to know it is complete, and then
# parse_request would check the very same bytes again: the second SHA-1 of
# every request (up to 1 MB) is skipped when it is this object.  Bytes are
# immutable, so the same object has the same checksum; any other object is
# checked as usual.  One reference: at most one request's bytes are kept.
_last_verified: bytes | None = None


def normalize_frame(data: bytes) -> bytes:
    r"""*data* without ONE trailing line end (``\n`` or ``\r\n``, as ``nc``
    or a ``println`` adds) when what is left ends in ``#`` and 40 hex
    digits (of either case); otherwise *data* unchanged.

    The decision of issue 22 (docs/protocol.md, "Trailing newlines and
    uppercase hex"): a server accepts one line end after a frame (no single
    flipped bit can make one, and it is outside the checksummed bytes); a
    client sends none, because a 2017 server answers ``KO``."""
    if data.endswith(b"\r\n"):
        body = data[:-2]
    elif data.endswith(b"\n"):
        body = data[:-1]
    else:
        return data
    tail = body[-CHECKSUM_LEN:]
    if (len(body) > CHECKSUM_LEN and body[-CHECKSUM_LEN - 1] == ord("#")
            and set(tail) <= _HEX_ANY_CASE):
        return body
    return data


def uppercase_checksum(data: bytes) -> bool:
    """True if *data* is a frame whose checksum is right but written with
    at least two uppercase hex letters: a client's habit (``%02X``), never
    one flipped bit (which can change the case of one letter only, and gets
    ``KO`` like any damage).  Servers answer it with a named error that says
    to send lowercase (docs/protocol.md, "Trailing newlines and uppercase hex")."""
    tail = data[-CHECKSUM_LEN:]
    return (len(data) > CHECKSUM_LEN and data[-CHECKSUM_LEN - 1] == ord("#")
            and set(tail) <= _HEX_ANY_CASE
            # uppercase letters: the bytes translate() deletes (in C: a
            # generator over 40 bytes cost 2.5 us on every frame)
            and len(tail) - len(tail.translate(None, _HEX_UPPER)) >= 2
            and checksum(data[:-CHECKSUM_LEN - 1]) == tail.decode("ascii").lower())


def is_frame(data: bytes) -> bool:
    """A request is a frame if it starts with a session id or carries a checksum."""
    return bool(_FRAME_START.match(data)) or looks_framed(data)


def _damaged_checksum(data: bytes) -> bool:
    """A frame whose checksum part is there but unreadable: a flipped bit
    turned the ``#`` into something else, or a hex digit into a non-digit."""
    if len(data) <= CHECKSUM_LEN:
        return False
    tail = data[-CHECKSUM_LEN:]
    sep_ok = data[-CHECKSUM_LEN - 1] == ord("#")
    hex_ok = set(tail) <= _HEX
    # exactly one of the two is damaged: more would be a different frame
    return sep_ok != hex_ok


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at position {exc.start})"
        ) from None


def parse_request(data: bytes) -> Handshake | Command:
    """Parse one complete request.

    Raises :class:`ChecksumMismatch` when a frame's checksum does not match
    (the only case answered with a bare ``KO``), and other
    :class:`RemoteProtocolError` subclasses with a readable message for
    everything else that is wrong.
    """
    if len(data) > MAX_REQUEST_BYTES:
        raise RequestTooLarge(f"request of {len(data)} bytes is over the limit of {MAX_REQUEST_BYTES}")
    if not data.strip():
        raise MalformedRequest("empty request: expected USERNAME:PASSWORD or a command frame")
    framed = normalize_frame(data)      # one trailing line end after a frame: accepted
    if is_frame(framed):
        return _parse_frame(framed)
    return _parse_handshake(data)


def _parse_handshake(data: bytes) -> Handshake:
    text = _decode(data, "the handshake").rstrip("\r\n")
    user, sep, password = text.partition(":")
    if not sep:
        raise MalformedRequest(
            "expected USERNAME:PASSWORD (a login) or SESSION_ID:COMMAND...#CHECKSUM "
            f"(a command); got {preview(text)}"
        )
    return Handshake(user, password)


def _parse_frame(data: bytes) -> Command:
    if not looks_framed(data):
        # (a lowercase checksum is never an uppercase one: asked only here)
        if uppercase_checksum(data):
            raise UppercaseChecksum(
                "checksum in uppercase hex: send its 40 hex digits in lowercase "
                "(docs/protocol.md, 'Trailing newlines and uppercase hex')")
        if _damaged_checksum(data):
            raise ChecksumMismatch(_decode_loose(data[-CHECKSUM_LEN:]), "(unreadable checksum)")
        raise MalformedRequest(
            f"incomplete frame: it should end in '#' and a {CHECKSUM_LEN}-digit checksum; "
            f"got {len(data)} bytes ending in {preview(_decode_loose(data[-20:]))}"
        )
    content, claimed = data[: -CHECKSUM_LEN - 1], data[-CHECKSUM_LEN:].decode("ascii")
    actual = claimed if data is _last_verified else checksum(content)   # (see _last_verified)
    if actual != claimed:
        raise ChecksumMismatch(claimed, actual)
    text = _decode(content, "the frame")
    session_id, sep, rest = text.partition(":")
    if not (sep and _is_session_id(session_id)):
        raise MalformedRequest(
            f"a frame starts with a {SESSION_ID_LEN}-digit session id and ':'; got {preview(text)}"
        )
    name = rest.partition(":")[0]
    spec = COMMANDS.get(name)
    if spec is None:
        raise UnknownCommand(f"unknown command {preview(name)} (send 'help' for the list)")
    parts = rest.split(":", len(spec.fields))[1:]
    if len(parts) != len(spec.fields) or (not spec.fields and rest != name):
        raise MalformedRequest(
            f"{name} takes {len(spec.fields)} field(s) ({spec.usage()}), "
            f"got {rest.count(':') if not spec.fields else len(parts)}"
        )
    fields = tuple(unescape_field(p) for p in parts[:-1]) + tuple(parts[-1:])
    return Command(session_id, name, fields)


def _decode_loose(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


def preview(text: str, limit: int = 40) -> str:
    """*text* quoted for an error message, cut after *limit* characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


# --------------------------------------------------------------------------
# Replies


def parse_reply(data: bytes) -> Reply:
    """Classify a reply: exactly ``KO`` is a checksum failure (retry);
    ``ERROR...`` or ``KO:...`` is a named error (do not retry); anything else
    is a success."""
    text = data.decode("utf-8", errors="replace")
    stripped = text.strip()
    if stripped == "KO":
        return Reply(stripped, "KO")
    head = stripped.partition(":")[0].strip().upper()
    if head in ("KO", "ERROR"):
        return Reply(stripped, "ERROR")
    return Reply(text, "OK")


# A message listing (the reply to getmsg and dump) must be readable when a
# 2017 client prints it, and exact when mailkit's client parses it back.  So
# every message has readable headers and a body whose length in bytes is
# given up front: the body may contain anything, even text that looks like
# the next header.

_LISTING_HEAD = re.compile(r"OK: (\d+) messages?")


def _escape_header(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _unescape_header(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), text)


def format_messages(messages: list[Message], *, title: str = "") -> str:
    """The text of a getmsg/dump reply."""
    n = len(messages)
    lines = [f"OK: {n} message{'' if n == 1 else 's'}{title}"]
    for i, m in enumerate(messages, 1):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(m.sent_at))
        lines += [
            f"--- message {i} of {n} ---",
            f"From: {m.sender}",
            f"To: {m.recipient}",
            f"Date: {stamp}",
            f"Subject: {_escape_header(m.subject)}",
            f"Length: {len(m.body.encode('utf-8'))}",
            "",
            m.body,
        ]
    return "\n".join(lines)


def parse_messages(text: str) -> list[Message]:
    """Parse the text of a getmsg/dump reply back into messages.

    Raises :class:`RemoteProtocolError` if the text is not a mailkit listing
    (a 2017-style server may use its own format: then use the text as is).
    """
    data = text.encode("utf-8")
    first, _, rest = data.partition(b"\n")
    head = _LISTING_HEAD.match(first.decode("utf-8", "replace"))
    if not head:
        raise RemoteProtocolError(f"not a message listing: {preview(first.decode('utf-8', 'replace'))}")
    messages = []
    for i in range(1, int(head.group(1)) + 1):
        headers: dict[str, str] = {}
        marker, _, rest = rest.partition(b"\n")
        if not marker.startswith(b"--- message"):
            raise RemoteProtocolError(f"message {i}: expected '--- message', got {marker[:40]!r}")
        while True:
            line, _, rest = rest.partition(b"\n")
            if not line:
                break
            key, _, value = line.decode("utf-8").partition(": ")
            headers[key] = value
        try:
            length = int(headers["Length"])
            sent_at = calendar.timegm(time.strptime(headers["Date"], "%Y-%m-%d %H:%M:%S UTC"))
            if len(rest) < length or rest[length : length + 1] not in (b"", b"\n"):
                raise ValueError(f"its body should be {length} bytes, and is not")
            body, rest = rest[:length].decode("utf-8"), rest[length + 1 :]
            messages.append(
                Message(headers["From"], headers.get("To", ""), _unescape_header(headers["Subject"]), body, sent_at)
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise RemoteProtocolError(f"message {i} of the listing is damaged: {exc}") from None
    if rest:
        raise RemoteProtocolError(f"{len(rest)} unexpected bytes after the last message of the listing")
    return messages


# --------------------------------------------------------------------------
# When is a request complete?


class RequestReader:
    """Collects the bytes of one request and says when it is complete.

    A 2017 client sends its request in one ``send`` with no terminator and
    then waits; mailkit's client half-closes after sending.  So a request is
    complete when:

    * the peer half-closed (``feed(b"")``), or
    * it ends in ``#`` and a checksum that matches (a whole frame), or
    * it is a handshake (``user:pw``) and nothing more came for
      ``quiet`` seconds, or it ended in a newline (typed by hand), or
    * it ends like a frame but the checksum does not match, and nothing more
      came for ``settle`` seconds (a flipped bit: answer ``KO`` soon), or
    * nothing more came for ``idle_timeout`` seconds (a frame whose ``#``
      was flipped never looks complete; it is answered after this timeout).

    :meth:`patience` returns how long to wait for more bytes: ``0`` means
    "complete now".
    """

    QUIET_S = 0.05      # a handshake is a few bytes in one segment: 50 ms is plenty
    SETTLE_S = 0.1      # a frame that ends like a frame but does not verify
    IDLE_TIMEOUT_S = 2.0  # between two pieces of one request

    def __init__(self, *, idle_timeout: float = IDLE_TIMEOUT_S, max_bytes: int = MAX_REQUEST_BYTES):
        self.idle_timeout = idle_timeout
        self.max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self.closed = False   # the peer half-closed
        self._verdict: float | None = None

    @property
    def data(self) -> bytes:
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def __len__(self) -> int:
        return self._size

    def feed(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed its side."""
        if not data:
            self.closed = True
        else:
            self._chunks.append(data)
            self._size += len(data)
            if self._size > self.max_bytes:
                raise RequestTooLarge(
                    f"request is over the limit of {self.max_bytes} bytes"
                )
        self._verdict = None

    def patience(self) -> float:
        """Seconds to wait for more bytes before the request counts as complete."""
        if self._verdict is None:
            self._verdict = self._judge()
        return self._verdict

    def _judge(self) -> float:
        if self.closed:
            return 0.0
        data = self.data
        if not data:
            return self.idle_timeout
        framed = normalize_frame(data)
        if looks_framed(framed):
            return 0.0 if _checksum_right(framed) else min(self.SETTLE_S, self.idle_timeout)
        if uppercase_checksum(framed):
            return 0.0          # complete: it gets an error that says to send lowercase
        if not _FRAME_START.match(data[: SESSION_ID_LEN + 1]) and not data[:1].isdigit():
            if data.endswith(b"\n"):
                return 0.0
            if b":" in data:
                return min(self.QUIET_S, self.idle_timeout)
        return self.idle_timeout
