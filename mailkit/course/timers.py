"""Silence: timers, RTT and pipelining on real sockets (notebook 07).

The numbers a notebook prints from real runs vary with the machine's load,
so these helpers print what does not: counts, inbox contents, comparisons
(``True``), and times in milliseconds (which the notebooks' check masks).
The pure parts are elsewhere: :mod:`mailkit.rtt` (RFC 6298) and
:mod:`mailkit.pipelining` (a virtual-clock simulation).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import pipelining
from ..client import MailClient
from ..noise import NoisyLink
from ..pictures import Ladder, Shown
from ..pictures.timers import RttPlot, ThroughputPlot
from ..rtt import RttEstimator, Sample
from ..server import MailServer
from ..text import plural

__all__ = ["Lab", "inbox_of", "rtt_samples", "rtt_plot", "rdt30_ladder", "throughput_plot",
           "Timed", "timed_send", "PipelineMeasurement", "measure_window"]

USERS = {"alice": "wonderland", "bob": "builder"}
CHEAP_SCRYPT_N = 16      # throwaway accounts: a cheap password hash keeps logins quick


class Lab:
    """A mail server and a NoisyLink in front of it, started together,
    stopped together (``with Lab(...) as lab`` or ``lab.stop()``)."""

    def __init__(self, server_class=MailServer, **link):
        self.server = server_class(users=USERS, scrypt_n=CHEAP_SCRYPT_N).start()
        self.link = NoisyLink(self.server.address, **link).start()

    @staticmethod
    def link_to(server, **link) -> NoisyLink:
        """A started NoisyLink in front of any running *server*."""
        return NoisyLink(server.address, **link).start()

    def client(self, user: str = "alice", **kw) -> MailClient:
        """A client of the LINK, logged in (its login passes the link cleanly)."""
        self.link.plan_next()
        client = MailClient(*self.link.address, **kw)
        client.login(user, USERS[user])
        return client

    def inbox(self, user: str = "bob") -> list[str]:
        return inbox_of(self.server, user)

    def stop(self) -> None:
        self.link.stop()
        self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def inbox_of(server, user: str = "bob") -> list[str]:
    """The subjects in *user*'s inbox, read from the server's store."""
    return [m.subject for m in server.store.messages(user)]


@dataclass(repr=False)
class Timed(Shown):
    """What one send cost: attempts, outcome, and the time it took."""

    outcome: str
    attempts: int
    seconds: float
    at_least: float

    @property
    def text(self) -> str:
        return (f"{self.outcome} after {plural(self.attempts, 'attempt')}, in "
                f"{self.seconds * 1000:.0f} ms; at least the {self.at_least:g} s timer: "
                f"{self.seconds >= self.at_least}")


def timed_send(client: MailClient, subject: str, at_least: float) -> Timed:
    """Send one mail to bob and time it (the wait is the client's own timer)."""
    before = len(client.transcript)
    start = time.perf_counter()
    try:
        outcome = client.send("bob", subject, "timed")
    except OSError as exc:
        outcome = type(exc).__name__
    seconds = time.perf_counter() - start
    return Timed(outcome, len(client.transcript) - before, seconds, at_least)


# -- RTT ------------------------------------------------------------------------


def rtt_samples(transcript) -> list[Sample]:
    """One :class:`Sample` per command: from its first send to its reply
    (all attempts' durations added up), *resent* if it took more than one
    attempt, with the number of its attempts that timed out."""
    samples: list[list] = []
    for e in transcript:
        if e.command == "login":
            continue
        if e.attempt == 1:
            samples.append([0.0, 0, 0])
        samples[-1][0] += e.duration
        samples[-1][1] += 1
        samples[-1][2] += e.timed_out
    return [Sample(t, n > 1, timeouts) for t, n, timeouts in samples]


def rtt_plot(samples, title: str = "RTT samples through a delaying NoisyLink") -> RttPlot:
    """Run RFC 6298 (Karn's rule included) over *samples*, with the RFC's
    1 s floor and Linux's 200 ms one, and plot both against the samples."""
    rfc, linux = RttEstimator(), RttEstimator.linux()
    bare = RttEstimator(min_rto=0.0)
    rows = []
    for s in samples:
        for est in (rfc, linux, bare):
            if s.resent:
                for _ in range(s.expiries):          # each expiry doubles the RTO
                    est.back_off()
            else:
                est.update(s.rtt)
        if bare.srtt is None:                   # resent before any clean sample: nothing yet
            rows.append((s.rtt, s.resent, None, None, rfc.rto, linux.rto))
        else:
            rows.append((s.rtt, s.resent, bare.srtt, bare.srtt + 4 * bare.rttvar, rfc.rto, linux.rto))
    return RttPlot(rows, title)


# -- rdt3.0 as a ladder ---------------------------------------------------------------


def rdt30_ladder(transcript, events, timeout: float,
                 title: str = "rdt3.0 over mail: alternating bit and a timer") -> Ladder:
    """A :class:`~mailkit.course.rdt.SeqClient`'s emails through a
    NoisyLink as a ladder: each attempt, where the link lost it, the
    timer's expiry on the sender's lifeline, and the receiver's verdict.
    *events* are the link's, one per connection (the login's first)."""
    steps = []
    sender, receiver = "sender (SeqClient)", "receiver (SeqServer)"
    for e, ev in zip(transcript[1:], events[1:]):
        subject = e.request.decode("utf-8", "replace").split(":")[3]
        label = f"{subject} (attempt {e.attempt})"
        steps.append((sender, sender, f"send; start timer ({timeout:g} s)"))
        if ev.lost_request:
            steps.append((sender, receiver, label, "lost", "lost: no reply, no FIN"))
        else:
            steps.append((sender, receiver, label))
            reply = ev.reply.decode("utf-8", "replace").rpartition("#")[0]
            kind = "lost" if ev.lost_reply else "OK"
            note = "the reply is lost: the mail WAS delivered" if ev.lost_reply else ""
            if "duplicate" in reply:
                note = "a duplicate: acknowledged again, not delivered"
            steps.append((receiver, sender, reply, kind, note))
        if e.timed_out or not e.reply:          # SeqClient: its recv() timed out
            steps.append((sender, sender, f"timeout ({timeout:g} s): send the same again"))
        else:
            steps.append((sender, sender, "ACK for this seq: stop timer, flip the bit"))
    return Ladder([sender, receiver], steps, title)


# -- pipelining -----------------------------------------------------------------------


def throughput_plot(windows=range(1, 11), *, loss: float = 0.1, seed: int = 1, **model) -> ThroughputPlot:
    """Theory (no loss) beside the simulation: without loss, and with GBN and
    SR at *loss*, for each window."""
    windows = list(windows)
    theory = [pipelining.throughput(w, model.get("bits", 8000), model.get("rate", 1e6),
                                    model.get("rtt", 0.040)) for w in windows]
    series = {
        "simulated, no loss": [pipelining.simulate("gbn", window=w, **model).throughput for w in windows],
        f"GBN, loss {loss:g}": [pipelining.simulate("gbn", window=w, loss=loss, seed=seed, **model).throughput
                                for w in windows],
        f"SR, loss {loss:g}": [pipelining.simulate("sr", window=w, loss=loss, seed=seed, **model).throughput
                               for w in windows],
    }
    rtt = model.get("rtt", 0.040)
    bits, rate = model.get("bits", 8000), model.get("rate", 1e6)
    return ThroughputPlot(windows, theory, series,
                          f"L = {bits:g} bits, R = {rate / 1e6:g} Mbit/s, RTT = {rtt * 1000:g} ms")


@dataclass(repr=False)
class PipelineMeasurement(Shown):
    """Real mails through a delaying link, *window* of them in flight."""

    window: int
    mails: int
    delay: float
    seconds: float
    tolerance: float

    @property
    def theory(self) -> float:
        """ceil(mails / window) rounds of one delay each (L/R is about 0 on loopback)."""
        return -(-self.mails // self.window) * self.delay

    @property
    def text(self) -> str:
        close = self.theory <= self.seconds <= self.theory * (1 + self.tolerance)
        return (f"window {self.window}: {self.mails} mails in {self.seconds * 1000:.0f} ms, "
                f"theory {self.theory * 1000:.0f} ms; within {self.tolerance:.0%} of theory: {close}")


def measure_window(lab: Lab, window: int, *, mails: int = 8, tolerance: float = 0.25) -> PipelineMeasurement:
    """Send *mails* real mails from alice to bob through *lab*'s link (a
    fixed ``delay``), *window* at a time (threads, one connection each)."""
    client = lab.client()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=window) as pool:
        list(pool.map(lambda i: client.send("bob", f"w{window} mail {i}", "pipelined"), range(mails)))
    seconds = time.perf_counter() - start
    return PipelineMeasurement(window, mails, lab.link.delay, seconds, tolerance)
