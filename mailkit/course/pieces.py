"""A byte stream in pieces (notebook 03): what ``recv()`` really returns.

:func:`stream_steps` sends in steps and reads between them, so that each
``recv()`` sees a known amount of arrived data (it waits, with
``MSG_PEEK``, until that much has arrived): two ``send()``\\ s come out of
ONE ``recv()``, and a big send comes out of several.  :func:`live_arrival`
reads while the sender is still sending: the sizes of its pieces change
from run to run, so it prints only what holds on every run.
"""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field

from .. import protocol as P
from ..text import Shown

__all__ = ["Steps", "stream_steps", "LiveArrival", "live_arrival"]




def _pair():
    """A connected loopback TCP pair (sender, receiver), Nagle off."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname(), timeout=5)
        receiver, _ = listener.accept()
    sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    receiver.settimeout(5)
    return sender, receiver


def _wait_until_buffered(sock: socket.socket, n: int, limit: int = 2000) -> None:
    """Return once at least *n* bytes wait in *sock* (or *limit* polls passed)."""
    for _ in range(limit):
        select.select([sock], [], [], 0.01)
        if len(sock.recv(n, socket.MSG_PEEK)) >= n:
            return


@dataclass(repr=False)
class Steps(Shown):
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def stream_steps(big: int = 100_000, recv_size: int = 65536) -> Steps:
    """Two small sends then one recv; then one big send and recv until all is read."""
    sender, receiver = _pair()
    out = Steps()
    with sender, receiver:
        sender.send(b"alice:")
        sender.send(b"wonderland")
        out.lines.append("sender: send(b'alice:'), then send(b'wonderland')  (two sends, 6 + 10 bytes)")
        _wait_until_buffered(receiver, 16)
        got = receiver.recv(recv_size)
        out.lines.append(f"reader: recv({recv_size}) -> {len(got)} bytes {got!r}  "
                         "(ONE recv: the boundary between the sends is gone)")
        sender.sendall(b"x" * big)
        out.lines.append(f"sender: sendall() of {big:,} bytes  (one call)")
        _wait_until_buffered(receiver, big)
        left, sizes = big, []
        while left:
            piece = receiver.recv(min(recv_size, left))
            sizes.append(len(piece))
            left -= len(piece)
        out.lines.append(f"reader: {len(sizes)} recv({recv_size}) calls -> "
                         + " + ".join(f"{s:,}" for s in sizes) + " bytes  (one send, several pieces)")
    return out


@dataclass(repr=False)
class LiveArrival(Shown):
    size: int
    recv_size: int
    pieces: list[int] = field(default_factory=list)
    complete_after: list[bool] = field(default_factory=list)
    data_ok: bool = False

    @property
    def text(self) -> str:
        n = len(self.pieces)
        return (f"{self.size:,} bytes sent with sendall() while the reader was already calling "
                f"recv({self.recv_size})\n"
                f"more than one piece: {n > 1}; every piece {self.recv_size} bytes: "
                f"{all(p == self.recv_size for p in self.pieces)}; "
                f"no piece bigger than {self.recv_size}: {max(self.pieces, default=0) <= self.recv_size}\n"
                f"complete only after the last piece: {self.complete_after.index(True) == n - 1 if True in self.complete_after else False}; "
                f"every byte in order: {self.data_ok}\n"
                f"(.pieces holds the sizes: they change from run to run)")


def live_arrival(data: bytes, recv_size: int = 65536) -> LiveArrival:
    """Send *data* in one ``sendall()`` from a thread while this thread
    reads with ``recv(recv_size)`` until the sender closes."""
    sender, receiver = _pair()

    def send():
        with sender:
            sender.sendall(data)
            sender.shutdown(socket.SHUT_WR)

    result = LiveArrival(len(data), recv_size)
    reader = P.RequestReader()
    chunks = []
    thread = threading.Thread(target=send, daemon=True)
    with receiver:
        thread.start()
        while chunk := receiver.recv(recv_size):
            chunks.append(chunk)
            result.pieces.append(len(chunk))
            reader.feed(chunk)
            content, sep, claimed = reader.data.rpartition(b"#")
            result.complete_after.append(bool(sep) and P.checksum(content) == claimed.decode("ascii", "replace"))
    thread.join(5)
    result.data_ok = b"".join(chunks) == data
    return result
