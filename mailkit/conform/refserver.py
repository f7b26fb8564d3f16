"""The reference server ``conform client`` runs a client program against:
mailkit's own mail logic (a :class:`~mailkit.responder.MailResponder`), with
every connection recorded and faults the suite plans.

A *plan* is a function ``plan(request, attempt) -> fault`` called for each
request: *attempt* counts how often these exact bytes came before (0 the
first time); *fault* is ``None`` (answer), ``"KO"`` (answer exactly ``KO``,
whatever the checksum), ``"silent"`` (say nothing, close nothing, until the
client goes) or ``"keep-open"`` (answer, then leave the connection open as
a 2017 server does, until the client closes it).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

from .. import protocol as P
from ..responder import MailResponder, reply_text
from ..store import MailStore

__all__ = ["ReferenceServer", "Seen"]

HOLD_S = 30.0          # longest a silent or kept-open connection is held (the run's budget is less)
POLL_S = 0.02         # how often a waiting connection looks at the clock and at stop()
CHEAP_SCRYPT_N = 16    # the suite's accounts: a login costs microseconds, not 50 ms


@dataclass
class Seen:
    """One connection as the reference server saw it."""

    number: int
    requests: list[bytes] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    faults: list[str | None] = field(default_factory=list)
    half_closed: bool = False
    at: float = 0.0


class ReferenceServer:
    """mailkit's responder on 127.0.0.1 (port 0), one thread per connection."""

    def __init__(self, users: dict[str, str], plan=None):
        self.store = MailStore(":memory:", scrypt_n=CHEAP_SCRYPT_N)
        for name, password in users.items():
            self.store.add_user(name, password)
        self.responder = MailResponder(self.store)
        self.plan = plan or (lambda request, attempt: None)
        self.seen: list[Seen] = []
        self._counts: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._threads: list[threading.Thread] = []
        self.address = self._sock.getsockname()[:2]
        self._accepter = threading.Thread(target=self._accept, daemon=True, name="conform-ref")

    def start(self) -> "ReferenceServer":
        self._accepter.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._accepter.join(5)
        for t in list(self._threads):
            t.join(5)
        self._sock.close()
        self.store.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def frames(self) -> list[bytes]:
        """Every request that was a frame, in the order they came."""
        return [r for s in self.seen for r in s.requests if P.is_frame(P.normalize_frame(r))]

    def subjects(self, user: str) -> list[str]:
        return [m.subject for m in self.store.messages(user, None)]

    # -- serving ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                seen = Seen(len(self.seen) + 1, at=time.monotonic())
                self.seen.append(seen)
            t = threading.Thread(target=self._serve, args=(conn, peer, seen), daemon=True)
            self._threads.append(t)
            t.start()

    def _read(self, conn: socket.socket, seen: Seen, within: float) -> bytes:
        """One request, complete by mailkit's rules (RequestReader); wait up
        to *within* for its first byte."""
        reader = P.RequestReader()
        deadline = time.monotonic() + within
        last = time.monotonic()
        while not self._stop.is_set():
            wait = reader.patience()
            if wait <= 0:
                break
            now = time.monotonic()
            if not len(reader):
                if now >= deadline:
                    break
            elif now - last >= wait:
                break
            conn.settimeout(POLL_S)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                reader.feed(chunk)
            except P.RequestTooLarge:
                break                           # judged as it stands: the suite never needs 1 MiB
            last = time.monotonic()
        seen.half_closed = seen.half_closed or reader.closed
        return reader.data

    def _serve(self, conn: socket.socket, peer, seen: Seen) -> None:
        with conn:
            within = HOLD_S
            for _ in range(2):                      # a request, and one resend after KO
                data = self._read(conn, seen, within)
                if not data:
                    return
                with self._lock:
                    attempt = self._counts.get(data, 0)
                    self._counts[data] = attempt + 1
                fault = self.plan(data, attempt)
                seen.requests.append(data)
                seen.faults.append(fault)
                if fault == "silent":
                    seen.replies.append(b"")
                    self._hold(conn)
                    return
                if fault == "KO":
                    reply = b"KO"
                else:
                    try:
                        reply = reply_text(self.responder.respond(data, peer)[1]).encode("utf-8")
                    except Exception as exc:       # the suite's server must not die either
                        reply = f"ERROR: {exc}".encode()
                seen.replies.append(reply)
                try:
                    conn.sendall(reply)
                except OSError:
                    return
                if reply != b"KO" or seen.half_closed:
                    break
                within = P.KO_RESEND_S
            if fault == "keep-open":
                self._hold(conn)

    def _hold(self, conn: socket.socket) -> None:
        """Say nothing more, and do not close, until the suite stops: not
        even the client's FIN ends the silence (a half-close and a close
        send the same FIN, so a half-closed client would hear the close)."""
        deadline = time.monotonic() + HOLD_S
        conn.settimeout(POLL_S)
        reading = True
        while not self._stop.is_set() and time.monotonic() < deadline:
            if not reading:
                self._stop.wait(POLL_S)
                continue
            try:
                reading = bool(conn.recv(65536))
            except TimeoutError:
                continue
            except OSError:
                return                          # a reset: the client is gone
