"""A TCP listener that serves in background threads: the part of the mail
server that has nothing to do with mail, shared with :class:`NoisyLink`.

One thread accepts; each connection gets a thread of its own that calls
:meth:`Listener.handle`.  ``start()`` returns once the port accepts
connections; ``stop()`` wakes the accept thread through a socket pair, cuts
every open connection and joins every thread within a second.

A thread whose connection is done waits up to ``WORKER_LINGER_S`` for the
next one before it ends: under load (one connection per request!) starting
a thread for every request cost more CPU than parsing and storing the mail.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
import weakref

from . import protocol as P

log = logging.getLogger("mailkit.server")

_EADDRINUSE = (98, 48, 10048)  # Linux, macOS, Windows


class PortInUseError(OSError):
    """The port is taken: another server (perhaps from an earlier cell) is on it."""


class Listener:
    """Base class: bind, accept, one thread per connection, clean stop."""

    MAX_CONNECTIONS = 512        # one thread each; a class of 300 fits with room
    # Connections the kernel queues before accept(): a class connecting at the
    # same moment must fit, since a dropped SYN costs its client a 1 s
    # retransmit (measured: 200 at once with 128 gave a p99 of 1 s).
    BACKLOG = MAX_CONNECTIONS
    REQUEST_DEADLINE_S = 10.0    # a whole request, however slowly it trickles in
    IDLE_TIMEOUT_S = P.RequestReader.IDLE_TIMEOUT_S  # between two pieces of a request
    SEND_TIMEOUT_S = 5.0         # a client that never reads its reply
    STOP_TIMEOUT_S = 0.9         # stop() must return within a second
    WORKER_LINGER_S = 1.0        # a finished thread waits this long for the next connection
    BUSY_REPLY = b"ERROR: server busy, try again in a moment"

    _running: "weakref.WeakSet[Listener]" = weakref.WeakSet()

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 idle_timeout: float | None = None, max_request_bytes: int = P.MAX_REQUEST_BYTES):
        self.host, self.port = host, port
        self.idle_timeout = self.IDLE_TIMEOUT_S if idle_timeout is None else idle_timeout
        self.max_request_bytes = max_request_bytes
        self._sock: socket.socket | None = None
        self._wake_r = self._wake_w = None
        self._acceptor: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()
        # Connections handed to lingering threads.  _idle = threads waiting on
        # the queue minus connections promised to them (both under _lock).
        self._handoff: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self._stop_lock = threading.Lock()   # one stop() at a time
        self._stopping = threading.Event()

    def handle(self, conn: socket.socket, peer) -> None:  # pragma: no cover - abstract
        """Serve one connection (may be overridden; must not raise)."""
        raise NotImplementedError

    # -- life cycle ---------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` it listens on: the real port, if 0 was asked."""
        if self._sock is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() first")
        return self._sock.getsockname()[:2]

    @property
    def running(self) -> bool:
        return self._sock is not None

    def start(self):
        """Bind, listen and serve in a background thread; return self."""
        if self._sock is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR lets a restarted server take a port still in
            # TIME_WAIT; on Linux it does not let two servers share a port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.BACKLOG)
        except OSError as exc:
            sock.close()
            if exc.errno in _EADDRINUSE:
                raise PortInUseError(
                    exc.errno,
                    f"port {self.port} on {self.host} is already in use (is another "
                    "server still running? stop it, or use port=0 for a free port)",
                ) from None
            raise
        self._stopping.clear()
        self._handoff, self._idle = queue.SimpleQueue(), 0
        self._wake_r, self._wake_w = socket.socketpair()
        self._sock = sock
        self._acceptor = threading.Thread(
            target=self._accept_loop, daemon=True,
            name=f"{type(self).__name__}-accept-{self.address[1]}",
        )
        self._acceptor.start()
        Listener._running.add(self)
        log.info("%s listening on %s:%d", type(self).__name__, *self.address)
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, join every thread.

        Safe to call twice, and from two threads at once (``serve_forever``
        in one, ``stop`` from a timer in another): the second caller waits
        for the first, then finds nothing left to stop."""
        with self._stop_lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._sock is None:
            return
        deadline = time.monotonic() + self.STOP_TIMEOUT_S
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._acceptor is not None:
            self._acceptor.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            conns, workers = list(self._conns), list(self._workers)
        for _ in workers:
            self._handoff.put(None)     # wakes every lingering thread: "stop"
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()
        self._sock = self._acceptor = None
        Listener._running.discard(self)
        log.info("%s stopped", type(self).__name__)

    def close(self) -> None:
        self.stop()

    def request_stop(self) -> None:
        """Ask ``serve_forever()`` to stop and return (safe in a signal handler)."""
        self._stopping.set()

    def serve_forever(self) -> None:
        """Start (if needed) and block until stopped; Ctrl-C stops it."""
        self.start()
        try:
            while not self._stopping.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    @classmethod
    def stop_all(cls) -> int:
        """Stop every server and link this process started (after re-running cells)."""
        running = [s for s in list(Listener._running) if isinstance(s, cls)]
        for s in running:
            s.stop()
        return len(running)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def threads(self) -> int:
        """Threads alive now: the acceptor, one per open connection, and any
        worker lingering (up to ``WORKER_LINGER_S``) for the next connection."""
        with self._lock:
            workers = sum(w.is_alive() for w in self._workers)
        return workers + bool(self._acceptor and self._acceptor.is_alive())

    # -- threads ------------------------------------------------------------

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._sock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self._stopping.is_set():
                        return
                    try:
                        conn, peer = self._sock.accept()
                    except OSError:
                        continue
                    self._spawn(conn, peer)
        finally:
            sel.close()

    def _spawn(self, conn: socket.socket, peer) -> None:
        with self._lock:
            busy = len(self._conns) >= self.MAX_CONNECTIONS
            if not busy:
                self._conns.add(conn)
                reuse = self._idle > 0
                if reuse:
                    self._idle -= 1     # promised to a lingering thread
        if busy:
            log.warning("%s refused: %d connections open", format_peer(peer), self.MAX_CONNECTIONS)
            send_and_close(conn, self.BUSY_REPLY)
            return
        if reuse:
            self._handoff.put((conn, peer))
            return
        worker = threading.Thread(target=self._run_handler, args=(conn, peer), daemon=True)
        with self._lock:
            self._workers.add(worker)
        worker.start()

    def _run_handler(self, conn: socket.socket, peer) -> None:
        try:
            while True:
                self._serve_one(conn, peer)
                job = self._next_connection()
                if job is None:
                    return
                conn, peer = job
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _serve_one(self, conn: socket.socket, peer) -> None:
        try:
            self.handle(conn, peer)
        except Exception:  # a handler must not raise; if it does, log, never print
            log.exception("%s handler failed", format_peer(peer))
        finally:
            conn.close()
            with self._lock:
                self._conns.discard(conn)

    def _next_connection(self):
        """Linger for the next connection; None means "end this thread"."""
        with self._lock:
            if self._stopping.is_set():
                return None
            self._idle += 1
            handoff = self._handoff
        try:
            return handoff.get(timeout=self.WORKER_LINGER_S)
        except queue.Empty:
            with self._lock:
                if self._idle > 0 or handoff is not self._handoff:
                    self._idle -= handoff is self._handoff
                    return None         # no connection was promised to us: end
            # Every lingering thread was promised a connection, so one is
            # on its way to us (the acceptor puts it right after promising).
            return handoff.get()

    def read_request(self, conn: socket.socket) -> P.RequestReader:
        """Read one request; return the reader (``.data``, ``.closed``).

        Raises :class:`~mailkit.protocol.RequestTooLarge` past the size limit
        and ``TimeoutError`` when the whole request takes longer than
        ``REQUEST_DEADLINE_S``.  Returns with no data if the peer went away.
        """
        reader = P.RequestReader(idle_timeout=self.idle_timeout, max_bytes=self.max_request_bytes)
        deadline = time.monotonic() + self.REQUEST_DEADLINE_S
        while (wait := reader.patience()) > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("request took too long to arrive")
            try:
                chunk = _recv_ready(conn)
                if chunk is None:       # nothing there yet: wait for it
                    conn.settimeout(min(wait, remaining))
                    chunk = conn.recv(65536)
            except TimeoutError:
                if remaining < wait:    # the deadline ran out, not the patience
                    raise TimeoutError("request took too long to arrive") from None
                break                   # quiet for long enough: take what came
            except OSError:             # reset by the peer, or cut by stop()
                return P.RequestReader()
            if self._stopping.is_set():
                return P.RequestReader()
            reader.feed(chunk)
        return reader


# Most requests have arrived by the time their thread reads them, and most
# replies fit the socket's buffer: try without waiting first.  A socket with a
# timeout polls before every recv and send, and each poll hands the GIL to
# another thread and back (measured: 7-10% less server CPU per mail under load).


def _recv_ready(conn: socket.socket) -> bytes | None:
    """The bytes already there (b"" if the peer closed), or None if none yet."""
    conn.setblocking(False)
    try:
        return conn.recv(65536)
    except BlockingIOError:
        return None


def send_and_close(conn: socket.socket, data: bytes, *, drain: bool = False) -> None:
    """Send *data*, close our side and the socket; with *drain*, first read
    and drop what the peer is still sending (briefly), so that it sees our
    reply rather than a connection reset."""
    try:
        conn.setblocking(False)
        try:
            sent = conn.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):    # the rest waits for the peer to read
            conn.settimeout(Listener.SEND_TIMEOUT_S)
            conn.sendall(memoryview(data)[sent:])
        conn.shutdown(socket.SHUT_WR)
        if drain:
            conn.settimeout(0.2)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and conn.recv(65536):
                pass
    except OSError:
        pass
    finally:
        conn.close()


def format_peer(peer) -> str:
    try:
        return "%s:%d" % tuple(peer[:2])
    except TypeError:
        return str(peer)
