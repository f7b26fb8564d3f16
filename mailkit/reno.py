"""TCP Reno's reactions, as RFC 5681 gives them, counted in segments
(notebook 09, lab 9), and a sender without any (:class:`FixedWindow`).
:mod:`mailkit.congestion` runs them through a bottleneck; :func:`replay`
feeds one a list of events. Pure, standard library only.
"""

from __future__ import annotations

__all__ = ["Reno", "FixedWindow", "replay", "INITIAL_SSTHRESH", "DUPACK_THRESHOLD", "MIN_SSTHRESH"]

DUPACK_THRESHOLD = 3        # RFC 5681 3.2: the third duplicate ACK means a loss
INITIAL_SSTHRESH = 1e9      # RFC 5681 3.1: "SHOULD be set arbitrarily high"
MIN_SSTHRESH = 2            # RFC 5681 eq. (4): at least 2*SMSS


class Reno:
    """TCP Reno's reactions (RFC 5681), counted in segments.

    * ``on_ack(acked)``: a new cumulative ACK for *acked* more segments.
      In fast recovery it ends it: ``cwnd = ssthresh`` (3.2 step 6,
      "deflating" the window). Otherwise slow start below ssthresh: cwnd
      grows by one segment per ACK (3.1, eq. 2: by min(N, SMSS)), which
      doubles it every round trip; congestion avoidance at or above it:
      ``cwnd += 1/cwnd`` per ACK (eq. 3), about one segment per round trip.
    * ``on_dup_ack(flight)``: a duplicate ACK with *flight* segments
      outstanding. The third (3.2 steps 2-3): ``ssthresh = max(flight/2,
      2)`` (eq. 4), retransmit the missing segment (fast retransmit: returns
      True) and ``cwnd = ssthresh + 3`` (the three segments that left the
      network). Each further one in fast recovery: ``cwnd += 1`` (step 4).
    * ``on_timeout(flight)``: the retransmission timer expired.
      ``ssthresh = max(flight/2, 2)`` (eq. 4) and ``cwnd = 1``, the loss
      window (3.1): slow start again from one segment. (RFC 5681 3.1 holds
      ssthresh when the same segment times out again; this method is not
      told, and halves again: a simplification the notebook states.)
    """

    name = "Reno"

    def __init__(self, initial_cwnd: float = 1, ssthresh: float = INITIAL_SSTHRESH):
        # RFC 5681 3.1 allows an initial window of 2 to 4 segments (RFC 6928: 10,
        # Linux's); Kurose & Ross start at 1, and so does the course by default.
        self.cwnd = float(initial_cwnd)
        self.ssthresh = float(ssthresh)
        self.dupacks = 0
        self.in_recovery = False

    def on_ack(self, acked: int) -> None:
        self.dupacks = 0
        if self.in_recovery:
            self.in_recovery = False
            self.cwnd = self.ssthresh                 # 3.2 step 6: deflate
        elif self.cwnd < self.ssthresh:
            self.cwnd += 1                            # slow start, eq. (2)
        else:
            self.cwnd += 1 / self.cwnd                # congestion avoidance, eq. (3)

    def on_dup_ack(self, flight: int) -> bool:
        self.dupacks += 1
        if self.in_recovery:
            self.cwnd += 1                            # 3.2 step 4: inflate
            return False
        if self.dupacks == DUPACK_THRESHOLD:
            self.ssthresh = max(flight / 2, MIN_SSTHRESH)   # eq. (4)
            self.cwnd = self.ssthresh + DUPACK_THRESHOLD    # 3.2 step 3
            self.in_recovery = True
            return True                               # fast retransmit
        return False

    def on_timeout(self, flight: int) -> None:
        self.ssthresh = max(flight / 2, MIN_SSTHRESH)       # eq. (4)
        self.cwnd = 1.0                                     # the loss window, 3.1
        self.dupacks = 0
        self.in_recovery = False


class FixedWindow:
    """A sender without congestion control: always *window* segments in
    flight, whatever is lost (it still resends what its timer or three
    duplicate ACKs say is lost). Roughly what TCPs did before Jacobson's
    1988 algorithms, when the only limit was the receiver's window."""

    name = "fixed window"

    def __init__(self, window: int = 64):
        self.cwnd = float(window)
        self.ssthresh = float(window)
        self.dupacks = 0

    def on_ack(self, acked: int) -> None:
        self.dupacks = 0

    def on_dup_ack(self, flight: int) -> bool:
        self.dupacks += 1
        return self.dupacks == DUPACK_THRESHOLD

    def on_timeout(self, flight: int) -> None:
        self.dupacks = 0



def replay(sender, events) -> list[tuple]:
    """Feed *sender* a list of events and return its state after each:
    ``("ack", acked)``, ``("dup", flight)`` or ``("timeout", flight)`` →
    ``(cwnd, ssthresh, retransmit)`` rounded to 6 places (``retransmit``:
    what ``on_dup_ack`` returned, else False). Lab 9 compares a student's
    sender with :class:`Reno` this way, event by event."""
    out = []
    for kind, value in events:
        retransmit = False
        if kind == "ack":
            sender.on_ack(value)
        elif kind == "dup":
            retransmit = bool(sender.on_dup_ack(value))
        elif kind == "timeout":
            sender.on_timeout(value)
        else:
            raise ValueError(f"an event is ('ack', n), ('dup', flight) or ('timeout', flight), not {kind!r}")
        out.append((round(float(sender.cwnd), 6), round(float(sender.ssthresh), 6), retransmit))
    return out
