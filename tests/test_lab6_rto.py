"""Lab 6's timer is RFC 6298's: the hidden check ``drifting-delay`` (every
reply held longer than the one before, past the first timeout, then a lost
request) run here, in this process, against the lab's own solution and
against the wrong timers it exists for; and the two helpers the checks
judge with (``rto_waits`` for the time budgets, ``follows_rfc6298`` for
the sender's SRTT, RTTVAR and RTO).  tests/test_labs.py grades the whole
lab in the sandbox and runs every hidden check for 20 seeds;
tests/test_labs67.py grades these wrong timers there too."""

from __future__ import annotations

import io
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailkit.labs import probe
from mailkit.labs.silence import MAX_SAMPLE_S, TimerBudget, follows_rfc6298, rto_waits
from mailkit.rtt import RttEstimator
from conftest import PerThreadStdout
from test_lab6_catches import cells, namespace

T = "solution-TimedSender"
KARN_LINE = ("                if tries == 0:      # Karn: a request sent more than once gives no sample\n"
             "                    self.sample(")

# what is wrong: edits of the solution's TimedSender cell (old, new)
WRONG_TIMERS = {
    "a fixed timeout (the RTO is computed, never used)":
        [("attempt(self.address, request, self.rto)", "attempt(self.address, request, self.timeout)")],
    "no back-off (the RTO stays when the timer expires)":
        [("        self.rto = 2 * self.rto\n", "        pass\n")],
    "no Karn: a resent request sampled from its first send (the waits counted in)":
        [("        for tries in range(1 + self.retries):\n            began = time.monotonic()\n",
          "        began = time.monotonic()\n        for tries in range(1 + self.retries):\n"),
         (KARN_LINE, "                if True:\n                    self.sample(")],
    "no Karn: a resent request sampled from its last attempt":
        [(KARN_LINE, "                if True:\n                    self.sample(")],
    "RTTVAR from the new SRTT (the order of RFC 6298, 2.3, swapped)":
        [("            self.rttvar = 3 / 4 * self.rttvar + 1 / 4 * abs(self.srtt - rtt)   # beta = 1/4, the OLD srtt\n"
          "            self.srtt = 7 / 8 * self.srtt + 1 / 8 * rtt                         # alpha = 1/8\n",
          "            self.srtt = 7 / 8 * self.srtt + 1 / 8 * rtt\n"
          "            self.rttvar = 3 / 4 * self.rttvar + 1 / 4 * abs(self.srtt - rtt)\n")],
    "no floor: the RTO falls below the timeout":
        [("self.rto = max(self.timeout, self.srtt + 4 * self.rttvar)", "self.rto = self.srtt + 4 * self.rttvar")],
}
# which line of drifting-delay's output each must turn False
CAUGHT_BY = {
    "a fixed timeout (the RTO is computed, never used)": "every reply OK",
    "no back-off (the RTO stays when the timer expires)": "resent: no sample (Karn)",
    "no Karn: a resent request sampled from its first send (the waits counted in)": "resent: no sample (Karn)",
    "no Karn: a resent request sampled from its last attempt": "resent: no sample (Karn)",
    "RTTVAR from the new SRTT (the order of RFC 6298, 2.3, swapped)": "answered at once: one sample each",
    "no floor: the RTO falls below the timeout": "",     # which line depends on the machine's round trips
}
SEEDS = 20          # the solution's draws
WRONG_SEEDS = 2     # each wrong timer's


@pytest.fixture(scope="module")
def drift_outputs():
    """drifting-delay's output for the solution (SEEDS seeds) and each wrong
    timer (WRONG_SEEDS seeds), all run at once (they wait on timers, not on the CPU)."""
    runs = [(None, seed) for seed in range(SEEDS)]
    runs += [(what, seed) for what in WRONG_TIMERS for seed in range(WRONG_SEEDS)]
    source = cells()["check-drifting-delay"]
    stdout = PerThreadStdout(sys.stdout)

    def one(run):
        what, seed = run
        stdout.local.buffer = io.StringIO()
        ns = namespace(**({T: WRONG_TIMERS[what]} if what else {}))
        probe.run_locally(source, ns, seed)
        return stdout.local.buffer.getvalue()

    old, sys.stdout = sys.stdout, stdout
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            outputs = list(pool.map(one, runs))
    finally:
        sys.stdout = old
    return dict(zip(runs, outputs))


def _verdicts(out: str) -> dict[str, bool]:
    return {line.rsplit(":", 1)[0]: line.endswith("True") for line in out.splitlines() if line}


@pytest.mark.slow
def test_the_rfc6298_solution_passes_drifting_delay_for_20_draws(drift_outputs):
    for seed in range(SEEDS):
        verdicts = _verdicts(drift_outputs[None, seed])
        assert len(verdicts) == 4 and all(verdicts.values()), (seed, drift_outputs[None, seed])


@pytest.mark.slow
@pytest.mark.parametrize("what", list(WRONG_TIMERS))
def test_a_wrong_timer_fails_drifting_delay(drift_outputs, what):
    for seed in range(WRONG_SEEDS):
        verdicts = _verdicts(drift_outputs[what, seed])
        assert len(verdicts) == 4 and not all(verdicts.values()), (what, seed, drift_outputs[what, seed])
        if CAUGHT_BY[what]:
            line = next(k for k in verdicts if k.startswith(CAUGHT_BY[what]))
            assert verdicts[line] is False, (what, seed, drift_outputs[what, seed])


def test_the_wrong_timers_pass_the_older_checks():
    """Why drifting-delay exists: a sender with no back-off, or without
    Karn's rule, or with a fixed timeout delivers every mail of lost-requests
    in time (the old checks cannot tell)."""
    for what in ("a fixed timeout (the RTO is computed, never used)",
                 "no back-off (the RTO stays when the timer expires)",
                 "no Karn: a resent request sampled from its last attempt"):
        out = io.StringIO()
        import contextlib
        with contextlib.redirect_stdout(out):
            probe.run_locally(cells()["check-lost-requests"], namespace(**{T: WRONG_TIMERS[what]}), 1)
        assert all(_verdicts(out.getvalue()).values()), (what, out.getvalue())


# -- the helpers, on numbers ------------------------------------------------------

def test_rto_waits_doubles_per_loss_and_comes_down_after_a_sample():
    assert rto_waits(0.2, [0, 0]) == 0
    assert rto_waits(0.2, [0, 1]) == pytest.approx(0.2)
    assert rto_waits(0.2, [0, 3]) == pytest.approx(0.2 + 0.4 + 0.8)
    assert rto_waits(0.2, [0, 2, 0, 1]) == pytest.approx(0.2 + 0.4 + 0.2)     # a sample between: down again
    assert rto_waits(0.2, [0, 2, 1]) == pytest.approx(0.2 + 0.4 + 0.8)        # none between: it stays backed off


def _budget(timeout, mails, slack=0.0):
    """A TimerBudget fed (lost, seconds the grader timed) per mail, on a fake clock."""
    budget, now = TimerBudget(timeout, slack=slack), [0.0]
    for lost, seconds in mails:
        with budget.mail(lost=lost, clock=lambda: now[0]):
            now[0] += seconds
    return budget


def test_the_timer_budget_follows_the_round_trips_the_grader_timed():
    """On quick round trips it is rto_waits; a slow first round trip R (a
    loaded machine) gives an RFC 6298 sender an RTO of 3 R, and the budget
    allows that sender's waits, mail by mail, as RFC 6298 works them out."""
    quick = _budget(0.2, [(0, 0.004), (2, 0.5), (0, 0.003), (1, 0.3)], slack=1.5)
    assert quick.seconds == pytest.approx(1.5 + rto_waits(0.2, [0, 2, 0, 1]))
    est = RttEstimator(min_rto=0.2, rto=0.2)
    est.update(0.15)                                        # the SYN and the first mail took 0.15 s
    first = est.rto
    est.update(0.01)                                        # mail 2, answered at once
    assert first == pytest.approx(0.45)
    slow = _budget(0.2, [(0, 0.15), (2, 2.0), (0, 0.01), (2, 2.0)])
    assert slow.seconds == pytest.approx(first * 3 + est.rto * 3)
    assert slow.seconds > rto_waits(0.2, [0, 2, 0, 2]) + 1.5  # what failed a correct sender under load (CI, stop 26)


def test_the_timer_budget_credits_at_most_max_sample_s():
    """A send the grader timed at 5 s counts as a MAX_SAMPLE_S round trip:
    a sender slow on purpose buys no more than the RTO that gives (3 R after
    a first sample), and each loss after it costs that RTO, doubling."""
    budget = _budget(0.25, [(0, 5.0)])
    assert budget.rto == pytest.approx(3 * MAX_SAMPLE_S)
    assert _budget(0.25, [(0, 5.0), (2, 9.0)]).seconds == pytest.approx(3 * 3 * MAX_SAMPLE_S)
    assert _budget(0.25, [(0, 0.01), (0, 5.0)]).rto < 5 * MAX_SAMPLE_S


def _states(samples, timeout):
    """(srtt, rttvar, rto) before and after each step of mailkit.rtt's estimator
    (the course's RFC 6298, notebook 07) with the lab's floor and first RTO."""
    est = RttEstimator(min_rto=timeout, rto=timeout)
    states = [(est.srtt, est.rttvar, est.rto)]
    for step in samples:
        if step is None:
            est.back_off()
        else:
            est.update(step)
        states.append((est.srtt, est.rttvar, est.rto))
    return states


def test_follows_rfc6298_agrees_with_the_courses_estimator():
    s = _states([0.05, 0.3, None, None, 0.4], timeout=0.2)
    assert follows_rfc6298(s[0], s[1], timeout=0.2, attempts=1, held=0.04)          # the first sample
    assert follows_rfc6298(s[1], s[2], timeout=0.2, attempts=1, held=0.25)
    assert follows_rfc6298(s[2], s[4], timeout=0.2, attempts=3, held=0.25)          # two expiries, no sample
    assert follows_rfc6298(s[4], s[5], timeout=0.2, attempts=1, held=0.4)


def test_follows_rfc6298_refuses_what_the_rfc_does_not_say():
    s = _states([0.05, 0.3, None], timeout=0.2)
    assert not follows_rfc6298(s[1], s[2], timeout=0.2, attempts=1, held=0.35)      # shorter than the delay
    assert not follows_rfc6298(s[1], s[3], timeout=0.2, attempts=1, held=0.25)      # an expiry is no sample
    assert not follows_rfc6298(s[2], s[2], timeout=0.2, attempts=2, held=0.25)      # resent: no back-off
    assert not follows_rfc6298(s[1], s[2], timeout=0.2, attempts=2, held=0.25)      # resent: sampled (no Karn)
    srtt, rttvar, rto = s[2]
    new_srtt = (7 / 8) * s[1][0] + (1 / 8) * 0.3
    wrong_var = 0.75 * s[1][1] + 0.25 * abs(new_srtt - 0.3)                         # with the new SRTT
    assert not follows_rfc6298(s[1], (new_srtt, wrong_var, max(0.2, new_srtt + 4 * wrong_var)),
                               timeout=0.2, attempts=1, held=0.25)
    assert not follows_rfc6298(s[0], (0.01, 0.005, 0.03), timeout=0.2, attempts=1, held=0.0)   # below the floor
    assert follows_rfc6298(s[0], (0.01, 0.005, 0.2), timeout=0.2, attempts=1, held=0.0)
    for junk in (None, ("a", "b", "c"), (1, 2)):
        assert not follows_rfc6298(s[1], junk, timeout=0.2, attempts=1, held=0.0)
