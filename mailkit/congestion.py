"""Congestion control on a virtual clock (notebook 09, lab 9): a bottleneck
link with a finite drop-tail queue, TCP Reno senders as RFC 5681 describes
them, and two senders sharing one bottleneck (fairness, Jain's index).

A discrete-event simulation: a run of many virtual seconds takes
milliseconds, repeats exactly (any randomness comes from a seeded
``random.Random``) and never sleeps.

The model (Kurose & Ross 3.6-3.7):

* **The bottleneck** (:class:`Link`) sends *rate* segments a second, one
  after another; a segment that arrives while it is busy waits in a FIFO
  queue that holds *buffer* segments; one more is dropped (drop-tail).
  After the link, a segment takes *delay* seconds (propagation) to the
  receiver, and its ACK takes *delay* back (ACKs are never queued or lost).
  So the shortest round trip is ``1/rate + 2*delay``, and the pipe holds
  ``rate * rtt`` segments (the bandwidth-delay product) plus the queue.
* **The receiver** acknowledges every segment at once with a cumulative
  ACK (the next segment it expects) and keeps out-of-order segments, so a
  hole makes it send duplicate ACKs (RFC 5681 section 4.2: "SHOULD send an
  immediate duplicate ACK when an out-of-order segment arrives").
* **The sender** always has data (a bulk transfer). It may have
  ``min(cwnd, rwnd)`` segments unacknowledged (RFC 5681 section 2: the
  window is the minimum of cwnd and the receiver's window). Its reactions
  are those of :class:`~mailkit.reno.Reno` (or any object with the same three methods):
  ``on_ack``, ``on_dup_ack``, ``on_timeout``. Its retransmission timer is
  RFC 6298's (:class:`mailkit.rtt.RttEstimator`; one timer, restarted on
  each new ACK (5.3), doubled on expiry (5.5), Karn's rule (3)), with
  Linux's 200 ms floor instead of the RFC's 1 s.

Where the course simplifies, and says so in the notebook:

* windows count **segments**, not bytes (RFC 5681 counts bytes: SMSS).
  "cwnd += SMSS*SMSS/cwnd" becomes ``cwnd += 1/cwnd``;
* cwnd starts at 1 segment, as in Kurose & Ross (RFC 5681 eq. 1 allows 2 to
  4, Linux uses 10, RFC 6928); at cwnd == ssthresh, where RFC 5681 3.1 lets
  the sender choose, congestion avoidance runs (as Linux's
  ``tcp_in_slow_start``, cwnd < ssthresh, has it);
* every timeout sets ``ssthresh = max(flight/2, 2)``. RFC 5681 3.1 does so
  only when the timer first resends a segment, and holds ssthresh when the
  same segment times out again; the sender's ``on_timeout(flight)`` is not
  told which, so a second timeout in a row halves the (small) flight again;
* no SACK (RFC 2018/6675), no limited transmit (RFC 3042), no NewReno
  (RFC 6582: here a partial ACK ends fast recovery, as in plain Reno, so
  several losses in one window often end in a timeout);
* after a timeout the sender goes back to the first unacknowledged segment
  and sends on from there (go-back-N), as Reno implementations do. The
  duplicate ACKs that its resends of segments the receiver already holds
  cause are not taken for a new loss: a third duplicate ACK counts only if
  its ACK is past ``recover``, the highest segment sent before the last
  timeout (NewReno's check, RFC 6582 section 3.2, used after timeouts only; without
  it, one timeout is followed by spurious fast retransmits that halve
  ssthresh again and again);
* no delayed ACKs, no pacing, one bottleneck;
* the reactions are **Reno's**. Linux's default is CUBIC (RFC 9438), whose
  window grows as a cubic function of the time since the last loss; this
  machine may run BBR, which models the path's rate and RTT instead of
  reacting to loss. Neither is simulated here.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from .reno import DUPACK_THRESHOLD, INITIAL_SSTHRESH, FixedWindow, Reno, replay
from .rtt import LINUX_MIN_RTO_S, RttEstimator
from .text import plural

__all__ = ["Reno", "FixedWindow", "Link", "Flow", "Run", "simulate", "replay", "jain_index",
           "INITIAL_SSTHRESH", "DUPACK_THRESHOLD", "MAX_WINDOW"]

MAX_EVENTS = 2_000_000      # a bound on any one run (a loss rate of 1 would never end)
EPS = 1e-9                  # floating-point slack when a window is compared with a count
MAX_WINDOW = 100_000        # segments: 1000 times the largest window any run of the course reaches
                            # (81); a cwnd beyond it is a sender's bug (cwnd = ssthresh = 1e9 at the
                            # start), and sending it would fill memory: cwnd += 1e6 per ACK took
                            # 14.5 s and 1.1 GB before this limit, so the run stops and says why


@dataclass(frozen=True)
class Link:
    """The bottleneck: *rate* segments a second, a queue of *buffer*
    segments (drop-tail), *delay* seconds of propagation each way."""

    rate: float = 100.0
    buffer: int = 6
    delay: float = 0.05

    @property
    def rtt(self) -> float:
        """The shortest round trip: one segment's transmission and the propagation there and back."""
        return 1 / self.rate + 2 * self.delay

    @property
    def bdp(self) -> float:
        """The bandwidth-delay product in segments: what the pipe holds without a queue."""
        return self.rate * self.rtt


@dataclass
class Flow:
    """One sender and its receiver in a run, and what happened to them."""

    sender: object
    start: float = 0.0
    name: str = ""
    trace: list = field(default_factory=list)     # (time, cwnd, ssthresh) after each change
    losses: list = field(default_factory=list)    # (time, "3 dup ACKs" or "timeout")
    sent: int = 0
    retransmits: int = 0
    delivered: int = 0                            # in order at the receiver
    deliveries: list = field(default_factory=list)  # (time, delivered so far) after each in-order arrival
    drops: int = 0

    def throughput(self, duration: float) -> float:
        """Segments delivered in order per second, over the run."""
        return self.delivered / duration

    def delivered_by(self, t: float) -> int:
        """Segments delivered in order at or before time *t*."""
        count = 0
        for when, n in self.deliveries:
            if when > t:
                break
            count = n
        return count

    def cwnd_at(self, t: float) -> float:
        """cwnd at time *t* (the last value set at or before it)."""
        value = self.trace[0][1] if self.trace else 0.0
        for when, cwnd, _ in self.trace:
            if when > t:
                break
            value = cwnd
        return value


@dataclass
class Run:
    link: Link
    duration: float
    flows: list
    queue: list          # (time, segments waiting) after each change
    drops: int

    def throughputs(self) -> list[float]:
        return [f.throughput(self.duration) for f in self.flows]

    def utilisation(self) -> float:
        """The fraction of the bottleneck's rate that carried segments delivered in order."""
        return sum(self.throughputs()) / self.link.rate

    def jain(self) -> float:
        return jain_index(self.throughputs())

    def summary(self) -> str:
        lines = [f"link {self.link.rate:g} segments/s, queue {self.link.buffer}, RTT "
                 f"{self.link.rtt * 1000:.0f} virtual ms (BDP {self.link.bdp:.1f} segments), "
                 f"{self.duration:g} virtual s"]
        for f in self.flows:
            fast = sum(1 for _, why in f.losses if why == "3 dup ACKs")
            lines.append(f"  {f.name}: {f.throughput(self.duration):.1f} segments/s, {f.drops} dropped, "
                         f"{plural(fast, 'fast retransmit')}, {plural(len(f.losses) - fast, 'timeout')}")
        lines.append(f"  utilisation {self.utilisation():.2f}" +
                     (f", Jain's index {self.jain():.3f}" if len(self.flows) > 1 else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


def jain_index(xs) -> float:
    """Jain's fairness index (Jain, Chiu and Hawe 1984): (sum x)^2 / (n * sum x^2).
    1 when all get the same; 1/n when one gets everything."""
    xs = list(xs)
    square = sum(x * x for x in xs)
    return (sum(xs) ** 2) / (len(xs) * square) if square else 1.0


class _FlowState:
    """The sender's sequence numbers, timer and the receiver's state (internal)."""

    def __init__(self, flow: Flow):
        self.flow = flow
        self.next_seq = 0          # the next segment to send
        self.snd_una = 0           # the oldest unacknowledged segment
        self.sent_at: dict[int, float] = {}
        self.resent: set[int] = set()
        self.rto = RttEstimator(min_rto=LINUX_MIN_RTO_S)
        self.timer = 0             # the id of the running timer (0: stopped)
        self.expected = 0          # receiver: the next segment in order
        self.held: set[int] = set()  # receiver: out-of-order segments
        self.recover = -1          # RFC 6582's "recover": the highest segment sent before the last timeout

    @property
    def flight(self) -> int:
        return self.next_seq - self.snd_una


def simulate(senders, *, link: Link | None = None, duration: float = 20.0, starts=None,
             rwnd: int | None = None, loss: float = 0.0, seed: int = 0) -> Run:
    """Run *senders* (objects like :class:`Reno`, one flow each) through one
    bottleneck for *duration* virtual seconds; flow *i* starts at
    ``starts[i]``. *rwnd* caps every sender's window (flow control, RFC 5681
    section 2); *loss* drops that fraction of segments at random after the
    queue (a noisy link), drawn from ``random.Random(seed)``."""
    link = link or Link()
    rng = random.Random(seed)
    starts = list(starts) if starts is not None else [0.0] * len(senders)
    flows = [Flow(s, start, name=f"{getattr(s, 'name', type(s).__name__)} {i + 1}")
             for i, (s, start) in enumerate(zip(senders, starts))]
    states = [_FlowState(f) for f in flows]
    events: list = []
    order = 0
    queue: list = []                    # (state, seq) waiting for the link
    busy = [False]
    queue_trace = [(0.0, 0)]
    drops = [0]
    timers = [0]

    def at(when, kind, *args):
        nonlocal order
        order += 1
        heapq.heappush(events, (when, order, kind, args))

    def note(st, now):
        s = st.flow.sender
        st.flow.trace.append((now, s.cwnd, s.ssthresh))

    def start_timer(st, now):
        timers[0] += 1
        st.timer = timers[0]
        at(now + st.rto.rto, "timeout", st, st.timer)

    def transmit(st, seq, now):
        st.flow.sent += 1
        if seq in st.sent_at:
            st.resent.add(seq)
            st.flow.retransmits += 1
        st.sent_at[seq] = now
        if not st.timer:
            start_timer(st, now)                       # RFC 6298 5.1
        if busy[0]:
            if len(queue) >= link.buffer:
                drops[0] += 1
                st.flow.drops += 1
                return
            queue.append((st, seq))
            queue_trace.append((now, len(queue)))
        else:
            busy[0] = True
            at(now + 1 / link.rate, "depart", st, seq)

    def send_more(st, now):
        window = math.floor(st.flow.sender.cwnd + EPS)
        if window > MAX_WINDOW:
            raise ValueError(f"{st.flow.name}: cwnd is {st.flow.sender.cwnd:g} segments, beyond any window "
                             f"this simulation holds (MAX_WINDOW = {MAX_WINDOW}): a bug in the sender?")
        if rwnd is not None:
            window = min(window, rwnd)
        while st.flight < window:
            transmit(st, st.next_seq, now)
            st.next_seq += 1

    for st in states:
        at(st.flow.start, "start", st)
    for _ in range(MAX_EVENTS):
        if not events or events[0][0] > duration:
            break
        now, _, kind, args = heapq.heappop(events)
        if kind == "start":
            st, = args
            note(st, now)
            send_more(st, now)
        elif kind == "depart":
            st, seq = args
            if loss and rng.random() < loss:
                drops[0] += 1
                st.flow.drops += 1
            else:
                at(now + link.delay, "arrive", st, seq)
            if queue:
                nxt = queue.pop(0)
                queue_trace.append((now, len(queue)))
                at(now + 1 / link.rate, "depart", *nxt)
            else:
                busy[0] = False
        elif kind == "arrive":
            st, seq = args
            if seq == st.expected:
                st.expected += 1
                while st.expected in st.held:
                    st.held.discard(st.expected)
                    st.expected += 1
                st.flow.delivered = st.expected
                st.flow.deliveries.append((now, st.expected))
            elif seq > st.expected:
                st.held.add(seq)
            at(now + link.delay, "ack", st, st.expected)
        elif kind == "ack":
            st, ack = args
            sender = st.flow.sender
            if ack > st.snd_una:
                last = ack - 1
                if last not in st.resent and last in st.sent_at:      # Karn's rule
                    st.rto.update(now - st.sent_at[last])
                sender.on_ack(ack - st.snd_una)
                st.snd_una = ack
                st.next_seq = max(st.next_seq, ack)
                if st.flight:
                    start_timer(st, now)                                # 6298 5.3
                else:
                    st.timer = 0                                        # 6298 5.2
                note(st, now)
            elif ack == st.snd_una and st.flight and ack > st.recover:
                if sender.on_dup_ack(st.flight):
                    st.flow.losses.append((now, "3 dup ACKs"))
                    transmit(st, st.snd_una, now)
                note(st, now)
            send_more(st, now)
        elif kind == "timeout":
            st, timer = args
            if timer != st.timer or not st.flight:
                continue                                               # a timer since stopped or restarted
            st.flow.losses.append((now, "timeout"))
            st.flow.sender.on_timeout(st.flight)
            note(st, now)
            st.rto.back_off()                                          # 6298 5.5
            st.recover = st.next_seq - 1                               # RFC 6582 3.2: recover after a timeout
            st.next_seq = st.snd_una                                   # go back to the hole
            st.timer = 0
            transmit(st, st.next_seq, now)                             # 5.4, and 5.6 restarts the timer
            st.next_seq += 1
            send_more(st, now)
    return Run(link, duration, flows, queue_trace, drops[0])
