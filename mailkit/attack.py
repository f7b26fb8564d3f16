"""Notebook 10's on-path attacker: a link that rewrites mail, and a tap that records.

* :class:`RewritingLink` is a :class:`~mailkit.noise.NoisyLink` that changes
  a mail in flight (``old`` becomes ``new`` in every frame) and then repairs
  the frame's end: the SHA-1 of a 2017 frame (anybody can compute it: no
  key), or the HMAC tag of a :mod:`mailkit.mac` frame, which it can compute
  only once it knows the key (:meth:`RewritingLink.learn_key`, from a login
  it saw in clear).  Without the key it leaves the old tag, which no longer
  fits.  It records every login it relays (:meth:`~RewritingLink.logins`),
  and can send a mail it relayed again, byte for byte
  (:meth:`~RewritingLink.replay`): a MAC proves a frame unchanged, not new.
* :class:`Impostor` is a mail server with a certificate for ``localhost``
  that no client trusts (the attacker's own): it keeps every login it is
  sent (:class:`RecordingServer` does the same with any certificate).  A
  client that checks certificates never sends it one.
* :class:`Tap` is a plain TCP relay that records every byte both ways
  (what any machine on the path sees: a capture without root), and can
  flip one bit of what the client sends, to show that TLS notices.
  :func:`tls_records` reads the record headers of what it recorded.

A real attacker sits on a router or a shared link; on loopback we put it in
the path by pointing the client at the relay's port.  For teaching on your
own machine only.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass

from . import mac
from . import protocol as P
from .client import request_once
from .listener import Listener
from .noise import NoisyLink
from .server import MailServer
from .tls import IMPOSTOR_CERT, server_context

__all__ = ["RewritingLink", "Login", "Tap", "Impostor", "RecordingServer", "TapRecord", "TlsRecord", "tls_records", "RECORD_TYPES"]

# TLS record content types (RFC 8446, 5.1; the same numbers in RFC 5246, 6.2.1).
RECORD_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
TLS_HEADER = 5          # type (1 byte), legacy version (2), length (2)


@dataclass(frozen=True)
class TlsRecord:
    """One TLS record as the wire shows it: where it starts, its type, length."""

    offset: int
    type: int
    version: int
    length: int

    @property
    def kind(self) -> str:
        return RECORD_TYPES.get(self.type, f"unknown ({self.type})")


def tls_records(data: bytes) -> list[TlsRecord]:
    """The TLS records in *data* (a stream from its first byte), as far as
    whole headers go.  Besides these headers (outer type, length) and their
    timing, an on-path attacker sees the hellos in clear (the ClientHello's
    server name, SNI, unless ECH) and the IP addresses and ports.  In TLS
    1.3 every encrypted record's outer type is application_data (23): the
    real type is inside, encrypted (RFC 8446, 5.2)."""
    records, at = [], 0
    while at + TLS_HEADER <= len(data):
        kind, version, length = data[at], int.from_bytes(data[at + 1:at + 3], "big"), \
            int.from_bytes(data[at + 3:at + 5], "big")
        records.append(TlsRecord(at, kind, version, length))
        at += TLS_HEADER + length
    return records


@dataclass(frozen=True)
class Login:
    """A login a link relayed in clear: who, the password, the session id it got."""

    user: str
    password: str
    session_id: str


class RewritingLink(NoisyLink):
    """A relay that replaces *old* with *new* in every command frame it
    carries, and recomputes what ends the frame (see the module docstring).
    ``link.rewritten`` lists ``(before, after)`` for each frame it changed.
    Logins pass unchanged (and are recorded)."""

    def __init__(self, target, old: str, new: str, *, key: bytes | None = None, **kwargs):
        super().__init__(target, **kwargs)
        self.old, self.new = old.encode("utf-8"), new.encode("utf-8")
        self.key = key
        self.rewritten: list[tuple[bytes, bytes]] = []
        self._lock = threading.Lock()

    def tamper(self, request: bytes) -> bytes:
        tagged = mac.split_tagged(request)
        if tagged is not None:
            content, old_end = tagged
        elif P.looks_framed(request):
            content, old_end = request[:-P.CHECKSUM_LEN - 1], None
        else:
            return request                          # a login: passed on as it is
        if self.old not in content:
            return request
        content = content.replace(self.old, self.new)
        if tagged is None:                          # 2017: SHA-1, which needs no key
            end = P.checksum(content)
        elif self.key is not None:                  # a tag, and the attacker has the key
            end = mac.tag(self.key, content)
        else:
            end = old_end                           # a tag it cannot compute: the old one
        after = content + b"#" + end.encode("ascii")
        with self._lock:
            self.rewritten.append((request, after))
        return after

    def logins(self) -> list[Login]:
        """Every login the link relayed that the server accepted, in order."""
        seen = []
        for event in list(self.events):
            if P.is_frame(event.request) or not event.reply.startswith(b"OK:"):
                continue
            user, _, password = event.request.decode("utf-8", "replace").partition(":")
            seen.append(Login(user, password, event.reply[3:3 + P.SESSION_ID_LEN].decode("ascii")))
        return seen

    def replay(self) -> bytes:
        """Send the last command frame the server accepted through this link
        again, byte for byte as it went on, straight to the server; its
        reply.  No key needed: the old tag still fits the old frame."""
        for event in reversed(list(self.events)):
            if (P.is_frame(event.request) or mac.split_tagged(event.request)) and event.reply.startswith(b"OK"):
                return request_once(self.target, self.tamper(event.request))
        raise LookupError("no accepted command frame to replay")

    def learn_key(self) -> bytes | None:
        """The key of the last login seen (mac.session_key of its password and
        session id): from now on the link forges tags too."""
        logins = self.logins()
        if logins:
            self.key = mac.session_key(logins[-1].password, logins[-1].session_id)
        return self.key


@dataclass(frozen=True)
class TapRecord:
    """Bytes that crossed the tap: connection number, direction (``"->"``
    client to server, ``"<-"`` back), the bytes as one read returned them."""

    connection: int
    direction: str
    data: bytes


class Tap(Listener):
    """A TCP relay to *target* that records every byte both ways in
    ``tap.records``.  ``flip_at=N`` flips the lowest bit of the N-th byte
    (0-based) each connection sends towards the server; ``flip_record=N``
    flips the lowest bit of the first encrypted byte of the N-th
    ``application_data`` record (1-based) each connection sends (TLS 1.3:
    the 1st is the client's encrypted Finished, the 2nd its first request)."""

    POLL_S = 0.1            # how often a relay thread looks for stop()
    # After stop(), a relay still reads what is on its way for this long:
    # a client that had its reply may leave (with the with block) before the
    # server's last bytes (TLS's close_notify) crossed; stop() waits < 1 s.
    DRAIN_S = 0.5

    # flip_record looks for its record in the first this many bytes of a connection
    FLIP_SEARCH_BYTES = 64 * 1024

    def __init__(self, target: tuple[str, int], *, flip_at: int | None = None,
                 flip_record: int | None = None, host: str = "127.0.0.1"):
        super().__init__(host, 0, raw_connections=True)
        self.target = tuple(target)
        self.flip_at, self.flip_record = flip_at, flip_record
        self.records: list[TapRecord] = []
        self._lock = threading.Lock()
        self._connections = 0

    def sent(self, direction: str = "->") -> bytes:
        """Every byte that crossed in one direction, all connections joined."""
        with self._lock:
            return b"".join(r.data for r in self.records if r.direction == direction)

    def _record_byte(self, stream: bytes) -> int | None:
        """The offset of the first payload byte of the flip_record-th
        application_data record in *stream*, once its header is there."""
        found = [r for r in tls_records(stream) if r.type == 23]
        if len(found) < self.flip_record:
            return None
        return found[self.flip_record - 1].offset + TLS_HEADER

    def _record(self, number: int, direction: str, data: bytes) -> None:
        with self._lock:
            self.records.append(TapRecord(number, direction, data))

    def handle(self, conn: socket.socket, peer) -> None:
        with self._lock:
            self._connections += 1
            number = self._connections
        try:
            up = socket.create_connection(self.target, timeout=self.REQUEST_DEADLINE_S)
        except OSError:
            return
        with up, selectors.DefaultSelector() as sel:
            sel.register(conn, selectors.EVENT_READ, (conn, up, "->"))
            sel.register(up, selectors.EVENT_READ, (up, conn, "<-"))
            offset = 0                      # bytes the client has sent so far
            flip_at = self.flip_at
            sent = bytearray()              # (for flip_record: the records so far)
            stop_at = None
            while sel.get_map():
                if self.stop_requested():   # what is already on its way is still recorded
                    stop_at = stop_at or time.monotonic() + self.DRAIN_S
                    if time.monotonic() > stop_at:
                        return
                for key, _ in sel.select(self.POLL_S):
                    src, dst, direction = key.data
                    try:
                        data = src.recv(65536)
                    except OSError:         # a reset: that side is gone; the other may still speak
                        data = b""
                    if not data:            # one side closed: pass the close on
                        sel.unregister(src)
                        try:
                            dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    if direction == "->":
                        if self.flip_record is not None and flip_at is None and len(sent) < self.FLIP_SEARCH_BYTES:
                            sent += data
                            flip_at = self._record_byte(bytes(sent))
                        if flip_at is not None and offset <= flip_at < offset + len(data):
                            i = flip_at - offset
                            data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]
                        offset += len(data)
                    self._record(number, direction, data)
                    try:
                        dst.sendall(data)
                    except OSError:         # that side is gone: keep recording the other to its end
                        pass


class RecordingServer(MailServer):
    """A mail server that keeps every login it receives, as bytes
    (``server.logins``): a witness of what reached it, for a grader or a
    test that must judge a client by what the server saw, not by what the
    client says."""

    def __init__(self, users: dict[str, str] | None = None, **kwargs):
        super().__init__(users or {}, **kwargs)
        self.logins: list[bytes] = []
        self._logins_lock = threading.Lock()

    def handle_request(self, conn, peer, received):
        if received.error is None and not P.is_frame(received.data):
            with self._logins_lock:
                self.logins.append(received.data)
        return super().handle_request(conn, peer, received)


class Impostor(RecordingServer):
    """A TLS mail server that pretends to be the real one, with the
    impostor's certificate (mailkit/certs: for ``localhost`` too, trusted by
    nobody).  ``impostor.stolen`` lists every login it received, as bytes."""

    def __init__(self, users: dict[str, str] | None = None, **kwargs):
        kwargs.setdefault("tls", server_context(IMPOSTOR_CERT))
        super().__init__(users, **kwargs)

    @property
    def stolen(self) -> list[bytes]:
        return self.logins
