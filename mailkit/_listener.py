"""A TCP listener that serves in background threads: the part of the mail
server that has nothing to do with mail, shared with :class:`NoisyLink`.

Theory of operation.  ONE event-loop thread owns the listening socket and
every connection whose request is still arriving: it accepts, reads what is
ready from any of them with a selector, and feeds each one's
:class:`~mailkit.protocol.RequestReader` until the request is complete (or
too big, or too slow).  Only then does a worker thread get the connection,
with the request, and call :meth:`Listener.handle_request`; it sends the
reply and closes.  A silent or slow client therefore costs a selector entry,
not a thread, and a worker never waits for a client to finish sending.

A subclass that wants the raw socket (a student's ``serve_one(conn)`` in the
labs) sets ``READS_REQUESTS = False`` and overrides :meth:`Listener.handle`
instead: the worker gets the connection as soon as it is accepted.

A worker whose job is done waits up to ``WORKER_LINGER_S`` for the next one
before it ends: under load (one connection per request!) starting a thread
for every request cost more CPU than parsing and storing the mail.
``start()`` returns once the port accepts connections; ``stop()`` wakes the
loop through a socket pair, cuts every open connection and joins every
thread within a second.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import selectors
import socket
import threading
import time
import weakref
from dataclasses import dataclass

from . import protocol as P

log = logging.getLogger("mailkit.server")

_EADDRINUSE = (98, 48, 10048)  # Linux, macOS, Windows


class PortInUseError(OSError):
    """The port is taken: another server (perhaps from an earlier cell) is on it."""


@dataclass
class Received:
    """What arrived on one connection, as the event loop hands it to a worker.

    *data* is the request (``b""`` if none came); *closed* says the client
    half-closed after it; *error* is :class:`~mailkit.protocol.RequestTooLarge`
    or ``TimeoutError`` when the request broke a limit instead."""

    data: bytes
    closed: bool = False
    error: Exception | None = None


class _Arriving:
    """A connection whose request is still arriving (owned by the loop thread)."""

    __slots__ = ("conn", "peer", "reader", "deadline", "wake_at", "timed")

    def __init__(self, conn, peer, reader, deadline: float):
        self.conn, self.peer, self.reader = conn, peer, reader
        self.deadline = deadline
        self.wake_at = deadline     # when to decide, if nothing more comes
        self.timed = False          # has an entry in the loop's timer heap


class _EventLoop:
    """The loop thread's state and steps: accept, read, time out, hand over.

    Only the loop thread touches it, so it needs no lock.  Each arriving
    request has at most ONE entry in the timer heap: more bytes only move
    its ``wake_at`` later, and an entry that comes due early is pushed back
    to the new time (so a request sent in 1,000 pieces costs one entry, and
    a finished one is dropped from the heap at its next due time, holding
    nothing but a few fields)."""

    ACCEPT_PAUSE_S = 0.1    # out of file descriptors: stop accepting this long

    def __init__(self, listener: "Listener"):
        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.arriving: dict[socket.socket, _Arriving] = {}
        self.timers: list[tuple[float, int, _Arriving]] = []
        self.order = itertools.count()          # ties in the heap: first come first
        self.accept_paused_until: float | None = None

    def run(self, sock: socket.socket, wake: socket.socket, stopping: threading.Event) -> None:
        sel, timers = self.sel, self.timers
        sel.register(sock, selectors.EVENT_READ)
        sel.register(wake, selectors.EVENT_READ)
        try:
            while not stopping.is_set():
                due = [t for t in (timers[0][0] if timers else None, self.accept_paused_until)
                       if t is not None]
                events = sel.select(max(0.0, min(due) - time.monotonic()) if due else None)
                now = time.monotonic()
                for key, _ in events:
                    if key.fileobj is wake:
                        return
                    if key.fileobj is sock:
                        self.accept(sock, now)
                    elif key.data.wake_at >= 0:
                        self.guarded(self.receive, key.data, now)
                while timers and timers[0][0] <= now:
                    _, _, a = heapq.heappop(timers)
                    a.timed = False
                    if a.wake_at < 0:
                        continue                # done: this was its last entry
                    if a.wake_at > now:         # more came since: wait again
                        self.arm(a)
                    else:
                        self.guarded(self.time_up, a)
                if self.accept_paused_until is not None and now >= self.accept_paused_until:
                    self.accept_paused_until = None
                    sel.register(sock, selectors.EVENT_READ)
        finally:
            for conn in list(self.arriving):
                self.listener._forget(conn, shutdown=True)
            sel.close()

    def accept(self, sock: socket.socket, now: float) -> None:
        """Accept every connection waiting (refusing past MAX_CONNECTIONS)."""
        listener = self.listener
        while True:
            try:
                conn, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: pause, then try again
                log.warning("cannot accept connections (%s): pausing for %.0f ms",
                            exc.strerror or exc, self.ACCEPT_PAUSE_S * 1000)
                self.sel.unregister(sock)
                self.accept_paused_until = now + self.ACCEPT_PAUSE_S
                return
            with listener._lock:
                busy = len(listener._conns) >= listener.MAX_CONNECTIONS
                if not busy:
                    listener._conns.add(conn)
            if busy:
                log.warning("%s refused: %d connections open", format_peer(peer), listener.MAX_CONNECTIONS)
                send_and_close(conn, listener.BUSY_REPLY)
                continue
            self.guarded(self.arrived, conn, peer, now)

    def guarded(self, step, arg, *args) -> None:
        """Run one step for one connection; if it fails, drop that connection
        (and log why), never the loop that serves everyone."""
        try:
            step(arg, *args)
        except Exception:
            log.exception("dropped a connection: the server failed to read it")
            if isinstance(arg, _Arriving):
                self.done_reading(arg)
                arg = arg.conn
            self.listener._forget(arg, shutdown=True)

    def arrived(self, conn: socket.socket, peer, now: float) -> None:
        listener = self.listener
        if not listener.READS_REQUESTS:
            listener.run_in_worker(listener._serve, conn, peer)
            return
        conn.setblocking(False)
        a = _Arriving(conn, peer, listener.new_reader(), now + listener.REQUEST_DEADLINE_S)
        self.receive(a, now)        # most requests are there already: no wait

    def receive(self, a: _Arriving, now: float) -> None:
        try:
            chunk = a.conn.recv(65536)
        except BlockingIOError:
            chunk = None
        except OSError:                     # reset by the peer
            self.done_reading(a)
            self.listener._forget(a.conn)
            return
        if chunk is not None:
            try:
                a.reader.feed(chunk)
            except P.RequestTooLarge as exc:
                return self.complete(a, exc)
        patience = a.reader.patience()
        if patience <= 0:
            return self.complete(a, None)
        a.wake_at = min(now + patience, a.deadline)
        if not a.timed:
            self.arm(a)
        if a.conn not in self.arriving:
            self.arriving[a.conn] = a
            self.sel.register(a.conn, selectors.EVENT_READ, a)

    def arm(self, a: _Arriving) -> None:
        heapq.heappush(self.timers, (a.wake_at, next(self.order), a))
        a.timed = True

    def time_up(self, a: _Arriving) -> None:
        if a.wake_at >= a.deadline and a.reader.patience() > 0:
            self.complete(a, TimeoutError("request took too long to arrive"))
        else:
            self.complete(a, None)          # quiet for long enough: take what came

    def done_reading(self, a: _Arriving) -> None:
        if self.arriving.pop(a.conn, None) is not None:
            self.sel.unregister(a.conn)
        a.wake_at = -1.0                    # its heap entry, if any, is dropped when due

    def complete(self, a: _Arriving, error: Exception | None) -> None:
        reader, a.reader = a.reader, None   # a heap entry must not keep the bytes alive
        self.done_reading(a)
        data = reader.data
        if not data and error is None:      # connected, said nothing, left
            self.listener._forget(a.conn)
            self.listener.closed_silent(a.peer)
            return
        self.listener.dispatch(a.conn, a.peer, Received(data, reader.closed, error))


class Listener:
    """Base class: bind, accept, read each request in one event-loop thread,
    serve it in a worker thread, stop cleanly.

    Subclasses override :meth:`handle_request` (may be overridden; must not
    raise), or set ``READS_REQUESTS = False`` and override :meth:`handle`.
    """

    READS_REQUESTS = True        # read the request in the loop, then hand it over
    MAX_CONNECTIONS = 512        # open at once; a class of 300 fits with room
    # Connections the kernel queues before accept(): a class connecting at the
    # same moment must fit, since a dropped SYN costs its client a 1 s
    # retransmit (measured: 200 at once with 128 gave a p99 of 1 s).
    BACKLOG = MAX_CONNECTIONS
    REQUEST_DEADLINE_S = 10.0    # a whole request, however slowly it trickles in
    IDLE_TIMEOUT_S = P.RequestReader.IDLE_TIMEOUT_S  # between two pieces of a request
    SEND_TIMEOUT_S = 5.0         # a client that never reads its reply
    STOP_TIMEOUT_S = 0.9         # stop() must return within a second
    WORKER_LINGER_S = 1.0        # a finished thread waits this long for the next job
    BUSY_REPLY = b"ERROR: server busy, try again in a moment"

    _running: "weakref.WeakSet[Listener]" = weakref.WeakSet()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A subclass written for raw connections (it overrides handle() and
        # not handle_request()) gets them, even if it forgot READS_REQUESTS.
        if "handle" in vars(cls) and "handle_request" not in vars(cls) and "READS_REQUESTS" not in vars(cls):
            cls.READS_REQUESTS = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 idle_timeout: float | None = None, max_request_bytes: int = P.MAX_REQUEST_BYTES):
        self.host, self.port = host, port
        self.idle_timeout = self.IDLE_TIMEOUT_S if idle_timeout is None else idle_timeout
        self.max_request_bytes = max_request_bytes
        self._sock: socket.socket | None = None
        self._wake_r = self._wake_w = None
        self._loop_thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()   # every open connection
        # Jobs handed to lingering workers.  _idle = workers waiting on the
        # queue minus jobs promised to them (both under _lock).
        self._handoff: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()
        self._life_lock = threading.Lock()   # one start() or stop() at a time
        self._stopping = threading.Event()

    def new_reader(self) -> P.RequestReader:
        """The reader that decides when a request is complete (may be overridden)."""
        return P.RequestReader(idle_timeout=self.idle_timeout, max_bytes=self.max_request_bytes)

    def handle_request(self, conn: socket.socket, peer, received: Received) -> None:  # pragma: no cover
        """Answer one request in a worker thread (may be overridden; must not raise).
        The connection is closed afterwards."""
        raise NotImplementedError

    def handle(self, conn: socket.socket, peer) -> None:  # pragma: no cover - abstract
        """With ``READS_REQUESTS = False``: serve one raw connection (must not raise)."""
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
        """Bind, listen and serve in a background thread; return self.

        Safe to call twice, and while another thread calls ``stop()``: the
        two take turns."""
        with self._life_lock:
            return self._start_locked()

    def _start_locked(self):
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
            sock.setblocking(False)
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
        self._loop_thread = threading.Thread(
            target=self._loop, args=(sock, self._wake_r), daemon=True,
            name=f"{type(self).__name__}-loop-{self.address[1]}",
        )
        self._loop_thread.start()
        Listener._running.add(self)
        log.info("%s listening on %s:%d", type(self).__name__, *self.address)
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, join every thread.

        Safe to call twice, and from two threads at once (``serve_forever``
        in one, ``stop`` from a timer in another): the second caller waits
        for the first, then finds nothing left to stop.  Don't call it from
        inside a request handler."""
        with self._life_lock:
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
        if self._loop_thread is not None:   # it closes the connections still arriving
            self._loop_thread.join(max(0.0, deadline - time.monotonic()))
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
        self._sock = self._loop_thread = None
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
        """Threads alive now: the event loop, one per request being answered,
        and any worker lingering (up to ``WORKER_LINGER_S``) for the next one."""
        with self._lock:
            workers = sum(w.is_alive() for w in self._workers)
        return workers + bool(self._loop_thread and self._loop_thread.is_alive())

    # -- the event loop (see _EventLoop) -------------------------------------

    def _loop(self, sock: socket.socket, wake: socket.socket) -> None:
        self._event_loop = _EventLoop(self)     # kept for tests to look into
        self._event_loop.run(sock, wake, self._stopping)

    def closed_silent(self, peer) -> None:
        """A connection closed (or idle past the timeout) without sending a
        byte: nothing to answer (may be overridden, e.g. to log it)."""

    def _forget(self, conn: socket.socket, *, shutdown: bool = False) -> None:
        if shutdown:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()
        with self._lock:
            self._conns.discard(conn)

    # -- worker threads -----------------------------------------------------

    def dispatch(self, conn: socket.socket, peer, received: Received) -> None:
        """Called in the loop thread with a complete request: hand it to a
        worker, which calls :meth:`handle_request` (may be overridden, e.g.
        to answer in batches; must be quick and must not raise)."""
        self.run_in_worker(self._serve, conn, peer, received)

    def run_in_worker(self, fn, *args) -> None:
        """Call ``fn(*args)`` in a worker thread (a lingering one if any waits)."""
        job = (fn, args)
        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1         # promised to a lingering thread
        if reuse:
            self._handoff.put(job)
            return
        worker = threading.Thread(target=self._run_worker, args=job, daemon=True)
        with self._lock:
            self._workers.add(worker)
        try:
            worker.start()
        except BaseException:   # e.g. "can't start new thread": the caller says so
            with self._lock:
                self._workers.discard(worker)
            raise

    def _run_worker(self, fn, args) -> None:
        try:
            while True:
                try:
                    fn(*args)
                except Exception:  # a job must not raise; if it does, log, never print
                    log.exception("%s failed", getattr(fn, "__qualname__", fn))
                job = self._next_job()
                if job is None:
                    return
                fn, args = job
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def _serve(self, conn: socket.socket, peer, received: Received | None = None) -> None:
        """In a worker: handle_request() with what arrived, or handle() with
        the raw connection if the loop read nothing (READS_REQUESTS off)."""
        try:
            if received is None:
                conn.setblocking(True)
                self.handle(conn, peer)
            else:
                self.handle_request(conn, peer, received)
        except Exception:  # a handler must not raise; if it does, log, never print
            log.exception("%s handler failed", format_peer(peer))
        finally:
            self._forget(conn)

    def reply_and_close(self, conn: socket.socket, data: bytes, *, drain: bool = False) -> None:
        """Send *data* as the whole reply and close (see :func:`send_and_close`)."""
        send_and_close(conn, data, drain=drain)
        self._forget(conn)

    def _next_job(self):
        """Linger for the next job; None means "end this thread"."""
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
                    return None         # no job was promised to us: end
            # Every lingering thread was promised a job, so one is on its
            # way to us (the loop puts it right after promising).
            return handoff.get()


def send_and_close(conn: socket.socket, data: bytes, *, drain: bool = False) -> None:
    """Send *data*, close our side and the socket; with *drain*, first read
    and drop what the peer is still sending (briefly), so that it sees our
    reply rather than a connection reset."""
    try:
        # Most replies fit the socket's buffer: try without waiting first.  A
        # socket with a timeout polls before every send, and each poll hands
        # the GIL to another thread and back.
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
