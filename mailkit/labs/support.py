"""Helpers that the labs' check cells (and students) import.

    from mailkit.labs import support as lab

Everything here is standard library plus the mailkit core, so importing it
in a kernel is quick.  Each helper starts what it needs in background
threads and stops it when its ``with`` block ends, so a check cell that
fails half-way leaves no server behind.

* :data:`USERS`: the accounts every lab uses.
* :func:`exchange`: one request, one reply, on one connection.
* :class:`GaveUp`: what a sender raises when every attempt failed.
* :class:`Client2017`: a client that talks like the 2017 one.
* :func:`run_server` / :func:`run_handler`: serve a student's code on a port.
* :class:`Bench`: a mail server behind a :class:`~mailkit.noise.NoisyLink`.
* :func:`add_seq` / :func:`split_seq` / :func:`syn`: lab 5's sequence numbers;
  :func:`seq_reply` / :func:`split_reply`: its replies, with their checksum.
"""

from __future__ import annotations

import socket
import threading

from mailkit import MailClient, MailServer, NoisyLink
from mailkit.course.legacy2017 import Client2017  # the one 2017 client (PROTOCOL.md)
from mailkit.client import request_once
from mailkit import protocol as P
from mailkit.listener import Listener, send_and_close

__all__ = [
    "USERS", "GaveUp", "exchange", "Client2017", "run_server", "run_handler",
    "Bench", "add_seq", "split_seq", "syn", "SYN_REPLY", "seq_reply", "split_reply",
    "first_number", "deliver_through_noise",
    "CHEAP_SCRYPT_N",
]


# The accounts of every lab (a lab server forgets them when it stops).
USERS = {"alice": "wonderland", "bob": "builder", "carol": "c4r0l"}

# The scrypt cost of the password hashes of a check's own mail servers (the
# grader's probes, lab.Bench, lab 1's checks).  Their accounts are throwaway
# (made for one check, gone when it ends: the hashes protect nothing), and
# no check is about the hash's cost: at the store's default (SCRYPT_N, ~50 ms
# of CPU per hash) lab 1's checks spent ~1.6 s per notebook hashing.  A real
# server keeps the default; lab 4's own server stores no hashes at all.
CHEAP_SCRYPT_N = 2 ** 8

EXCHANGE_TIMEOUT_S = 5.0   # as mailkit's client: a server silent for 5 s is gone


class GaveUp(OSError):
    """Every attempt failed (``KO`` or no reply): the sender gave up."""


def exchange(host: str, port: int, data: bytes, *, timeout: float = EXCHANGE_TIMEOUT_S) -> bytes:
    """Send *data* on a new connection, half-close, and return every byte
    of the reply (``b""`` if the connection closed without one)."""
    return request_once((host, port), data, timeout=timeout)


def first_number(text: str) -> int | None:
    """The first whole number in *text* (``"OK: 3 messages"`` -> 3), or None."""
    for word in text.replace(":", " ").split():
        if word.isdigit():
            return int(word)
    return None


class _Serving(Listener):
    """A listener that hands each connection to a function and records
    (as text) any exception it raises, for a check to print."""

    READS_REQUESTS = False      # the student's code reads the socket itself

    def __init__(self, on_connection, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host, port, raw_connections=not self.READS_REQUESTS)
        self._on_connection = on_connection
        self.errors: list[str] = []
        self._lock = threading.Lock()   # guards errors

    def handle(self, conn: socket.socket, peer) -> None:
        try:
            self._on_connection(conn)
        except Exception as exc:   # the student's code: note it, keep serving
            self._note(exc)

    def _note(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(f"{type(exc).__name__}: {exc}")


class _Handling(_Serving):
    """Reads each request as mailkit's server does, and sends back what
    ``handler(request) -> reply`` returns."""

    READS_REQUESTS = True
    # ``accept(peer) -> bool``, or None for anyone: a connection it refuses
    # gets no reply (the grader's receiver accepts only its link: lab 6).
    accept = None

    def handle_request(self, conn: socket.socket, peer, received) -> None:
        if self.accept is not None and not self.accept(peer):
            self._note(ConnectionRefusedError(f"not from the link: {peer}"))
            return
        if received.error is not None:      # too large or too slow: no reply
            self._note(received.error)
            return
        try:
            send_and_close(conn, self._on_connection(received.data))
        except Exception as exc:   # the student's code: note it, keep serving
            self._note(exc)


def run_server(server, *, host: str = "127.0.0.1", port: int = 0) -> _Serving:
    """Serve *server* (an object with ``serve_one(conn)``) in background
    threads: each connection goes to ``server.serve_one(conn)``, which reads
    one request and sends the reply; the connection is closed after it.
    Use it in a ``with`` block; ``.address`` is where it listens and
    ``.errors`` lists what ``serve_one`` raised.  ``host="0.0.0.0"`` lets
    classmates' clients in."""
    return _Serving(server.serve_one, host, port)


def run_handler(handler, *, host: str = "127.0.0.1", port: int = 0) -> _Serving:
    """Serve ``handler(request: bytes) -> bytes``: read each request as
    mailkit's server does, send back what *handler* returns."""
    return _Handling(handler, host, port)


def add_seq(seq: int, frame: bytes) -> bytes:
    """Lab 5's request: ``SEQ/`` before a frame's content, and a checksum
    over all of it: ``1/0123456789:count#<sha1 of '1/0123456789:count'>``."""
    content = str(seq).encode("ascii") + b"/" + frame.rpartition(b"#")[0]
    return content + b"#" + P.checksum(content).encode("ascii")


def syn(session_id: bytes | str) -> bytes:
    """Lab 5's SYN: ``S/SESSION_ID`` and its checksum.  It asks the receiver
    to start this session's numbering again at 0 (it answers
    :data:`SYN_REPLY`), as TCP's SYN agrees on where a connection's
    numbering starts.  A sender sends it before its first frame and after it
    gave up (it cannot know whether the last frame was carried out)."""
    sid = session_id.encode("ascii") if isinstance(session_id, str) else bytes(session_id)
    content = b"S/" + sid
    return content + b"#" + P.checksum(content).encode("ascii")


def split_seq(request: bytes) -> tuple[int | str, bytes]:
    """Undo :func:`add_seq`: return ``(seq, frame)``, the frame with its own
    checksum again; for a :func:`syn`, ``("S", session_id)``.  Raises
    ``ValueError`` if the checksum does not match or there is no sequence
    number."""
    if not P.verifies(request):
        raise ValueError("checksum mismatch")
    content = request[:-P.CHECKSUM_LEN - 1]
    seq, slash, inner = content.partition(b"/")
    if slash and seq == b"S":
        return "S", inner
    if not slash or seq not in (b"0", b"1"):
        raise ValueError(f"expected 0/, 1/ or S/ before the frame, got {content[:12]!r}")
    return int(seq), inner + b"#" + P.checksum(inner).encode("ascii")


def seq_reply(seq: int | str, reply: bytes) -> bytes:
    """Lab 5's reply: ``SEQ/`` before the mail server's reply, and a checksum
    over all of it: ``0/OK: Email Sent#<sha1 of '0/OK: Email Sent'>``.  As
    rdt2.1 puts a checksum on its ACKs: a reply damaged on its way back must
    not be taken for one (a flipped ``OK``, or the other number)."""
    content = str(seq).encode("ascii") + b"/" + bytes(reply)
    return content + b"#" + P.checksum(content).encode("ascii")


def split_reply(data: bytes) -> tuple[int | str, bytes]:
    """Undo :func:`seq_reply`: return ``(seq, reply)`` (``seq`` is 0, 1 or
    ``"S"``).  Raises ``ValueError`` for anything else: a damaged reply (the
    checksum does not match), a bare ``KO``, no reply at all."""
    data = bytes(data)
    if not P.verifies(data):
        raise ValueError("checksum mismatch" if b"#" in data else f"not a sequenced reply: {data[:16]!r}")
    content = data[:-P.CHECKSUM_LEN - 1]
    seq, slash, reply = content.partition(b"/")
    if not slash or seq not in (b"0", b"1", b"S"):
        raise ValueError(f"expected 0/, 1/ or S/ before the reply, got {content[:12]!r}")
    return ("S" if seq == b"S" else int(seq)), reply


SYN_REPLY = seq_reply("S", b"OK")     # the receiver's answer to a SYN: "I expect 0 next"


class Bench:
    """A mail server with :data:`USERS`, behind a :class:`NoisyLink`.

        with Bench(rate=0.3, seed=7) as bench:
            frame = bench.frame("alice", "Hi", "hello")   # to bob
            ...  send frame to bench.link.address ...
            bench.delivered()          # how many mails bob has
            bench.connections          # how many connections crossed the link

    With *front* (a function ``front(respond) -> handler``, such as lab 5's
    ``Deduplicator``) the link leads to ``front(respond)`` served by
    :func:`run_handler`, where ``respond(frame) -> reply bytes`` is the mail
    server's answer, instead of to the mail server itself.  *hold*: how long
    the link holds a connection whose request or reply it lost silently.
    """

    def __init__(self, *, rate: float = 0.0, seed: int = 0, front=None, hold: float | None = None):
        self.server = MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N)   # throwaway accounts
        self._front_factory = front
        self.front: _Serving | None = None
        self.link: NoisyLink | None = None
        self._rate, self._seed, self._hold = rate, seed, hold
        self._sessions: dict[str, str] = {}

    def __enter__(self) -> "Bench":
        try:
            self.server.start()
            target = self.server.address
            if self._front_factory is not None:
                self.front = run_handler(self._front_factory(self.respond)).start()
                target = self.front.address
            self.link = NoisyLink(target, rate=self._rate, seed=self._seed, hold=self._hold).start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for part in (self.link, self.front):
            if part is not None:
                part.stop()
        self.server.close()

    def respond(self, frame: bytes) -> bytes:
        """The mail server's reply to one request, without a socket."""
        return self.server.respond(frame)[1].encode("utf-8")

    def session(self, user: str) -> str:
        """A session id for *user*, logged in directly (not over the link)."""
        if user not in self._sessions:
            self._sessions[user] = MailClient(*self.server.address).login(user, USERS[user])
        return self._sessions[user]

    def frame(self, sender: str, subject: str, body: str, *, to: str = "bob") -> bytes:
        """An ``email`` frame from *sender* to *to*."""
        return P.make_frame(self.session(sender), "email", to, subject, body)

    def delivered(self, to: str = "bob") -> int:
        return self.server.store.count(to)

    @property
    def connections(self) -> int:
        return len(self.link.events)

    def sequence_numbers(self) -> list[int | str | None]:
        """The ``SEQ/`` of every request that crossed the link: 0, 1, "S"
        for a SYN, None if none."""
        out = []
        for event in self.link.events:
            seq, slash, _ = event.request.partition(b"/")
            out.append(("S" if seq == b"S" else int(seq)) if slash and seq in (b"0", b"1", b"S") else None)
        return out

    def report(self) -> str:
        return (f"bob has {self.delivered()} message(s); {self.connections} connection(s); "
                f"sequence numbers {self.sequence_numbers()}")


def deliver_through_noise(send, *, rate: float, seed: int, mails: int = 20) -> str:
    """Lab 3: send *mails* mails with ``send(host, port, frame)`` through a
    link that flips a bit in a frame with probability *rate*; say how many
    arrived, how many the sender gave up on, how many connections it took."""
    with Bench(rate=rate, seed=seed) as bench:
        gave_up = 0
        for i in range(mails):
            try:
                send(*bench.link.address, bench.frame("alice", f"mail {i}", "hello"))
            except GaveUp:
                gave_up += 1
        return (f"rate {rate}: {bench.delivered()} of {mails} delivered, {gave_up} given up, "
                f"{bench.connections} connections")
