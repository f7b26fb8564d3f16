"""Round-trip time estimation and the retransmission timeout, as RFC 6298
says (notebook 07).  Pure functions on numbers: no sockets, no clock.

From each RTT sample R (seconds), in this order (RFC 6298, section 2)::

    first sample:  SRTT = R,  RTTVAR = R / 2
    later ones:    RTTVAR = (1 - beta) * RTTVAR + beta * |SRTT - R|   (with the OLD SRTT)
                   SRTT   = (1 - alpha) * SRTT + alpha * R
    RTO = SRTT + max(G, K * RTTVAR),  then at least MIN_RTO_S

with alpha = 1/8, beta = 1/4, K = 4, G the clock granularity.  Before the
first sample RTO is 1 s (section 2.1).  The RFC says RTO SHOULD be rounded up
to 1 s (2.4); Linux uses 200 ms instead (``TCP_RTO_MIN``; its RTTVAR term is
never below 200 ms, so its RTO is at least SRTT + 200 ms).  When the timer
expires, the RTO doubles (5.5, "back off").  Karn's rule (section 3): a
segment that was sent more than once gives no sample, since an ACK cannot
say which copy it answers; the backed-off RTO stays until a new sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ALPHA", "BETA", "K", "INITIAL_RTO_S", "MIN_RTO_S", "LINUX_MIN_RTO_S", "MAX_RTO_S",
           "RttEstimator", "Sample", "estimate"]

ALPHA = 1 / 8            # RFC 6298: the weight of a new sample in SRTT
BETA = 1 / 4             # RFC 6298: the weight of a new deviation in RTTVAR
K = 4                    # RFC 6298: RTO = SRTT + K * RTTVAR
INITIAL_RTO_S = 1.0      # RFC 6298, 2.1 (RFC 2988 had 3 s)
MIN_RTO_S = 1.0          # RFC 6298, 2.4: "rounded up to 1 second"
LINUX_MIN_RTO_S = 0.2    # Linux's TCP_RTO_MIN (HZ / 5)
MAX_RTO_S = 60.0         # RFC 6298, 2.5: a maximum MAY be placed, at least 60 s


@dataclass(frozen=True)
class Sample:
    """One measured round trip: *rtt* seconds from the first send to the
    reply; *resent* if it was sent more than once (Karn: ambiguous), after
    *timeouts* expiries of the timer (1 if resent and not said)."""

    rtt: float
    resent: bool = False
    timeouts: int = 0

    @property
    def expiries(self) -> int:
        """How many times the timer expired (each doubles the RTO)."""
        return max(self.timeouts, 1) if self.resent else 0


@dataclass
class RttEstimator:
    """SRTT, RTTVAR and RTO after each sample (RFC 6298).

    ``RttEstimator()`` follows the RFC (RTO at least 1 s);
    ``RttEstimator.linux()`` is Linux's way, simplified: RTO = SRTT +
    max(4·RTTVAR, 200 ms); and ``min_rto=0`` gives SRTT + 4·RTTVAR alone."""

    min_rto: float = MIN_RTO_S
    granularity: float = 0.0          # G: the clock's tick (0 for a fine clock)
    var_floor: float = 0.0            # Linux: its variation term is at least TCP_RTO_MIN
    srtt: float | None = None
    rttvar: float | None = None
    rto: float = INITIAL_RTO_S
    history: list = field(default_factory=list)   # (sample or None, srtt, rttvar, rto) per step

    @classmethod
    def linux(cls) -> "RttEstimator":
        return cls(min_rto=0.0, var_floor=LINUX_MIN_RTO_S)

    def update(self, rtt: float) -> float:
        """Take one valid sample; return the new RTO."""
        if rtt < 0:
            raise ValueError(f"an RTT sample is 0 s or more, not {rtt}")
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)   # old SRTT
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        spread = max(self.granularity, K * self.rttvar, self.var_floor)
        self.rto = min(MAX_RTO_S, max(self.min_rto, self.srtt + spread))
        self.history.append((rtt, self.srtt, self.rttvar, self.rto))
        return self.rto

    def back_off(self) -> float:
        """The timer expired: RTO doubles (RFC 6298, 5.5), up to MAX_RTO_S."""
        self.rto = min(MAX_RTO_S, self.rto * 2)
        self.history.append((None, self.srtt, self.rttvar, self.rto))
        return self.rto


def estimate(samples, *, karn: bool = True, min_rto: float = MIN_RTO_S) -> RttEstimator:
    """Run an estimator over *samples* (:class:`Sample` or plain seconds).
    With *karn*, a resent one gives no sample and backs the RTO off instead
    (once per expiry of the timer);
    without, it is taken as a sample like any other (the mistake Karn's rule
    avoids: its RTT includes the timeout, or belongs to the wrong copy)."""
    est = RttEstimator(min_rto=min_rto)
    for s in samples:
        s = s if isinstance(s, Sample) else Sample(float(s))
        if s.resent and karn:
            for _ in range(s.expiries):
                est.back_off()
        else:
            est.update(s.rtt)
    return est
