"""Loss that nobody announces, for lab 6 (rdt3.0 over the mail protocol).

A request or a reply lost on a real network leaves no trace: no FIN, no
RST, no error, nothing more arrives.  Only a timer tells the sender to
send again.  :class:`~mailkit.noise.NoisyLink` loses that way when told
to (``plan_next(lose_request=True)``, ``plan_next(lose_reply=True)``: it
holds the client's connection in silence).  :class:`SilentBench` puts it in
front of the grader's :class:`Receiver` and a mail server, and names the
fates a check plans, one per connection, in order:

* ``LOSE_REQUEST``: the request never reaches the server;
* ``LOSE_REPLY``: the server carries the request out (the mail is stored),
  and its reply never reaches the client;
* ``delay(s)``: the reply arrives *s* seconds late (later than the
  sender's timeout: a premature timeout, and a resend that the receiver
  must recognise);
* ``PASS``: nothing happens to it.

The :class:`Receiver` speaks lab 5's wire format (``SEQ/`` before a frame,
a SYN that starts a session's numbering at 0, replies with their own
``SEQ/`` and checksum: :mod:`mailkit.labs.support`)
and carries each sequence number out once per session.  What a check
judges is the server's store (bob's inbox: each mail once, in order) and
the link's record of what crossed it.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time

from mailkit import NoisyLink
from mailkit import protocol as P

from .support import SYN_REPLY, USERS, Bench, seq_reply, split_seq

__all__ = ["PASS", "LOSE_REQUEST", "LOSE_REPLY", "delay", "Receiver", "SilentBench", "HOLD_S", "EARLY_S",
           "SPURIOUS_TIMEOUTS", "MAX_SAMPLE_S", "TimerBudget", "rto_waits", "follows_rfc6298"]

PASS, LOSE_REQUEST, LOSE_REPLY = "pass", "lose request", "lose reply"
# A lost exchange keeps the client's connection silent this long, then the
# link closes it: longer than any timeout the lab asks for (0.1-0.3 s).
HOLD_S = 1.0
# A resend that comes sooner than this after the previous attempt of the
# same mail is a copy, not a timeout: half the shortest timeout the lab uses (0.2 s).
EARLY_S = 0.1
# Early attempts a check forgives in all: a first attempt whose reading the
# link put off on a loaded machine, so that the resend seems to follow it at once.
SPURIOUS_TIMEOUTS = 1


def delay(seconds: float) -> tuple[str, float]:
    """The fate of a reply held back *seconds* before it is passed on."""
    return ("delay", float(seconds))


# RFC 6298's constants (section 2), as lab 6 asks for them (mailkit.rtt has the same)
_ALPHA, _BETA, _K = 1 / 8, 1 / 4, 4
_CLOSE = dict(rel_tol=1e-6, abs_tol=1e-6)   # float arithmetic, and a clock granularity G of 1 us or finer
_HELD_SLACK_S = 0.005                       # a sample is at least the time the link held the reply, less this


def rto_waits(timeout: float, losses) -> float:
    """The seconds a correct lab 6 sender spends waiting on its timer when
    the *n*-th mail's first ``losses[n]`` attempts are lost silently and
    every round trip is far below *timeout* (a quiet loopback): each loss
    costs the RTO of the moment, which then doubles (RFC 6298, 5.5); the
    backed-off RTO stays (Karn: a resent request gives no sample) until a
    mail answered at its first attempt gives a sample, which brings it back
    to its floor, *timeout* (SRTT + 4 RTTVAR after a first sample R is 3 R).
    :class:`TimerBudget` is the same with the round trips a check times."""
    budget = TimerBudget(timeout)
    for lost in losses:
        with budget.mail(lost=lost, clock=lambda: 0.0):
            pass
    return budget.seconds


# The longest round trip the grader credits a sender with (TimerBudget): a
# loaded machine stretches a loopback exchange to a few hundred ms, and no
# more is credited, so a sender cannot buy time by being slow on purpose
# (with it, an RFC 6298 RTO stays below 5 x 0.3 s).
MAX_SAMPLE_S = 0.3


class TimerBudget:
    """The time an RFC 6298 sender may take in a check, worked out as the
    check goes, from the round trips the grader times itself::

        budget = TimerBudget(timeout, slack=SLACK)
        with bench.budget(budget):                  # the limit grows as mails are planned
            for subject, lost in zip(subjects, losses):
                bench.plan(*[LOSE_REQUEST] * lost)
                with budget.mail(lost=lost):        # times the send
                    kernel.eval(f"sender.send({bench.frame(subject)!r})")
        budget.seconds                              # what it was allowed in all

    A mail whose first *lost* attempts get no reply in time costs the RTO
    of the moment for each, doubling (RFC 6298, 5.5), and leaves it backed
    off (Karn, section 3).  A mail answered at its first attempt gives a
    sample: the seconds the grader timed its whole send (never less than
    the sender's own round trip, which it includes; at most
    :data:`MAX_SAMPLE_S`), and the RTO becomes max(timeout, SRTT + 4 RTTVAR)
    (section 2, with the lab's floor).  On a quiet machine the samples are
    milliseconds and this is :func:`rto_waits`; on a loaded one a slow
    first round trip raises a correct sender's RTO (3 R) for several mails,
    and the budget follows it, so such a sender is never judged too slow.
    Nothing the student's code reports is used."""

    def __init__(self, timeout: float, *, slack: float = 0.0):
        self.timeout = timeout
        self.seconds = slack            # allowed so far
        self.rto = timeout
        self._srtt: float | None = None
        self._rttvar = 0.0

    @contextlib.contextmanager
    def mail(self, *, lost: int, clock=time.monotonic):
        """Allow the next mail's *lost* timer expiries, then time its send
        (the ``with`` block)."""
        for _ in range(lost):
            self.seconds += self.rto
            self.rto *= 2
        began = clock()
        yield
        if not lost:
            self._sample(min(clock() - began, MAX_SAMPLE_S))

    def _sample(self, rtt: float) -> None:
        if self._srtt is None:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar = (1 - _BETA) * self._rttvar + _BETA * abs(self._srtt - rtt)
            self._srtt = (1 - _ALPHA) * self._srtt + _ALPHA * rtt
        self.rto = max(self.timeout, self._srtt + _K * self._rttvar)



def follows_rfc6298(before, after, *, timeout: float, attempts: int, held: float) -> bool:
    """Whether a lab 6 sender's ``(srtt, rttvar, rto)`` went from *before*
    to *after* as RFC 6298 says, over one request that took *attempts*
    attempts (each failed one silent: its timer expired) and whose reply
    the link held *held* seconds.

    Answered at the first attempt: one sample R (the SRTT's change tells
    which: R = 8 SRTT' - 7 SRTT, or SRTT' for the first sample), at least
    *held*; RTTVAR' = 3/4 RTTVAR + 1/4 |SRTT - R| with the OLD SRTT (first
    sample: R / 2), RTO' = max(timeout, SRTT' + 4 RTTVAR') (section 2; the
    lab's floor is *timeout*, the RFC's 1 s).  Resent: no sample (Karn,
    section 3): SRTT and RTTVAR unchanged, RTO doubled per expiry (5.5).
    Anything that is not a number answers False."""
    try:
        (s0, v0, r0), (s1, v1, r1) = before, after
        if attempts > 1:
            return (s1, v1) == (s0, v0) and math.isclose(r1, r0 * 2 ** (attempts - 1), **_CLOSE)
        if s0 is None:
            sample, var = s1, s1 / 2
        else:
            sample = 8 * s1 - 7 * s0
            var = (1 - _BETA) * v0 + _BETA * abs(s0 - sample)
        return (sample >= held - _HELD_SLACK_S and math.isclose(v1, var, **_CLOSE)
                and math.isclose(r1, max(timeout, s1 + _K * var), **_CLOSE))
    except (TypeError, ValueError, OverflowError):
        return False


def _plan_next(link: NoisyLink, fate) -> None:
    if fate == PASS:
        link.plan_next()
    elif fate == LOSE_REQUEST:
        link.plan_next(lose_request=True)
    elif fate == LOSE_REPLY:
        link.plan_next(lose_reply=True)
    elif isinstance(fate, tuple) and fate[0] == "delay":
        link.plan_next(delay=fate[1])
    else:
        raise ValueError(f"not a fate: {fate!r} (PASS, LOSE_REQUEST, LOSE_REPLY or delay(s))")


def _seq(request: bytes):
    """A request's ``SEQ/``: 0, 1, "S" for a SYN, None if none."""
    head, slash, _ = request.partition(b"/")
    if slash and head in (b"0", b"1"):
        return int(head)
    return "S" if slash and head == b"S" else None


class Receiver:
    """The grader's receiver (lab 5's wire format): carries each sequence
    number out once per session, answers a resend with the reply it
    already sent, and starts a session at 0 again on a SYN."""

    def __init__(self, respond):
        self.respond = respond
        self.expected: dict[bytes, int] = {}
        self.last_reply: dict[bytes, bytes] = {}
        self.requests = 0           # how many requests reached it
        self.carried_out = 0        # how many it passed on to the mail server
        self.lock = threading.Lock()
        # Provenance (issue 25): with ``sources`` a set, it accepts a
        # connection only from a port the link announced (each once), so a
        # request that did not come through the link is refused and noted.
        self.sources: set[int] | None = None
        self.strangers: list = []   # peers it refused

    def expect_source(self, port: int) -> None:
        """The link will connect from *port* (called before it connects)."""
        with self.lock:
            if self.sources is None:
                self.sources = set()
            self.sources.add(port)

    def accepts(self, peer) -> bool:
        """Whether a connection from *peer* came from the link (once per port)."""
        with self.lock:
            if self.sources is None:
                return True
            if peer[1] in self.sources:
                self.sources.discard(peer[1])
                return True
            self.strangers.append(tuple(peer[:2]))
            return False

    def __call__(self, request: bytes) -> bytes:
        with self.lock:
            self.requests += 1
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
            self.carried_out += 1
            reply = seq_reply(seq, self.respond(frame))
            self.expected[session] = 1 - seq
            self.last_reply[session] = reply
            return reply


class SilentBench(Bench):
    """A mail server with :data:`~mailkit.labs.support.USERS`, the grader's
    :class:`Receiver` in front of it, and a :class:`~mailkit.noise.NoisyLink`
    in front of that::

        with SilentBench() as bench:
            sender = TimedSender(*bench.address, timeout=0.2)
            sender.send(bench.frame("mail 0"))      # the SYN, then mail 0
            bench.plan(LOSE_REQUEST, LOSE_REPLY)    # mail 1 is lost, then its reply
            sender.send(bench.frame("mail 1"))
            bench.inbox()                           # ["mail 0", "mail 1"]: the subjects bob has, in order

    A plan is for the mail the check makes next with :meth:`frame` (plan,
    then make the frame, then send it): the link gives planned faults only
    to a numbered request carrying that frame, in order, never to another
    connection (issue 25: a decoy cannot take a loss meant for the mail).
    Plan just before a mail whose number is agreed (not before a sender's
    first mail or the one after ``GaveUp``, which start with a SYN).
    :meth:`through_the_link` fails, and :meth:`report` notes, anything else
    that crossed the link (:meth:`strays`), copies of a mail sent at once
    (:meth:`excess`), and any connection that reached the
    receiver without the link (the receiver accepts only the link's ports).
    """

    def __init__(self, *, hold: float = HOLD_S):
        super().__init__(front=lambda respond: self.receiver, hold=hold)
        self.receiver = Receiver(self.respond)
        self.spent = False          # a budget ran out: the link was stopped
        self._overs: list[threading.Event] = []     # one per budget: set when its block ends
        self._budget_lock = threading.Lock()

    @contextlib.contextmanager
    def budget(self, seconds: "float | TimerBudget"):
        """A check's time budget for what it runs in the ``with`` block,
        counted from now: *seconds*, or a :class:`TimerBudget` (its
        ``seconds`` as they grow while the block runs).  If the block is
        still running when the budget is spent, the verdict is already known
        (too slow: the check compares the time taken with this budget), so
        the bench stops the link: a sender waiting on a held connection sees
        it close at once, every later connection is refused, and the check
        ends now instead of after each hold (a sender with no timeout waits
        the whole hold, a second per loss).  Leaving the block in time
        cancels it::

            began = time.monotonic()
            with bench.budget(losses * timeout + SLACK):
                ...                                   # the sends
            took = time.monotonic() - began           # after the block: >= the budget if it was spent
        """
        allowed = (lambda: seconds.seconds) if isinstance(seconds, TimerBudget) else (lambda: seconds)
        began = time.monotonic()
        over = threading.Event()            # the block is over: the budget no longer applies
        self._overs.append(over)

        def watch() -> None:
            while True:
                left = began + allowed() - time.monotonic()
                if left <= 0:
                    self._spend(over)
                    return
                if over.wait(left):
                    return

        threading.Thread(target=watch, name="budget", daemon=True).start()
        try:
            yield self
        finally:
            with self._budget_lock:         # either the budget was spent before this, or it never will be
                over.set()

    def _spend(self, over: threading.Event) -> None:
        with self._budget_lock:
            if over.is_set():
                return
            self.spent = True
        self.link.stop()

    def __enter__(self) -> "SilentBench":
        super().__enter__()
        self._judging: bytes | None = None      # the frame frame() made last: the mail under test
        self._strays: list[int] = []            # link events that were not the exchange under test
        self._arrivals: dict[bytes, list[float]] = {}   # each mail's attempts: when the link read them
        self.link.judged = self._judged
        self.receiver.sources = set()           # from now on, only the link's announced ports
        self.link.on_upstream = self.receiver.expect_source
        self.front.accept = self.receiver.accepts
        return self

    def _judged(self, request: bytes) -> bool:
        """The link asks, for each request it reads: is it the exchange
        under test (a numbered request carrying the last frame made)?  A
        SYN of that mail's session is allowed, never faulted; anything else
        is a stray."""
        try:
            seq, inner = split_seq(request)
        except ValueError:
            seq, inner = None, b""
        current = self._judging
        if seq in (0, 1):
            self._arrivals.setdefault(inner, []).append(time.monotonic())
        if current is not None and seq in (0, 1) and inner == current:
            return True
        if not (seq == "S" and current is not None and inner == current[:len(inner)] and inner):
            self._strays.append(len(self.link.events) + 1)
        return False

    def strays(self) -> list[int]:
        """The link's connection numbers whose request was neither the mail
        under test nor its session's SYN."""
        return list(self._strays)

    def attempts(self, frame: bytes) -> int:
        """How many numbered requests carrying *frame* (a frame :meth:`frame`
        made) the link has read: that mail's attempts, whenever the link got
        to read them (on a loaded machine, a timed-out attempt may be read
        after the sender has moved on)."""
        return len(self._arrivals.get(frame, ()))

    def excess(self) -> int:
        """Attempts of a mail that came less than :data:`EARLY_S` after its
        previous attempt: copies sent at once, not after a timeout (a timer
        fires late on a busy machine, never early)."""
        return sum(1 for times in self._arrivals.values()
                   for before, after in zip(times, times[1:]) if after - before < EARLY_S)

    def close(self) -> None:
        with self._budget_lock:
            for over in self._overs:
                over.set()
        super().close()

    @property
    def address(self) -> tuple[str, int]:
        """Where a sender connects: the link."""
        return tuple(self.link.address)

    def plan(self, *fates) -> "SilentBench":
        """What happens to the attempts of the mail made next with
        :meth:`frame`, in order (then they pass); a connection that carries
        anything else gets no planned fault."""
        for fate in fates:
            _plan_next(self.link, fate)
        return self

    def frame(self, subject: str, body: str = "hello", *, sender: str = "alice", to: str = "bob") -> bytes:
        """An ``email`` frame from *sender* to *to*: the mail under test
        from now on (the plans made since the last frame are for it)."""
        frame = P.make_frame(self.session(sender), "email", to, subject, body)
        self._judging = frame
        return frame

    def drift(self, seconds: float) -> "SilentBench":
        """Hold every reply *seconds* from now on (the link's delay for
        connections with no fate planned, resends too): a path whose round
        trip changes, as in lab 6's drifting-delay check."""
        self.link.delay = float(seconds)
        return self

    def inbox(self, to: str = "bob") -> list[str]:
        """The subjects in *to*'s inbox, oldest first."""
        return [m.subject for m in self.server.store.messages(to)]

    def through_the_link(self) -> bool:
        """Whether every mail in the store came through the link and the
        receiver, and nothing else did (issue 25): the receiver refused no
        connection from elsewhere (it accepts only the link's own upstream
        ports, so a kernel that found its port on loopback is refused), the
        store holds only what the receiver carried out (nothing went
        straight to the mail server), nothing but the mails under test and
        their SYNs crossed the link (no decoys), and no mail was sent again at
        once instead of after a timeout (one such forgiven).
        (The grader's own logins go to the server; they store no mail.)"""
        mails = sum(self.server.store.count(user) for user in USERS)
        return (not self.receiver.strangers and mails == self.receiver.carried_out
                and not self.strays() and self.excess() <= SPURIOUS_TIMEOUTS)

    def sequence_numbers(self) -> list:
        """The ``SEQ/`` of every request that crossed: 0, 1, "S" for a SYN."""
        return [_seq(event.request) for event in self.link.events]

    def numbering(self) -> list:
        """:meth:`sequence_numbers` without resends (a number repeated right
        after itself): ``["S", 0, 1, 0]`` for a SYN and three mails, however
        many times each was sent."""
        out: list = []
        for seq in self.sequence_numbers():
            if not out or out[-1] != seq:
                out.append(seq)
        return out

    def report(self) -> str:
        notes = []
        if self.receiver.strangers:
            notes.append(f"; {len(self.receiver.strangers)} connection(s) to the receiver not from the link, refused")
        if self.strays():
            notes.append(f"; connections {self.strays()} through the link were not the mail under test")
        if self.excess() > SPURIOUS_TIMEOUTS:
            notes.append(f"; {self.excess()} attempt(s) sent at once after another, not after a timeout")
        return f"bob has {self.inbox()}; numbered {self.numbering()} (resends left out)" + "".join(notes)
