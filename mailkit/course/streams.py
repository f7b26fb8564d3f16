"""TCP is a byte stream (notebooks 01 and 03): one request and one reply on
a connection, and a big frame that comes out of ``recv()`` in pieces."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from .. import protocol as P
from ..client import request_once
from ..pictures import Shown, pieces_svg

__all__ = ["raw_request", "Arrival", "arrival"]

# Send bytes on a new TCP connection and read the reply until the server
# closes: one request, one reply, as the protocol says (``half_close=False``
# behaves like a 2017 client, which sends and waits).
raw_request = request_once


@dataclass(repr=False)
class Arrival(Shown):
    """How one frame came out of a TCP socket, ``recv(size)`` by ``recv(size)``."""

    size: int                          # the bytes sent
    recv_size: int
    pieces: list[int] = field(default_factory=list)      # bytes per recv()
    complete_after: list[bool] = field(default_factory=list)  # frame complete yet?
    data: bytes = b""

    @property
    def whole(self) -> bool:
        return len(self.data) == self.size

    @property
    def text(self) -> str:
        n = len(self.pieces)
        shown = ", ".join(map(str, self.pieces[:3])) + (", …, " + str(self.pieces[-1]) if n > 3 else "")
        first_complete = self.complete_after.index(True) + 1 if True in self.complete_after else None
        return (f"{self.size:,} bytes sent in one sendall(); they came out of "
                f"{n} recv({self.recv_size}) calls: {shown}\n"
                f"after recv #1 the frame was complete: {self.complete_after[0] if n else False}\n"
                f"the frame was first complete after recv #{first_complete}; "
                f"all bytes arrived: {self.whole}")

    def _repr_svg_(self) -> str:
        return pieces_svg(self.pieces, self.size, self.recv_size)


def arrival(data: bytes, recv_size: int = 1024) -> Arrival:
    """Send *data* over a real loopback TCP connection and read it back with
    ``recv(recv_size)`` until the peer closes, asking a
    :class:`~mailkit.protocol.RequestReader` after each piece whether the
    frame is complete.

    Where one ``recv`` stops and the next starts depends on timing; to make
    the picture the same on every run, the reader starts only after every
    byte has been sent (the socket buffers are made big enough to hold them).
    """
    big = max(4 * len(data), 1 << 20)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, big)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sender = socket.socket()
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, big)
        sender.connect(listener.getsockname())
        conn, _ = listener.accept()

        def send():
            with sender:
                sender.sendall(data)
                sender.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        thread.join(10)
        result = Arrival(len(data), recv_size)
        reader = P.RequestReader()
        chunks = []
        with conn:
            conn.settimeout(5)
            while chunk := conn.recv(recv_size):
                chunks.append(chunk)
                result.pieces.append(len(chunk))
                reader.feed(chunk)
                result.complete_after.append(P.verifies(reader.data))
        result.data = b"".join(chunks)
    return result
