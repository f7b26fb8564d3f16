"""Loss that nobody announces, for lab 6 (rdt3.0 over the mail protocol).

A request or a reply lost on a real network leaves no trace: no FIN, no
RST, no error, nothing more arrives.  Only a timer tells the sender to
send again.  :class:`SilentLink` is a relay that loses exactly as planned:

* ``LOSE_REQUEST``: the request never reaches the server;
* ``LOSE_REPLY``: the server carries the request out (the mail is stored),
  and its reply never reaches the client;
* ``("delay", s)``: the reply arrives *s* seconds late (later than the
  sender's timeout: a premature timeout, and a resend that the receiver
  must recognise);

and in each lost case it keeps the client's connection open and silent
for up to ``hold`` seconds, then resets it (a RST, never a FIN that a
client could mistake for an empty reply).  ``PASS`` relays as is.

Behind the link sits the grader's :class:`Receiver`: lab 5's wire format
(``SEQ/`` before a frame, a SYN that starts a session's numbering at 0,
:mod:`mailkit.labs.support`), carrying each sequence number out once per
session.  :class:`SilentBench` puts a mail server, the receiver and the
link together; what a check judges is the server's store (bob's inbox,
each mail once, in order) and the link's record of what crossed it.

(``mailkit.noise.NoisyLink`` drops a reply by closing the connection: the
client sees the close at once and needs no timer.  When NoisyLink learns to
lose silently, this link can become a thin wrapper over it.)
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass

from mailkit import MailClient, MailServer
from mailkit import protocol as P
from mailkit.client import request_once
from mailkit.listener import Listener, send_and_close

from .support import CHEAP_SCRYPT_N, SYN_REPLY, USERS, run_handler, split_seq

__all__ = ["PASS", "LOSE_REQUEST", "LOSE_REPLY", "delay", "SilentLink", "LinkRecord", "Receiver",
           "SilentBench", "HOLD_S"]

PASS, LOSE_REQUEST, LOSE_REPLY = "pass", "lose request", "lose reply"
HOLD_S = 2.0     # a lost exchange keeps the client's connection silent this long, then resets it


def delay(seconds: float) -> tuple[str, float]:
    """The fate of a reply held back *seconds* before it is passed on."""
    return ("delay", float(seconds))


@dataclass
class LinkRecord:
    """One connection through the link: what came, what was done to it."""

    number: int
    request: bytes
    fate: object
    reply: bytes = b""          # as the server sent it ("" if the request was lost)

    @property
    def seq(self):
        """The request's ``SEQ/``: 0, 1, "S" for a SYN, None if none."""
        head, slash, _ = self.request.partition(b"/")
        if slash and head in (b"0", b"1"):
            return int(head)
        return "S" if slash and head == b"S" else None


class SilentLink(Listener):
    """A relay to *target* that loses requests and replies silently, as planned.

    ``link.plan(LOSE_REQUEST, PASS, LOSE_REPLY)`` fixes the fates of the next
    three connections that carry a numbered request (``0/`` or ``1/``), in
    order; a SYN (``S/``) always passes, so that a SYN sent once more (after
    a timeout that came too soon on a busy machine) does not shift the plan.
    Connections beyond the plan pass.  ``link.records`` lists every
    connection that crossed."""

    def __init__(self, target: tuple[str, int], *, hold: float = HOLD_S):
        super().__init__("127.0.0.1", 0)
        self.target, self.hold = tuple(target), hold
        self._plan: deque = deque()
        self.records: list[LinkRecord] = []
        self._lock = threading.Lock()       # guards _plan and records

    def plan(self, *fates) -> "SilentLink":
        with self._lock:
            self._plan.extend(fates)
        return self

    def handle_request(self, conn: socket.socket, peer, received) -> None:
        if received.error is not None:
            send_and_close(conn, f"ERROR: {received.error}".encode(), drain=True)
            return
        with self._lock:
            record = LinkRecord(len(self.records) + 1, received.data, PASS)
            if record.seq != "S" and self._plan:    # a SYN always passes: the plan is for the mails
                record.fate = self._plan.popleft()
            self.records.append(record)
        fate = record.fate
        if fate == LOSE_REQUEST:
            self._say_nothing(conn)
            return
        try:
            record.reply = request_once(self.target, received.data, timeout=5.0)
        except OSError:
            self._say_nothing(conn)
            return
        if fate == LOSE_REPLY:
            self._say_nothing(conn)
            return
        if isinstance(fate, tuple) and fate[0] == "delay":
            if self.stop_requested(fate[1]):
                return
        send_and_close(conn, record.reply)

    def _say_nothing(self, conn: socket.socket) -> None:
        """Keep the connection open and silent (``hold`` seconds, or until
        the link stops), then reset it: a RST, not a FIN."""
        self.stop_requested(self.hold)
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    # what a check reads

    @property
    def connections(self) -> int:
        return len(self.records)

    def sequence_numbers(self) -> list:
        """The ``SEQ/`` of every request that crossed: 0, 1, "S" for a SYN."""
        return [r.seq for r in self.records]

    def numbering(self) -> list:
        """:meth:`sequence_numbers` without resends (a number repeated right
        after itself): ``["S", 0, 1, 0]`` for a SYN and three mails, however
        many times each was sent."""
        out: list = []
        for seq in self.sequence_numbers():
            if not out or out[-1] != seq:
                out.append(seq)
        return out


class Receiver:
    """The grader's receiver (lab 5's wire format): carries each sequence
    number out once per session, answers a resend with the reply it
    already sent, and starts a session at 0 again on a SYN."""

    def __init__(self, respond):
        self.respond = respond
        self.expected: dict[bytes, int] = {}
        self.last_reply: dict[bytes, bytes] = {}
        self.lock = threading.Lock()

    def __call__(self, request: bytes) -> bytes:
        try:
            seq, frame = split_seq(request)
        except ValueError:
            return b"KO"
        session = frame[:10]
        with self.lock:
            if seq == "S":
                self.expected[session] = 0
                self.last_reply.pop(session, None)
                return SYN_REPLY
            if seq != self.expected.get(session, 0) and session in self.last_reply:
                return self.last_reply[session]
            reply = f"{seq}/".encode() + self.respond(frame)
            self.expected[session] = 1 - seq
            self.last_reply[session] = reply
            return reply


class SilentBench:
    """A mail server with :data:`~mailkit.labs.support.USERS`, the grader's
    :class:`Receiver` in front of it, and a :class:`SilentLink` in front of
    that::

        with SilentBench() as bench:
            bench.link.plan(LOSE_REQUEST)           # the first mail is lost (a SYN always passes)
            sender = TimedSender(*bench.address, timeout=0.2)
            sender.send(bench.frame("mail 0"))
            bench.inbox()                           # ["mail 0"]: the subjects bob has, in order
    """

    def __init__(self, *, hold: float = HOLD_S):
        self.server = MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N)   # throwaway accounts
        self.receiver = Receiver(self._respond)
        self.front = None
        self.link: SilentLink | None = None
        self._hold = hold
        self._sessions: dict[str, str] = {}

    def __enter__(self) -> "SilentBench":
        try:
            self.server.start()
            self.front = run_handler(self.receiver).start()
            self.link = SilentLink(self.front.address, hold=self._hold).start()
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

    def _respond(self, frame: bytes) -> bytes:
        return self.server.respond(frame)[1].encode("utf-8")

    @property
    def address(self) -> tuple[str, int]:
        """Where a sender connects: the link."""
        return tuple(self.link.address)

    def session(self, user: str = "alice") -> str:
        if user not in self._sessions:
            self._sessions[user] = MailClient(*self.server.address).login(user, USERS[user])
        return self._sessions[user]

    def frame(self, subject: str, body: str = "hello", *, sender: str = "alice", to: str = "bob") -> bytes:
        """An ``email`` frame from *sender* to *to*."""
        return P.make_frame(self.session(sender), "email", to, subject, body)

    def inbox(self, to: str = "bob") -> list[str]:
        """The subjects in *to*'s inbox, oldest first."""
        return [m.subject for m in self.server.store.messages(to)]

    def report(self) -> str:
        link = self.link
        return f"bob has {self.inbox()}; numbered {link.numbering()} (resends left out)"
