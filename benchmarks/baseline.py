"""The baseline: the least a server and client can do for one request per
connection, with no protocol and no storage.

The server accepts, reads the request until the client half-closes, answers
``OK: Email Sent`` and closes: one thread per connection (the textbook threaded server),
or one connection at a time with ``--iterative``.  Run it as a script; it
prints ``baseline listening on HOST:PORT`` when ready, like
``python -m mailkit serve``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading

REPLY = b"OK: Email Sent"


def _serve_one(conn: socket.socket) -> None:
    try:
        while conn.recv(65536):
            pass
        conn.sendall(REPLY)
    except OSError:
        pass
    finally:
        conn.close()


def serve(host: str = "127.0.0.1", port: int = 0, *, iterative: bool = False) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)          # the same backlog as mailkit's listener (Listener.BACKLOG)
    print("baseline listening on %s:%d" % sock.getsockname()[:2], flush=True)
    while True:
        conn, _ = sock.accept()
        if iterative:
            _serve_one(conn)
        else:
            threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()


def request(address, data: bytes, timeout: float = 10.0) -> bytes:
    """The baseline client: connect, send, half-close, read until closed."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--iterative", action="store_true", help="one connection at a time")
    args = parser.parse_args()
    try:
        serve(args.host, args.port, iterative=args.iterative)
    except KeyboardInterrupt:
        sys.exit(0)
