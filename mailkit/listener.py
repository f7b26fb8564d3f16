"""A TCP listener that serves in background threads: the part of the fast
mail server that has nothing to do with mail, shared with :class:`NoisyLink`.

Theory of operation.  Three parts, each with its own state and its own lock:

* :class:`EventLoop` -- ONE thread owns the listening socket and every
  connection whose request is still arriving.  It accepts, reads whatever is
  ready from any of them with a selector, and feeds each one's sans-IO
  :class:`~mailkit.protocol.RequestReader` until the request is complete (or
  too big, or too slow).  A silent or slow client therefore costs a selector
  entry, not a thread.  Other threads talk to it only through
  :meth:`EventLoop.call_soon` (a queue and a wake-up byte).
* :class:`WorkerPool` -- threads that run jobs (answer a request, serve a
  raw connection).  A thread whose job is done waits ``linger`` seconds for
  the next one before it ends: under load (one connection per request!)
  starting a thread per request cost more CPU than parsing and storing mail.
* :class:`Listener` -- binds, owns the set of open connections, and joins
  the two: the loop hands each complete request to :meth:`Listener.dispatch`,
  which by default runs :meth:`Listener.handle_request` in a worker.  A
  listener made with ``raw_connections=True`` (a student's ``serve_one(conn)``
  in the labs) instead hands each connection to :meth:`Listener.handle` in a
  worker as soon as it is accepted.

TLS (``tls=`` an :class:`ssl.SSLContext`, see :mod:`mailkit.tls`): the
loop accepts as always, but hands each new connection to a worker, which
does the TLS handshake (blocking, at most ``tls_handshake_timeout``
seconds) and then hands the encrypted connection back to the loop, which
reads its request as any other.  So a client that stalls in its handshake,
or speaks plain text to a TLS port, holds one worker thread for a few
seconds and is closed; it never holds the loop that serves everyone.

``start()`` creates the socket, the selector and the loop thread, and
returns once the loop runs (or raises why it cannot); ``stop()`` wakes the
loop, cuts every open connection and joins every thread within a second.  If
the loop thread dies, ``running`` turns False, the error is logged, and
``stop()`` raises it to the owner.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import selectors
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass

from . import protocol as P
from .limits import ConnectionSlots, prefix

__all__ = ["Listener", "EventLoop", "WorkerPool", "Received", "PortInUseError",
           "send_and_close", "format_peer", "HANDED_ON"]

log = logging.getLogger("mailkit.server")

_EADDRINUSE = (98, 48, 10048)  # Linux, macOS, Windows
_RESET = object()                # EventLoop.recv_now(): the peer reset the connection
_CLOSING = object()              # selector data of a refused connection being closed


class PortInUseError(OSError):
    """The port is taken: another server (perhaps from an earlier cell) is on it."""


@dataclass
class Received:
    """What arrived on one connection, as the event loop hands it on.

    *data* is the request (``b""`` if none came); *closed* says the client
    half-closed after it; *error* is :class:`~mailkit.protocol.RequestTooLarge`
    or ``TimeoutError`` when the request broke a limit instead; *again* says
    it is a further request on a connection already answered once (see
    :meth:`Listener.read_again`)."""

    data: bytes
    closed: bool = False
    error: Exception | None = None
    again: bool = False


# -- the worker pool ------------------------------------------------------------


class WorkerPool:
    """Threads that run ``fn(*args)`` jobs; an idle thread lingers for the next.

    ``submit`` hands a job to a lingering thread if one waits, else starts a
    thread (and raises if it cannot).  ``close`` ends every thread."""

    def __init__(self, *, linger: float = 1.0, name: str = "worker"):
        self.linger, self.name = linger, name
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        # Threads waiting on _jobs minus jobs already promised to them.
        self._idle = 0
        self._closed = False

    def submit(self, fn, *args) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1         # promised to a lingering thread
        if reuse:
            self._jobs.put((fn, args))
            return
        thread = threading.Thread(target=self._work, args=(fn, args), daemon=True, name=self.name)
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except BaseException:   # e.g. "can't start new thread": the caller says so
            with self._lock:
                self._threads.discard(thread)
            raise

    @property
    def threads(self) -> int:
        """Threads alive now (working or lingering)."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def close(self, timeout: float) -> None:
        """End every thread: lingering ones at once, busy ones after their
        job; wait up to *timeout* seconds for them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)        # wakes every lingering thread: "end"
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self, fn, args) -> None:
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
                self._threads.discard(threading.current_thread())

    def _next_job(self):
        """Linger for the next job; None means "end this thread"."""
        with self._lock:
            if self._closed:
                return None
            self._idle += 1
        try:
            return self._jobs.get(timeout=self.linger)
        except queue.Empty:
            with self._lock:
                if self._idle > 0:
                    self._idle -= 1
                    return None         # no job was promised to us: end
            # Every lingering thread was promised a job, so one is on its
            # way to us (submit puts it right after promising).
            return self._jobs.get()


# -- the event loop ---------------------------------------------------------------


class _Arriving:
    """A connection whose request is still arriving (owned by the loop thread)."""

    __slots__ = ("conn", "peer", "reader", "deadline", "wake_at", "armed_at", "again", "first_at")

    def __init__(self, conn, peer, reader, deadline: float, again: bool = False):
        self.conn, self.peer, self.reader = conn, peer, reader
        self.first_at = None        # when its first byte came (for the minimum byte rate)
        self.deadline = deadline
        self.wake_at = deadline     # when to decide, if nothing more comes
        self.armed_at = None        # due time of its live entry in the timer heap
        self.again = again


class EventLoop:
    """Accept, read, time out, hand over -- in one thread.

    Only the loop thread touches its state, so it needs no lock; other
    threads ask it for things with :meth:`call_soon`.  Each arriving request
    has ONE live entry in the timer heap at a time: more bytes that make it
    wait longer only move its ``wake_at`` later (the entry, when due, is
    pushed back), and bytes that make it wait LESS (a login's 50 ms after
    the 2 s idle wait) push an earlier entry; the old one is stale and is
    skipped when it comes due.  A finished request holds no bytes in the heap.
    """

    ACCEPT_PAUSE_S = 0.1    # out of file descriptors: stop accepting this long
    # A refused connection is closed only once its client has read the
    # refusal and closed too (or after CLOSING_S): closing it with the
    # client's request unread would send a reset, which discards our reply
    # at the client (RFC 1122, 4.2.2.13).  At most CLOSING_MAX wait so.
    CLOSING_S = 1.0
    CLOSING_MAX = 256

    def __init__(self, listener: "Listener", sock: socket.socket):
        self.listener, self.sock = listener, sock
        self.sel = selectors.DefaultSelector()
        try:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        except BaseException:
            self.sel.close()
            raise
        self._calls: collections.deque = collections.deque()   # from other threads
        self._calls_lock = threading.Lock()
        self._wake_pending = False      # a wake-up byte is on its way: no need for another
        self._closed = False            # run() has ended: call_soon() refuses
        self._stopping = False
        self.arriving: dict[socket.socket, _Arriving] = {}
        self._timers: list[tuple[float, int, _Arriving]] = []
        self._order = itertools.count()          # ties in the heap: first come first
        self._accept_paused_until: float | None = None
        self._closing: collections.deque = collections.deque()    # (close at, conn), oldest first
        self.sel.register(sock, selectors.EVENT_READ)
        self.sel.register(self._wake_r, selectors.EVENT_READ)

    # -- for other threads ------------------------------------------------

    def call_soon(self, fn, *args) -> bool:
        """Run ``fn(*args)`` in the loop thread (thread-safe); False if the
        loop has ended and will not run it (the caller then does it itself).

        Calls made while a wake-up is already on its way share it: the store's
        writer hands over the replies of a whole group commit with one."""
        with self._calls_lock:
            if self._closed:
                return False
            self._calls.append((fn, args))
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            self._wake()
        return True

    def stop(self) -> None:
        """Ask the loop to end (thread-safe); it closes what is still arriving."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:                 # buffer full (it is awake anyway) or closed
            pass

    def timers(self) -> int:
        """Entries in the timer heap (for tests: one per arriving request)."""
        return len(self._timers)

    # -- the loop ----------------------------------------------------------

    def run(self) -> None:
        sel, timers = self.sel, self._timers
        try:
            while not self._stopping:
                due = [t for t in (timers[0][0] if timers else None, self._accept_paused_until,
                                   self._closing[0][0] if self._closing else None)
                       if t is not None]
                events = sel.select(max(0.0, min(due) - time.monotonic()) if due else None)
                now = time.monotonic()
                for key, _ in events:
                    if key.fileobj is self._wake_r:
                        self._run_calls()
                    elif key.fileobj is self.sock:
                        self.accept(now)
                    elif key.data is _CLOSING:
                        self.drain(key.fileobj)
                    elif key.data.wake_at >= 0:
                        self.guarded(self.receive, key.data, now)
                while timers and timers[0][0] <= now:
                    when, _, a = heapq.heappop(timers)
                    if a.armed_at != when:
                        continue                # stale: an earlier entry replaced it
                    a.armed_at = None
                    if a.wake_at < 0:
                        continue                # done: this was its last entry
                    if a.wake_at > now:         # more came since: wait again
                        self.arm(a)
                    else:
                        self.guarded(self.time_up, a, now)
                while self._closing and self._closing[0][0] <= now:
                    self.finish_closing(self._closing.popleft()[1])
                if self._accept_paused_until is not None and now >= self._accept_paused_until:
                    self._accept_paused_until = None
                    sel.register(self.sock, selectors.EVENT_READ)
        finally:
            with self._calls_lock:
                self._closed = True     # call_soon() refuses from now on...
            try:
                self._run_calls()       # ...and what it accepted runs (a reply, say)
            except OSError:
                pass
            for conn in list(self.arriving):
                self.listener.forget(conn, shutdown=True)
            self.arriving.clear()
            while self._closing:
                self.finish_closing(self._closing.popleft()[1])
            self._timers.clear()
            self.close()

    def close(self) -> None:
        """Close the selector and the wake-up sockets (run() does, when it ends)."""
        with self._calls_lock:
            self._closed = True
        self.sel.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run_calls(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        # After the wake-up bytes are read, before the calls are: a call
        # queued from now on sends a new wake-up, and one queued before is
        # run below.
        with self._calls_lock:
            self._wake_pending = False
        while self._calls:
            fn, args = self._calls.popleft()
            self.guarded(fn, *args)

    def accept(self, now: float) -> None:
        """Accept every connection waiting (refusing past MAX_CONNECTIONS)."""
        listener = self.listener
        while True:
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: pause, then try again
                log.warning("cannot accept connections (%s): pausing for %.0f ms",
                            exc.strerror or exc, self.ACCEPT_PAUSE_S * 1000)
                self.sel.unregister(self.sock)
                self._accept_paused_until = now + self.ACCEPT_PAUSE_S
                return
            refusal, idle = listener.admit(conn, peer)
            for old in idle:            # slots run low: the longest idle make room
                self.drop_idle(old)
            if refusal is not None:
                listener.refused(peer, refusal.decode())
                self.refuse(conn, refusal, now)
                continue
            self.guarded(self.arrived, conn, peer, now)

    def tls_ready(self, conn: socket.socket, peer) -> None:
        """A TLS connection whose handshake a worker finished: read its request."""
        now = time.monotonic()
        self.read(conn, peer, now + self.listener.REQUEST_DEADLINE_S, now=now)

    def refuse(self, conn: socket.socket, reply: bytes, now: float) -> None:
        """Answer a connection we cannot serve with *reply* and close it
        without a reset: read what it sent, send, half-close, and close once
        the client has closed (or after CLOSING_S)."""
        try:
            conn.setblocking(False)
            try:
                while conn.recv(65536):
                    pass
            except BlockingIOError:
                pass
            conn.send(reply)                # short: fits the socket's buffer
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        if len(self._closing) >= self.CLOSING_MAX:
            conn.close()
            return
        self._closing.append((now + self.CLOSING_S, conn))
        self.sel.register(conn, selectors.EVENT_READ, _CLOSING)

    def drain(self, conn: socket.socket) -> None:
        """A refused connection is readable: drop what came; close at its end."""
        try:
            if conn.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self.finish_closing(conn)

    def finish_closing(self, conn: socket.socket) -> None:
        if conn.fileno() >= 0:
            try:
                self.sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            conn.close()

    def drop_idle(self, conn: socket.socket) -> None:
        """Close a connection that has been idle longest, to make room."""
        a = self.arriving.get(conn)
        if a is not None:
            log.info("%s closed while idle: connections are running short", format_peer(a.peer))
            self.done_reading(a)
        self.listener.forget(conn, shutdown=True)

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
            if isinstance(arg, socket.socket):
                self.listener.forget(arg, shutdown=True)

    def arrived(self, conn: socket.socket, peer, now: float) -> None:
        listener = self.listener
        if listener.tls is not None:        # the handshake in a worker: never in this thread
            listener.workers.submit(listener.serve_tls_handshake, conn, peer)
            return
        if listener.raw_connections:
            listener.slots.active(conn, busy=True)
            listener.workers.submit(listener.serve_raw, conn, peer)
            return
        self.read(conn, peer, now + listener.REQUEST_DEADLINE_S, now=now)

    def read(self, conn: socket.socket, peer, deadline: float, *, again: bool = False,
             now: float | None = None) -> None:
        """Read one request from *conn* (in the loop thread) and dispatch it."""
        now = time.monotonic() if now is None else now
        conn.setblocking(False)
        a = _Arriving(conn, peer, self.listener.new_reader(), deadline, again)
        self.receive(a, now)        # most requests are there already: no wait

    def receive(self, a: _Arriving, now: float) -> None:
        chunk = self.recv_now(a)
        if chunk is not _RESET:
            self.judge(a, chunk, now)

    def recv_now(self, a: _Arriving):
        """What came on *a*'s connection: bytes (``b""`` once the client has
        half-closed), None if nothing yet, or ``_RESET`` if the peer reset it
        (then the connection is forgotten)."""
        try:
            chunk = a.conn.recv(65536)
            # TLS: recv returns one record at most; what OpenSSL already
            # decrypted is not in the kernel's buffer, so select() would
            # not see it: take it now.
            while chunk and isinstance(a.conn, ssl.SSLSocket) and a.conn.pending():
                chunk += a.conn.recv(a.conn.pending())
            return chunk
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None                     # (TLS: a record not yet whole)
        except OSError:                     # reset by the peer (or a TLS error)
            self.done_reading(a)
            self.listener.forget(a.conn)
            return _RESET

    def judge(self, a: _Arriving, chunk: bytes | None, now: float) -> None:
        """Feed *chunk* (None: nothing new) to the reader, then complete the
        request or wait for more."""
        if chunk is not None:
            listener, slow = self.listener, False
            if a.first_at is None:
                if chunk:               # the first bytes: active (most requests come in one piece)
                    a.first_at = now
                    listener.slots.active(a.conn)
            elif chunk:
                got, took = len(a.reader) + len(chunk), now - a.first_at
                # Only bytes that keep up MIN_REQUEST_RATE count as activity:
                # a drip stays "idle", and is closed first when room runs short.
                if got >= listener.MIN_REQUEST_RATE * took:
                    listener.slots.active(a.conn)
                else:
                    slow = got < listener.MIN_REQUEST_RATE * (took - listener.SLOW_GRACE_S)
            try:
                a.reader.feed(chunk)
            except P.RequestTooLarge as exc:
                return self.complete(a, exc)
            if slow and a.reader.patience() > 0:
                return self.complete(a, TimeoutError("request arriving too slowly"))
        patience = a.reader.patience()
        if patience <= 0:
            return self.complete(a, None)
        if not len(a.reader) and not a.again:   # not a byte yet: the first may take longer
            patience = self.listener.silent_timeout
        a.wake_at = min(now + patience, a.deadline)
        # Arm a timer if none is live, or if the wait got SHORTER than the
        # live one (a login is quiet after 50 ms, not after the 2 s idle wait).
        if a.armed_at is None or a.wake_at < a.armed_at:
            self.arm(a)
        if a.conn not in self.arriving:
            self.arriving[a.conn] = a
            self.sel.register(a.conn, selectors.EVENT_READ, a)

    def arm(self, a: _Arriving) -> None:
        heapq.heappush(self._timers, (a.wake_at, next(self._order), a))
        a.armed_at = a.wake_at

    def time_up(self, a: _Arriving, now: float) -> None:
        # The loop runs its timers after the events of a select() round, so
        # bytes may have come since: read them first.  Closing a socket with
        # unread bytes in its receive buffer sends a reset, not our reply
        # (RFC 1122, 4.2.2.13), and they may be just what makes it complete.
        chunk = self.recv_now(a)
        if chunk is _RESET:
            return
        if chunk is not None:
            return self.judge(a, chunk, now)
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
        if not data and (error is None or a.again or isinstance(error, TimeoutError)):  # said nothing (more), or left
            self.listener.forget(a.conn)
            if not a.again:
                self.listener.closed_silent(a.peer)
            return
        self.listener.slots.active(a.conn, busy=True)      # being answered: never dropped as idle
        self.listener.dispatch(a.conn, a.peer, Received(data, reader.closed, error, a.again))


# -- the listener -------------------------------------------------------------------


class Listener:
    """Bind, accept, read each request in the event loop, serve it in a
    worker thread, stop cleanly.

    Subclasses override :meth:`handle_request` (must not raise), or, made
    with ``raw_connections=True``, :meth:`handle`.
    """

    MAX_CONNECTIONS = 512        # open at once; a class of 300 fits with room (see ``slots``)
    # Connections the kernel queues before accept(): a class connecting at the
    # same moment must fit, since a dropped SYN costs its client a 1 s
    # retransmit (measured: 200 at once with 128 gave a p99 of 1 s).
    BACKLOG = MAX_CONNECTIONS
    REQUEST_DEADLINE_S = 10.0    # a whole request, however slowly it trickles in
    # A request in progress must bring at least this many bytes a second,
    # on average since its first byte, once SLOW_GRACE_S have passed: a
    # client on the slowest link sends far more (a 2017 client sends all in
    # one go), and the grace covers a lost segment's retransmission (RTO 1 s,
    # doubling: RFC 6298).  A drip of a byte every 0.45 s held a slot for
    # the whole 10 s REQUEST_DEADLINE_S; now it is cut after about 3 s.
    MIN_REQUEST_RATE = 1024
    SLOW_GRACE_S = 3.0
    IDLE_TIMEOUT_S = P.RequestReader.IDLE_TIMEOUT_S  # between two pieces of a request
    SEND_TIMEOUT_S = 5.0         # a client that never reads its reply
    STOP_TIMEOUT_S = 0.9         # stop() must return within a second
    START_TIMEOUT_S = 5.0        # the loop thread must be running by then
    WORKER_LINGER_S = 1.0        # a finished thread waits this long for the next job
    # A TLS handshake (in a worker thread) must finish within this: a
    # loopback or LAN handshake takes milliseconds, a slow link a few
    # round trips; a client that stalls is closed after it.
    TLS_HANDSHAKE_TIMEOUT_S = 5.0
    BUSY_REPLY = b"ERROR: server busy, try again in a moment"
    PER_ADDRESS_REPLY = "ERROR: too many connections from your address ({} open); close some and try again"
    PER_PREFIX_REPLY = ("ERROR: server busy: too many connections from your network ({} open from {}); "
                        "try again in a moment")

    _running: "weakref.WeakSet[Listener]" = weakref.WeakSet()

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 idle_timeout: float | None = None, max_request_bytes: int = P.MAX_REQUEST_BYTES,
                 raw_connections: bool = False, slots: ConnectionSlots | None = None,
                 silent_timeout: float | None = None, tls: ssl.SSLContext | None = None,
                 tls_handshake_timeout: float | None = None):
        self.host, self.port = host, port
        # TLS: an ssl.SSLContext made for a server (mailkit.tls), or None: plain TCP.
        self.tls = tls
        self.tls_handshake_timeout = (self.TLS_HANDSHAKE_TIMEOUT_S if tls_handshake_timeout is None
                                      else tls_handshake_timeout)
        # Open connections per address and in all (see mailkit.limits); by
        # default MAX_CONNECTIONS in all and no limit per address.
        self.slots = slots if slots is not None else ConnectionSlots(
            total=self.MAX_CONNECTIONS, per_address=self.MAX_CONNECTIONS)
        self.idle_timeout = self.IDLE_TIMEOUT_S if idle_timeout is None else idle_timeout
        # How long a connection may stay silent before its first byte (the
        # idle timeout unless told): a test that answers incomplete requests
        # after a short idle timeout keeps a longer one here, so that a
        # client thread that a loaded machine runs late is not taken for
        # a silent one.
        self.silent_timeout = self.idle_timeout if silent_timeout is None else silent_timeout
        self.max_request_bytes = max_request_bytes
        self.raw_connections = raw_connections
        self.workers = WorkerPool(linger=self.WORKER_LINGER_S)
        self._sock: socket.socket | None = None
        self._loop: EventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._failure: BaseException | None = None   # what killed the loop thread
        self._conns: set[socket.socket] = set()       # every open connection
        self._conns_lock = threading.Lock()
        self._life_lock = threading.Lock()             # one start() or stop() at a time
        self._stop_requested = threading.Event()       # serve_forever() waits on it

    def new_reader(self) -> P.RequestReader:
        """The reader that decides when a request is complete (may be overridden)."""
        return P.RequestReader(idle_timeout=self.idle_timeout, max_bytes=self.max_request_bytes)

    def handle_request(self, conn: socket.socket, peer, received: Received) -> None:  # pragma: no cover
        """Answer one request in a worker thread (may be overridden; must not raise).
        The connection is closed afterwards, unless handed to :meth:`read_again`."""
        raise NotImplementedError

    def handle(self, conn: socket.socket, peer) -> None:  # pragma: no cover - abstract
        """With ``raw_connections=True``: serve one raw connection (must not raise)."""
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
        """True while the loop thread serves (False once stopped, or if it died)."""
        thread = self._loop_thread
        return self._sock is not None and thread is not None and thread.is_alive()

    def start(self):
        """Bind, listen and serve in a background thread; return self once
        the loop runs, or raise why it cannot.

        Safe to call twice, and while another thread calls ``stop()``: the
        two take turns."""
        with self._life_lock:
            if self._sock is not None and self._failure is not None:
                self._stop_locked()             # raises what killed the loop
            return self._start_locked()

    def _start_locked(self):
        if self._sock is not None:
            return self
        sock = self._bind()
        try:
            self._stop_requested.clear()
            self.workers = WorkerPool(linger=self.WORKER_LINGER_S, name=f"{type(self).__name__}-worker")
            self._loop = EventLoop(self, sock)          # the selector, made here: EMFILE raises here
            ready = threading.Event()
            self._loop_thread = threading.Thread(
                target=self._run_loop, args=(self._loop, ready), daemon=True,
                name=f"{type(self).__name__}-loop-{sock.getsockname()[1]}")
            self._loop_thread.start()
            if not ready.wait(self.START_TIMEOUT_S):
                raise RuntimeError(f"the event loop did not start within {self.START_TIMEOUT_S} s")
        except BaseException:
            if self._loop is not None:
                self._loop.stop()
                if self._loop_thread is not None and self._loop_thread.is_alive():
                    self._loop_thread.join(self.STOP_TIMEOUT_S)
                elif self._loop_thread is None or self._loop_thread.ident is None:
                    self._loop.close()          # the thread never ran to close it
            sock.close()
            self._loop = self._loop_thread = None
            raise
        self._sock = sock
        Listener._running.add(self)
        log.info("%s listening on %s:%d", type(self).__name__, *self.address)
        return self

    def _bind(self) -> socket.socket:
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
        return sock

    def _run_loop(self, loop: EventLoop, ready: threading.Event) -> None:
        ready.set()
        try:
            loop.run()
        except BaseException as exc:    # the owner hears of it in stop()
            self._failure = exc
            log.exception("%s: the event loop died; stop() raises this", type(self).__name__)
            self._stop_requested.set()  # serve_forever() returns and stops

    def stop(self) -> None:
        """Stop accepting, cut open connections, join every thread.

        Safe to call twice, and from two threads at once (``serve_forever``
        in one, ``stop`` from a timer in another): the second caller waits
        for the first, then finds nothing left to stop.  If the event loop
        died, this raises the error that killed it (once).  Don't call it
        from inside a request handler."""
        with self._life_lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._sock is None:
            return
        deadline = time.monotonic() + self.STOP_TIMEOUT_S
        self._stop_requested.set()
        self._loop.stop()
        self._loop_thread.join(max(0.0, deadline - time.monotonic()))  # it closes what is arriving
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.workers.close(max(0.0, deadline - time.monotonic()))
        self._sock.close()
        self._sock = self._loop = self._loop_thread = None
        Listener._running.discard(self)
        log.info("%s stopped", type(self).__name__)
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def close(self) -> None:
        self.stop()

    def stop_requested(self, timeout: float = 0.0) -> bool:
        """True once a stop was asked for; waits up to *timeout* seconds for
        one (a handler that sleeps uses it, so that stop() need not wait)."""
        return self._stop_requested.wait(timeout) if timeout > 0 else self._stop_requested.is_set()

    def request_stop(self) -> None:
        """Ask ``serve_forever()`` to stop and return (safe in a signal handler)."""
        self._stop_requested.set()

    def serve_forever(self) -> None:
        """Start (if needed) and block until stopped; Ctrl-C stops it."""
        self.start()
        try:
            while not self._stop_requested.wait(0.5):
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
        return self.workers.threads + bool(self._loop_thread and self._loop_thread.is_alive())

    def stats(self) -> dict:
        """A snapshot for tests and the curious: open connections, threads,
        and the loop's timer entries (one per arriving request)."""
        loop = self._loop
        with self._conns_lock:
            conns = len(self._conns)
        return {"connections": conns, "threads": self.threads,
                "timers": loop.timers() if loop is not None else 0}

    # -- connections ----------------------------------------------------------

    def admit(self, conn: socket.socket, peer) -> tuple[bytes | None, list]:
        """Count *conn* as open if ``slots`` admit it: ``(None, idle)``, or
        ``(the refusal to send, idle)``; *idle* lists open connections to
        close first to make room (the longest idle; see ConnectionSlots)."""
        address = peer[0] if isinstance(peer, (tuple, list)) else peer
        admitted, idle = self.slots.open(conn, address)
        if not admitted:
            if self.slots.count(address) >= self.slots.per_address:
                return self.PER_ADDRESS_REPLY.format(self.slots.per_address).encode(), idle
            if self.slots.count_prefix(address) >= self.slots.per_prefix:
                return self.PER_PREFIX_REPLY.format(self.slots.per_prefix, prefix(address)).encode(), idle
            return self.BUSY_REPLY, idle
        with self._conns_lock:
            self._conns.add(conn)
        return None, idle

    def forget(self, conn: socket.socket, *, shutdown: bool = False) -> None:
        """Close *conn* and stop counting it."""
        if not shutdown:
            close_notify(conn)
        if shutdown:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()
        with self._conns_lock:
            self._conns.discard(conn)
        self.slots.close(conn)

    def refused(self, peer, reply: str) -> None:
        """A connection was refused with *reply* (may be overridden: the
        mail server logs these once per address per minute)."""
        log.warning("%s refused: %s", format_peer(peer), reply)

    def closed_silent(self, peer) -> None:
        """A connection closed (or idle past the timeout) without sending a
        byte: nothing to answer (may be overridden, e.g. to log it)."""

    def reply_and_close(self, conn: socket.socket, data: bytes, *, drain: bool = False) -> None:
        """Send *data* as the whole reply and close (see :func:`send_and_close`)."""
        send_and_close(conn, data, drain=drain)
        self.forget(conn)

    def read_again(self, conn: socket.socket, peer, within: float) -> None:
        """Hand an answered connection back to the event loop for ONE more
        request, which must start within *within* seconds (thread-safe); it
        is dispatched with ``received.again`` set, and a connection that
        closes or stays silent is closed without a reply."""
        loop = self._loop
        if loop is None or not loop.call_soon(self._read_again, conn, peer, time.monotonic() + within):
            self.forget(conn)       # stopped (or stopping): no resend will be read

    def call_in_loop(self, fn, *args) -> None:
        """Run ``fn(*args)`` in the event-loop thread (thread-safe), or at once
        in this thread if the loop has stopped.  Calls from one thread in a
        row share one wake-up of the loop."""
        loop = self._loop
        if loop is None or not loop.call_soon(fn, *args):
            fn(*args)

    def _read_again(self, conn, peer, deadline: float) -> None:
        self.slots.active(conn)         # waiting for a resend: idle again, may make room
        self._loop.read(conn, peer, deadline, again=True)

    # -- worker threads -------------------------------------------------------

    def dispatch(self, conn: socket.socket, peer, received: Received) -> None:
        """Called in the loop thread with a complete request: hand it to a
        worker, which calls :meth:`handle_request` (may be overridden; must
        be quick and must not raise)."""
        self.workers.submit(self.serve_request, conn, peer, received)

    def serve_request(self, conn: socket.socket, peer, received: Received) -> None:
        """In a worker: :meth:`handle_request`, then close (unless it handed
        the connection to :meth:`read_again`)."""
        try:
            if self.handle_request(conn, peer, received) is HANDED_ON:
                return
        except Exception:  # a handler must not raise; if it does, log, never print
            log.exception("%s handler failed", format_peer(peer))
        self.forget(conn)

    def serve_tls_handshake(self, conn: socket.socket, peer) -> None:
        """In a worker: the TLS handshake of a new connection, then hand it
        back to the event loop (or, with ``raw_connections``, to
        :meth:`handle`).  A failed or stalled handshake (a plain-text client,
        an unknown certificate, silence) is logged and closed; no reply."""
        try:
            conn.setblocking(True)
            conn.settimeout(self.tls_handshake_timeout)
            tls = self.tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            log.info("%s TLS refused: %s", format_peer(peer), exc)
            self.forget(conn)
            return
        self.replace(conn, tls)         # the wrapped socket owns the descriptor now
        try:
            tls.do_handshake()
        except (OSError, ValueError) as exc:   # ssl.SSLError, TimeoutError, a reset
            log.info("%s TLS handshake failed: %s", format_peer(peer), exc)
            self.tls_failed(tls)
            return
        if self.raw_connections:
            self.slots.active(tls, busy=True)
            self.serve_raw(tls, peer)
            return
        self.slots.active(tls)
        loop = self._loop
        if loop is None or not loop.call_soon(loop.tls_ready, tls, peer):
            self.forget(tls, shutdown=True)     # stopped: nobody will read it

    def tls_failed(self, tls: ssl.SSLSocket) -> None:
        """Close a connection whose handshake failed without a reset: read
        what its client sent (briefly), then close.  Closing with unread
        bytes would send a reset (RFC 1122, 4.2.2.13)."""
        try:
            tls.shutdown(socket.SHUT_WR)        # (also drops the TLS layer: what is left is bytes)
            tls.settimeout(0.2)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and tls.recv(65536):
                pass
        except OSError:
            pass
        self.forget(tls, shutdown=True)

    def replace(self, old: socket.socket, new: socket.socket) -> None:
        """Count *new* where *old* was (a socket wrapped in TLS)."""
        with self._conns_lock:
            self._conns.discard(old)
            self._conns.add(new)
        self.slots.replace(old, new)

    def serve_raw(self, conn: socket.socket, peer) -> None:
        """In a worker, with ``raw_connections``: :meth:`handle`, then close."""
        try:
            conn.setblocking(True)
            self.handle(conn, peer)
        except Exception:  # a handler must not raise; if it does, log, never print
            log.exception("%s handler failed", format_peer(peer))
        finally:
            self.forget(conn)


# handle_request() returns this when it passed the connection on (to
# read_again, or to a callback that replies later) and will close it itself.
HANDED_ON = object()


def send_and_close(conn: socket.socket, data: bytes, *, drain: bool = False, close: bool = True) -> None:
    """Send *data*, close our side and the socket; with *drain*, first read
    and drop what the peer is still sending (briefly), so that it sees our
    reply rather than a connection reset.  With ``close=False`` only send
    (the connection stays open, e.g. for a resend after ``KO``)."""
    try:
        # Most replies fit the socket's buffer: try without waiting first.  A
        # socket with a timeout polls before every send, and each poll hands
        # the GIL to another thread and back.
        if conn.gettimeout() != 0.0:    # the event loop's are already (a syscall saved)
            conn.setblocking(False)
        try:
            sent = conn.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        if sent < len(data):    # the rest waits for the peer to read
            conn.settimeout(Listener.SEND_TIMEOUT_S)
            conn.sendall(memoryview(data)[sent:])
        if not close:
            return
        close_notify(conn)      # TLS: the reply ends here (nothing for plain TCP)
        if drain:           # (without it, close() below sends the FIN: no shutdown call)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(0.2)
            end = time.monotonic() + 1.0
            while time.monotonic() < end and conn.recv(65536):
                pass
    except OSError:
        pass
    finally:
        if close:
            conn.close()


def close_notify(conn: socket.socket) -> None:
    """A TLS connection about to be closed: send TLS's close_notify alert
    first, without waiting for the peer's, so that the client can tell the
    end of the reply from a connection cut by an attacker (a truncation,
    RFC 8446 6.1).  Nothing for a plain socket."""
    if isinstance(conn, ssl.SSLSocket) and conn.fileno() >= 0:
        try:
            conn.setblocking(False)
            conn.unwrap()
        except (OSError, ValueError):   # SSLWantReadError: sent, the peer's not read (as wanted)
            pass


def format_peer(peer) -> str:
    try:
        return "%s:%d" % tuple(peer[:2])
    except TypeError:
        return str(peer)
