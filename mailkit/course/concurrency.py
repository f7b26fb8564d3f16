"""Concurrency, run · break · fix · check (notebook 01).

Three tiny servers with the same job (read a request until the client
half-closes, answer ``OK:`` and the request, close), written three ways:

* :class:`OneAtATimeServer` - ``accept()``, serve that connection to the
  end, then ``accept()`` the next: the shape of a first server, and of the
  2017 server.  One client that connects and sends nothing stalls it;
* the same server with a *dispatch* that starts a thread per connection
  (:func:`thread_per_connection`): the silent client holds up one thread;
* :class:`SelectorServer` - one thread, :mod:`selectors` (epoll on Linux):
  it reads from whichever socket has bytes, so nobody waits for the silent one.

:func:`stall_test` measures a server: one silent client connects first,
then *clients* others send a request each; it counts how many are answered
while the silent one stays, and how many once it has gone.  The answer is a
count, not a time: it is the same on every run.

A teaching device: mailkit's :class:`~mailkit.server.MailServer` (and the
short :mod:`mailkit.simple_server`) are the real servers.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass

__all__ = ["OneAtATimeServer", "SelectorServer", "thread_per_connection", "StallResult",
           "stall_test"]


def _answer(request: bytes) -> bytes:
    return b"OK:" + request


class OneAtATimeServer:
    """Accept a connection, serve it to the end, then accept the next.

    *dispatch(conn)* decides what happens to each accepted connection; the
    default serves it right here, in the accepting thread (one at a time).
    A dispatch that raises is counted in ``.errors`` and its connection closed.
    """

    def __init__(self, dispatch=None):
        self.dispatch = dispatch or self.handle
        self.served = 0
        self.errors: list[str] = []
        self.accepted = threading.Semaphore(0)     # released once per accept()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=32)
        self.address = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name="one-at-a-time server")
        self._stopping = False

    def start(self):
        self._thread.start()
        return self

    def handle(self, conn: socket.socket) -> None:
        """Serve one connection: read until the client half-closes, answer."""
        with conn:
            chunks = []
            while chunk := conn.recv(65536):      # a silent client: waits here
                chunks.append(chunk)
            try:
                conn.sendall(_answer(b"".join(chunks)))
            except OSError:
                return
            with self._lock:        # counted before close(): a client that saw its reply end
                self.served += 1    # (b'') finds it counted

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.release()
            if self._stopping:
                conn.close()
                return
            try:
                self.dispatch(conn)
            except Exception as exc:          # a student's dispatch: report, keep serving
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()

    def stop(self) -> None:
        self._stopping = True
        try:                                  # wake accept(): connect once
            socket.create_connection(self.address, timeout=1).close()
        except OSError:
            pass
        self._listener.close()
        self._thread.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def thread_per_connection(handle):
    """A dispatch that serves each connection in a thread of its own."""
    def dispatch(conn):
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
    return dispatch


class SelectorServer:
    """One thread serves every connection: a :class:`selectors.DefaultSelector`
    (epoll on Linux, kqueue on macOS) says which sockets have bytes to read,
    and the loop reads only from those, so a silent client costs nothing."""

    def __init__(self):
        self.served = 0
        self.accepted = threading.Semaphore(0)     # released once per accept()
        self.selector = selectors.DefaultSelector()
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=32)
        self._listener.setblocking(False)
        self.address = self._listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self.selector.register(self._listener, selectors.EVENT_READ, "accept")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "stop")
        self._thread = threading.Thread(target=self._loop, daemon=True, name="selector server")

    def start(self):
        self._thread.start()
        return self

    def _loop(self) -> None:
        buffers: dict[socket.socket, list[bytes]] = {}
        while True:
            for key, _ in self.selector.select():
                if key.data == "stop":
                    for conn in buffers:
                        conn.close()
                    return
                if key.data == "accept":
                    try:
                        conn, _ = self._listener.accept()
                    except BlockingIOError:
                        continue
                    self.accepted.release()
                    conn.setblocking(False)
                    buffers[conn] = []
                    self.selector.register(conn, selectors.EVENT_READ, "read")
                    continue
                conn = key.fileobj
                try:
                    chunk = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    chunk = None
                if chunk:
                    buffers[conn].append(chunk)
                    continue
                self.selector.unregister(conn)         # b'' (half-close) or an error
                request = b"".join(buffers.pop(conn))
                if chunk is not None:
                    try:
                        conn.setblocking(True)
                        conn.sendall(_answer(request))  # small replies: no need to select for writing
                        self.served += 1
                    except OSError:
                        pass
                conn.close()

    def stop(self) -> None:
        self._wake_w.send(b"x")
        self._thread.join(2)
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()
        self.selector.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


@dataclass
class StallResult:
    """What :func:`stall_test` saw."""

    name: str
    clients: int
    while_silent: int          # answered while the silent client stayed connected
    after: int                 # answered in all, once it had gone

    @property
    def text(self) -> str:
        return (f"{self.name}: one client connected and sent nothing; of {self.clients} other "
                f"clients, {self.while_silent} were answered while it stayed, "
                f"{self.after} once it had gone")

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)


def _collect(socks: dict, replies: dict, until: float) -> None:
    """Read replies from *socks* (sock -> index) until each has closed or *until*."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    try:
        while socks and time.monotonic() < until:
            for key, _ in sel.select(timeout=max(0.0, until - time.monotonic())):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except OSError:
                    chunk = b""
                if chunk:
                    replies[socks[s]] += chunk
                else:
                    sel.unregister(s)
                    del socks[s]
    finally:
        sel.close()


def stall_test(server, *, clients: int = 3, patience: float = 1.5, name: str | None = None) -> StallResult:
    """Connect one silent client to *server* (anything with ``.address`` and
    an ``.accepted`` semaphore released once per ``accept()``), then
    *clients* clients that each send ``request i`` and half-close.  Count the
    replies that arrive while the silent client stays, then close the silent
    client and count again.  Counts, not times: a server either answers or
    it does not.

    A server that has not accepted the other clients within *patience*
    seconds is stuck (a one-at-a-time server never accepts them while the
    silent client stays); one that has accepted them gets 10 s to answer,
    so that a slow machine does not pass for a stalled server."""
    silent = socket.create_connection(server.address, timeout=5)
    accepted = server.accepted
    accepted.acquire(timeout=5)         # the silent one is the first accepted
    socks, expected = {}, {}
    replies = {i: b"" for i in range(clients)}
    for i in range(clients):
        s = socket.create_connection(server.address, timeout=5)
        try:
            s.sendall(b"request %d" % i)
            s.shutdown(socket.SHUT_WR)
        except OSError:                 # the server closed it already
            pass
        socks[s], expected[i] = i, _answer(b"request %d" % i)
    everyone = list(socks)
    deadline, taken = time.monotonic() + patience, 0
    while taken < clients and accepted.acquire(timeout=max(0.0, deadline - time.monotonic())):
        taken += 1
    try:
        _collect(socks, replies, time.monotonic() + (10 if taken == clients else 0.05))
        while_silent = sum(replies[i] == expected[i] for i in replies)
        silent.close()
        _collect(socks, replies, time.monotonic() + 5)
        after = sum(replies[i] == expected[i] for i in replies)
    finally:
        silent.close()
        for s in everyone:
            s.close()
    return StallResult(name or type(server).__name__, clients, while_silent, after)
