"""Two socket options a server meets (notebook 01): SO_REUSEADDR and SO_REUSEPORT.

:func:`time_wait_demo` makes the "address in use" that students meet when
they restart a server: a connection the *server* closed first sits in
TIME_WAIT on the server's port (RFC 9293 §3.6: the side that closes first
waits 2 x MSL, so that late segments of the old connection die out), and a
new listening socket cannot bind that port, unless it sets SO_REUSEADDR.
:func:`reuseport_demo` shows two listening sockets sharing one port with
SO_REUSEPORT (Linux, BSD, macOS), which the kernel load-balances.
"""

from __future__ import annotations

import errno
import socket

__all__ = ["time_wait_demo", "reuseport_demo"]


class _Lines(list):
    def __repr__(self) -> str:
        return "\n".join(self)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


def _try_listen(port: int, reuseaddr: bool) -> str:
    sock = socket.socket()
    try:
        if reuseaddr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
        return "bound and listening"
    except OSError as exc:
        return f"{type(exc).__name__}: [Errno {errno.errorcode.get(exc.errno, exc.errno)}] {exc.strerror}"
    finally:
        sock.close()


def time_wait_demo() -> _Lines:
    """A server closes a connection first, then stops; a new server tries
    its port without and with SO_REUSEADDR."""
    listener = socket.socket()
    # On Linux a port in TIME_WAIT is shared only if the old socket set it too.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn, _ = listener.accept()
    conn.close()                     # the SERVER closes first: its side goes to TIME_WAIT
    client.recv(1)                   # b'': the client saw the FIN ...
    client.close()                   # ... and answers with its own
    listener.close()                 # the server program stops
    lines = _Lines([
        "a server (with SO_REUSEADDR) accepted a connection, closed it first, and stopped",
        f"a new server, plain bind():         {_try_listen(port, reuseaddr=False)}",
        f"a new server, SO_REUSEADDR, bind(): {_try_listen(port, reuseaddr=True)}",
    ])
    return lines


def reuseport_demo() -> _Lines:
    """Two sockets that both set SO_REUSEPORT listen on one port."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return _Lines(["this system has no SO_REUSEPORT"])
    first, second = socket.socket(), socket.socket()
    try:
        for sock in (first, second):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = first.getsockname()[1]
        second.bind(("127.0.0.1", port))
        second.listen()
        same = first.getsockname() == second.getsockname()
        return _Lines([f"two listening sockets with SO_REUSEPORT on one port: {same}"])
    finally:
        first.close()
        second.close()
