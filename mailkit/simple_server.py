"""The mail server to read first: one thread per connection, standard library.

    with SimpleMailServer(users={"alice": "wonderland"}) as server:
        host, port = server.address        # 127.0.0.1 and a free port

Theory of operation.  :class:`socketserver.ThreadingTCPServer` accepts each
connection and runs :meth:`_Connection.handle` for it in a thread of its own.
That thread does four steps:

1. **Read** the request.  TCP delivers a stream of bytes, not messages, and a
   2017 client marks no end, so a sans-IO
   :class:`~mailkit.protocol.RequestReader` judges the bytes so far:
   ``patience()`` says how long to wait for more (0: complete).  We wait that
   long with a socket timeout; silence for that long also means complete.
2. **Answer** it: the :class:`~mailkit.responder.MailResponder` (the same
   object the fast :class:`~mailkit.server.MailServer` uses) turns the bytes
   into a reply; an email's reply waits until the mail is on disk.
3. **Send** the reply, then half-close: "that was all".
4. After exactly ``KO`` (a damaged frame), wait up to ``KO_RESEND_S`` for the
   2017 client's resend on the same connection, and answer that once too.

A thread per connection is the textbook design; :mod:`mailkit.server` shows
what a class server of 300 needs beyond it (one event loop reads every
connection, so a silent client costs no thread).

Not a class server: ``python -m mailkit serve`` runs
:class:`~mailkit.server.MailServer`.  This one shares the responder's limits
(wrong passwords, password checks per address, session ids, each sender's
mail; see :class:`~mailkit.limits.ClassLimits`) but has none of the
server's own: no cap on connections (per address, per /24, in all; each
one is a thread), no minimum byte rate (only ``REQUEST_DEADLINE_S``), each
listing built whole in memory (up to ``store.LISTING_BYTES``, 2 MB, per
reply), and one log line per request, refusals included.  Those are what
:mod:`mailkit.server` adds (docs/instructor.md, "Limits").
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time

from . import protocol as P
from .limits import ClassLimits
from .listener import PortInUseError, send_and_close
from .responder import REPLIES, MailResponder, loggable, reply_text
from .store import SCRYPT_N, MailStore

__all__ = ["SimpleMailServer"]

log = logging.getLogger("mailkit.server")

REQUEST_DEADLINE_S = 10.0   # a whole request, however slowly it trickles in
SEND_TIMEOUT_S = 5.0        # a client that never reads its reply


class _Connection(socketserver.BaseRequestHandler):
    """One client connection, in its own thread (``self.request`` is the socket)."""

    def handle(self) -> None:
        mail: SimpleMailServer = self.server.mail
        conn = self.request
        mail.track(conn, True)
        try:
            reply = self.answer(mail, conn, REQUEST_DEADLINE_S)            # steps 1-3
            if reply == REPLIES.KO:                                        # step 4
                self.answer(mail, conn, P.KO_RESEND_S, resend=True)
        except OSError:
            pass                                    # the client left, or stop() cut it
        finally:
            mail.track(conn, False)

    def answer(self, mail: "SimpleMailServer", conn: socket.socket, within: float, *,
               resend: bool = False) -> str | None:
        """Read one request, send its reply; return the reply if the client may resend."""
        reader = P.RequestReader(idle_timeout=mail.idle_timeout, max_bytes=mail.max_request_bytes)
        deadline = time.monotonic() + within
        try:
            while (wait := reader.patience()) > 0:
                if not len(reader) and not reader.closed and not resend:
                    wait = mail.silent_timeout      # not a byte yet: the first may take longer
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                conn.settimeout(min(wait, left))
                try:
                    reader.feed(conn.recv(65536))   # b"" when the client half-closed
                except socket.timeout:
                    if wait > left:                 # the deadline, not the quiet time, ran out
                        raise TimeoutError from None
                    break                           # quiet for long enough: take what came
        except P.RequestTooLarge as exc:    # reply, then read and drop the rest for a
            send_and_close(conn, f"ERROR: {exc}".encode(), drain=True)  # moment: no reset
            return None
        except TimeoutError:
            if reader.data and not resend:
                conn.sendall(REPLIES.TOO_SLOW.encode())
            return None
        if not reader.data:
            return None                             # connected, said nothing, left
        try:
            what, reply = mail.responder.respond(reader.data, self.client_address)
            reply = reply_text(reply)               # an email's reply: once it is on disk
        except Exception:                           # a bad request never takes the server down
            log.exception("%s:%d request failed", *self.client_address[:2])
            what, reply = "internal error", REPLIES.INTERNAL
        log.info("%s:%d %s -> %s", *self.client_address[:2], loggable(what),
                 loggable(reply.partition("\n")[0][:60]))   # loggable: no session id in a log
        conn.settimeout(SEND_TIMEOUT_S)
        if reply != REPLIES.KO or reader.closed or resend:
            conn.sendall(reply.encode("utf-8"))
            conn.shutdown(socket.SHUT_WR)           # "that was all"
            return None
        conn.sendall(reply.encode("utf-8"))         # KO: the connection stays open
        return reply


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True           # a thread stuck on a client never blocks exit
    allow_reuse_address = True      # a restarted server may take a port in TIME_WAIT
    request_queue_size = 512        # connects queued before accept(); socketserver's 5 drops a class


class SimpleMailServer:
    """The mail server with one thread per connection; started and stopped
    like :class:`~mailkit.server.MailServer` (same arguments, ``with``, port 0)."""

    def __init__(self, users: dict[str, str] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, db: str = ":memory:", store: MailStore | None = None,
                 responder=None, scrypt_n: int = SCRYPT_N, idle_timeout: float | None = None,
                 max_request_bytes: int = P.MAX_REQUEST_BYTES, limits: ClassLimits | None = None,
                 silent_timeout: float | None = None):
        self.host, self.port = host, port
        self.idle_timeout = P.RequestReader.IDLE_TIMEOUT_S if idle_timeout is None else idle_timeout
        # before the first byte (see MailServer)
        self.silent_timeout = self.idle_timeout if silent_timeout is None else silent_timeout
        self.max_request_bytes = max_request_bytes
        self.store = store or getattr(responder, "store", None) or MailStore(db, scrypt_n=scrypt_n)
        for name, password in (users or {}).items():
            self.store.add_user(name, password, replace=True)
        self.limits = limits if limits is not None else ClassLimits()   # guessing limits, per address
        self.responder = responder if responder is not None else MailResponder(self.store, limits=self.limits)
        self._tcp: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()     # open connections, for stop()
        self._lock = threading.Lock()               # guards _conns

    def track(self, conn: socket.socket, is_open: bool) -> None:
        with self._lock:
            (self._conns.add if is_open else self._conns.discard)(conn)

    @property
    def address(self) -> tuple[str, int]:
        if self._tcp is None:
            raise RuntimeError("SimpleMailServer is not running: call start() first")
        return self._tcp.server_address[:2]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "SimpleMailServer":
        """Bind and listen (so the port accepts at once), serve in a thread."""
        if self._tcp is not None:
            return self
        try:
            tcp = _TCPServer((self.host, self.port), _Connection)
        except OSError as exc:
            if exc.errno in (98, 48, 10048):        # EADDRINUSE on Linux, macOS, Windows
                raise PortInUseError(exc.errno, f"port {self.port} on {self.host} is already in use") from None
            raise
        tcp.mail = self
        self._thread = threading.Thread(target=tcp.serve_forever, args=(0.05,), daemon=True,
                                        name="SimpleMailServer")
        self._tcp = tcp
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, wait for their threads."""
        if self._tcp is None:
            return
        self._tcp.shutdown()                        # serve_forever() returns
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._tcp.server_close()                    # closes the port, joins the threads
        self._tcp = self._thread = None

    def close(self) -> None:
        """Stop, and close the store."""
        self.stop()
        self.store.close()

    def __enter__(self) -> "SimpleMailServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
