"""The 2017 habits put back on purpose, to watch them fail (notebook 03).

A teaching device only: mailkit's :class:`~mailkit.server.MailServer` has
none of them.  :func:`parse_2017` (splitting a frame at the first ``#``)
lives in :mod:`mailkit.protocol`, where the forms find it too.
"""

from __future__ import annotations

import threading

from .. import protocol as P
from ..protocol import parse_2017
from ..responder import MailResponder
from ..server import REPLIES, MailServer

__all__ = ["parse_2017", "Server2017Style"]


class Server2017Style(MailServer):
    """mailkit's server with two 2017 habits put back, to watch them fail:

    * it reads a request with ONE ``recv(1024)`` (a bigger frame is cut), and
    * it splits the checksum off at the FIRST ``#`` (:func:`parse_2017`).

    A teaching device only: the real :class:`MailServer` does neither.
    """

    RECV_SIZE = 1024

    class Responder(MailResponder):
        """mailkit's replies, but the checksum is split off at the FIRST ``#``."""

        def respond(self, data: bytes, peer=None):
            if b"#" in data:
                _, _, ok = parse_2017(data)
                if not ok:
                    return "bad frame (split at the first '#')", REPLIES.KO
            return super().respond(data, peer)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.responder = self.Responder(self.store)
        self.emails_in_loop = False      # a teaching server: every request in a worker
        self.sizes: list[int] = []       # bytes each request's one recv() returned
        self._lock = threading.Lock()    # guards sizes (see _OneRecv)

    def new_reader(self) -> "_OneRecv":
        return _OneRecv(self)


class _OneRecv(P.RequestReader):
    """A request is whatever ONE ``recv(1024)`` returns: the 2017 way."""

    def __init__(self, server: Server2017Style):
        # It waits as long as the 2017 server's one blocking recv() did.
        super().__init__(idle_timeout=server.REQUEST_DEADLINE_S, max_bytes=server.max_request_bytes)
        self._server = server

    def feed(self, data: bytes) -> None:
        chunk = data[: self._server.RECV_SIZE]
        with self._server._lock:
            self._server.sizes.append(len(chunk))
        super().feed(chunk)
        self.closed = True          # no more reading: that was "the message"
