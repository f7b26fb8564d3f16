"""Stop-and-wait, Go-Back-N and Selective Repeat on a virtual clock
(notebook 07): a discrete-event simulation, so a run takes milliseconds,
repeats exactly with its seed, and needs no sleeping.

The model (Kurose & Ross, chapter 3.4): a sender sends *mails* packets of
*bits* bits each over a link of *rate* bit/s; each takes ``bits / rate``
seconds to put on the link (L/R), one after another, then half the *rtt*
(the propagation delay, there and back) to arrive.  The receiver answers
each packet at once with an ACK, which takes the other half of the RTT
(ACKs are so small that their L/R is left out).  Each data packet is lost
with probability *loss* (drawn from a seeded ``random.Random``); ACKs are
not lost in this model.

* ``"gbn"``, Go-Back-N: at most *window* unacknowledged packets; cumulative
  ACKs; ONE timer, for the oldest unacknowledged packet; when it expires,
  every unacknowledged packet is sent again.  The receiver keeps only the
  next packet in order and drops the rest.
* ``"sr"``, Selective Repeat: a timer per packet, and only that packet is
  sent again; the receiver buffers out-of-order packets inside its window
  and ACKs each one.
* A window of 1 is stop-and-wait (rdt3.0), for either.

Without loss, ``utilisation(window, ...)`` is the theory:
U = min(1, N·(L/R) / (RTT + L/R)).  Where the course simplifies: a mail
here is one packet; mailkit's real protocol sends each mail on its own TCP
connection, and TCP's own window counts bytes, not mails.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

__all__ = ["utilisation", "throughput", "Run", "simulate", "gbn_receiver", "PROTOCOLS"]

PROTOCOLS = ("gbn", "sr")
MAX_EVENTS = 2_000_000    # a bound on any one run (a loss of 1.0 would never end)


def gbn_receiver(expected: int, n: int) -> tuple[bool, int | None, int]:
    """Go-Back-N's receiver (Kurose & Ross 3.4.3): what it does with packet
    *n* while it expects packet *expected*.  Returns ``(deliver, ack,
    next_expected)``: it delivers only the packet it expects, and ACKs the
    last packet it has in order (cumulatively), also when another arrives;
    before the first packet arrives there is nothing to ACK (``None``)."""
    if n == expected:
        return True, n, expected + 1
    return False, (expected - 1 if expected else None), expected


def utilisation(window: int, bits: float, rate: float, rtt: float) -> float:
    """U = min(1, N·(L/R) / (RTT + L/R)): the fraction of time the sender
    is busy sending, without loss."""
    t = bits / rate
    return min(1.0, window * t / (rtt + t))


def throughput(window: int, bits: float, rate: float, rtt: float) -> float:
    """Mails per second without loss: U·R/L."""
    return utilisation(window, bits, rate, rtt) * rate / bits


@dataclass
class Run:
    """What one simulated transfer did."""

    protocol: str
    window: int
    mails: int
    bits: float
    rate: float
    rtt: float
    loss: float
    timeout: float
    seed: int
    time: float = 0.0                 # virtual seconds until the last ACK arrived
    sends: int = 0                    # packets put on the link, resends included
    lost: int = 0
    timeouts: int = 0
    delivered: list = field(default_factory=list)   # packet numbers, in the order delivered
    log: list = field(default_factory=list)         # (time, what) of the first log_limit events
    finished: bool = True

    @property
    def throughput(self) -> float:
        """Mails delivered per (virtual) second."""
        return len(self.delivered) / self.time if self.time else 0.0

    @property
    def utilisation(self) -> float:
        """The fraction of the time spent sending NEW mails: throughput·L/R."""
        return self.throughput * self.bits / self.rate

    @property
    def resends(self) -> int:
        return self.sends - self.mails

    def __repr__(self) -> str:
        return self.summary()

    def summary(self, name: str | None = None) -> str:
        """One line: *name* (by default the protocol and window; a window of
        1 is stop-and-wait, and says so), then what the run did."""
        if name is None:
            name = f"{self.protocol.upper()}, window {self.window}"
            if self.window == 1:
                name += " (stop-and-wait)"
        return (f"{name}: {self.mails} mails in {self.time * 1000:.1f} virtual ms, "
                f"{self.throughput:.1f} mails/s, U = {self.utilisation:.3f}; "
                f"{self.sends} sends ({self.lost} lost, {self.timeouts} timeouts)")


def simulate(protocol: str = "gbn", *, window: int = 1, mails: int = 120, bits: float = 8000,
             rate: float = 1e6, rtt: float = 0.040, loss: float = 0.0,
             timeout: float | None = None, seed: int = 0, log_limit: int = 0,
             receiver=gbn_receiver) -> Run:
    """Send *mails* packets with *protocol* (``"gbn"`` or ``"sr"``) and a
    *window*; return a :class:`Run`.  *timeout* defaults to 2·(RTT + L/R).
    The same arguments give the same run.  *receiver* is Go-Back-N's
    receiver rule (see :func:`gbn_receiver`; notebook 07 has students write
    it); ``"sr"`` ignores it."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol is 'gbn' or 'sr', not {protocol!r}")
    if window < 1 or mails < 1:
        raise ValueError("window and mails are 1 or more")
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss is a probability from 0 up to (not including) 1, not {loss}")
    tx = bits / rate
    timeout = 2 * (rtt + tx) if timeout is None else timeout
    run = Run(protocol, window, mails, bits, rate, rtt, loss, timeout, seed)
    rng = random.Random(seed)
    events: list = []
    order = 0

    def at(when: float, kind: str, *data) -> None:
        nonlocal order
        order += 1                       # ties: first scheduled, first done
        heapq.heappush(events, (when, order, kind, data))

    def log(now: float, what: str) -> None:
        if len(run.log) < log_limit:
            run.log.append((now, what))

    link_free = 0.0
    timer_gen: dict = {}                 # GBN: key "base"; SR: packet number -> generation

    def transmit(now: float, n: int) -> float:
        nonlocal link_free
        start = max(now, link_free)
        link_free = start + tx
        run.sends += 1
        if rng.random() < loss:
            run.lost += 1
            log(start, f"send {n} (lost)")
        else:
            log(start, f"send {n}")
            at(link_free + rtt / 2, "arrive", n)
        return start

    def start_timer(key, when: float) -> None:
        timer_gen[key] = timer_gen.get(key, 0) + 1
        at(when + timeout, "timeout", key, timer_gen[key])

    # sender and receiver state
    base, next_seq = 0, 0
    acked: set = set()                   # SR
    expected = 0                         # receiver: GBN's next in order / SR's rcv_base
    buffered: set = set()                # SR receiver

    def fill(now: float) -> None:
        nonlocal next_seq
        while next_seq < mails and next_seq < base + window:
            start = transmit(now, next_seq)
            if protocol == "sr":
                start_timer(next_seq, start)
            elif next_seq == base:
                start_timer("base", start)
            next_seq += 1

    fill(0.0)
    handled = 0
    now = 0.0
    while events and base < mails:
        handled += 1
        if handled > MAX_EVENTS:
            run.finished = False
            break
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":                      # a data packet at the receiver
            n = data[0]
            if protocol == "gbn":
                deliver, ack, expected = receiver(expected, n)
                if deliver:
                    run.delivered.append(n)
                if ack is not None:
                    at(now + rtt / 2, "ack", ack)
            else:
                if expected <= n < expected + window:
                    buffered.add(n)
                    while expected in buffered:
                        buffered.discard(expected)
                        run.delivered.append(expected)
                        expected += 1
                if n < expected + window:
                    at(now + rtt / 2, "ack", n)       # also re-ACK an old one
        elif kind == "ack":
            n = data[0]
            log(now, f"ack {n}")
            if protocol == "gbn":
                if n >= base:
                    base = n + 1
                    timer_gen["base"] = timer_gen.get("base", 0) + 1     # stop the timer
                    if base < next_seq:
                        start_timer("base", now)
            else:
                if base <= n < next_seq:
                    acked.add(n)
                    timer_gen[n] = timer_gen.get(n, 0) + 1
                    while base in acked:
                        acked.discard(base)
                        base += 1
            fill(now)
        elif kind == "timeout":
            key, gen = data
            if timer_gen.get(key) != gen:
                continue                                  # stopped or restarted since
            run.timeouts += 1
            log(now, f"timeout ({'oldest' if key == 'base' else key})")
            if protocol == "gbn":
                first = None
                for n in range(base, next_seq):           # go back N: all of them again
                    start = transmit(now, n)
                    first = start if first is None else first
                start_timer("base", first)
            else:
                start_timer(key, transmit(now, key))
    run.time = now
    return run
