"""mailkit.rtt (RFC 6298) and mailkit.pipelining (stop-and-wait, GBN, SR on
a virtual clock): pure functions, table-driven, plus notebook 07's helpers
on real sockets (mailkit.course.timers) and its slider form."""
from __future__ import annotations

import math

import pytest

from mailkit import pipelining
from mailkit.rtt import INITIAL_RTO_S, MAX_RTO_S, RttEstimator, Sample, estimate


# -- RFC 6298 --------------------------------------------------------------------

def test_before_any_sample_the_rto_is_one_second():
    assert RttEstimator().rto == INITIAL_RTO_S == 1.0


def test_first_sample_sets_srtt_and_half_of_it_as_rttvar():
    est = RttEstimator(min_rto=0.0)
    assert est.update(0.1) == pytest.approx(0.1 + 4 * 0.05)
    assert (est.srtt, est.rttvar) == (0.1, 0.05)


def test_later_samples_update_rttvar_from_the_old_srtt():
    est = RttEstimator(min_rto=0.0)
    est.update(0.100)
    est.update(0.200)
    # RTTVAR = 3/4 * 0.05 + 1/4 * |0.1 - 0.2| = 0.0625 (with the OLD SRTT, 0.1)
    assert est.rttvar == pytest.approx(0.0625)
    assert est.srtt == pytest.approx(0.1125)
    assert est.rto == pytest.approx(0.1125 + 0.25)


@pytest.mark.parametrize("min_rto, samples, rto", [
    (1.0, [0.02] * 10, 1.0),                   # the RFC's floor
    (0.0, [0.02] * 1, 0.06),                   # without it: SRTT + 4 * RTTVAR = 0.02 + 0.04
])
def test_the_floor(min_rto, samples, rto):
    assert estimate(samples, min_rto=min_rto).rto == pytest.approx(rto)


def test_linux_keeps_its_variation_term_at_least_200_ms():
    est = RttEstimator.linux()
    for _ in range(50):
        est.update(0.010)
    assert est.rto == pytest.approx(est.srtt + 0.2)
    assert est.rto < 1.0


def test_karn_skips_resent_samples_and_backs_off():
    samples = [0.05, 0.05, Sample(0.35, resent=True), Sample(0.65, resent=True), 0.05]
    karn = estimate(samples)
    rtos = [h[3] for h in karn.history]
    assert rtos == [1.0, 1.0, 2.0, 4.0, 1.0]
    assert all(h[0] != 0.35 for h in karn.history)
    naive = estimate(samples, karn=False, min_rto=0.0)
    assert naive.srtt > karn.srtt                       # the timeouts inflate SRTT


def test_backing_off_stops_at_the_maximum():
    est = RttEstimator()
    for _ in range(20):
        est.back_off()
    assert est.rto == MAX_RTO_S


def test_a_negative_sample_is_refused():
    with pytest.raises(ValueError, match="0 s or more"):
        RttEstimator().update(-0.1)


# -- pipelining ----------------------------------------------------------------------

MODEL = dict(bits=8000, rate=1e6, rtt=0.040)


def test_kurose_ross_stop_and_wait_example():
    assert pipelining.utilisation(1, 8000, 1e9, 0.030) == pytest.approx(0.008 / 30.008)


@pytest.mark.parametrize("protocol", pipelining.PROTOCOLS)
@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
def test_without_loss_the_simulation_meets_the_theory(protocol, window):
    run = pipelining.simulate(protocol, window=window, mails=120, **MODEL)
    tx = 8000 / 1e6
    # 120 / N rounds of RTT + L/R, plus the last packets' place in the window
    assert run.time == pytest.approx(120 / window * (0.040 + tx) + (window - 1) * tx)
    assert run.sends == 120 and run.timeouts == 0
    assert run.delivered == list(range(120))
    assert run.utilisation == pytest.approx(pipelining.utilisation(window, **MODEL), rel=0.03)


@pytest.mark.parametrize("window", [6, 8, 16])
def test_a_full_link_sends_back_to_back(window):
    run = pipelining.simulate("sr", window=window, mails=120, **MODEL)
    assert run.time == pytest.approx(120 * 0.008 + 0.040)
    assert pipelining.utilisation(window, **MODEL) == 1.0


@pytest.mark.parametrize("protocol", pipelining.PROTOCOLS)
def test_under_loss_every_mail_is_delivered_once_in_order(protocol):
    run = pipelining.simulate(protocol, window=5, loss=0.2, seed=3, **MODEL)
    assert run.delivered == list(range(120))
    assert run.lost > 0 and run.timeouts > 0 and run.sends == 120 + run.resends


def test_go_back_n_resends_more_than_selective_repeat():
    gbn = pipelining.simulate("gbn", window=8, loss=0.1, seed=1, **MODEL)
    sr = pipelining.simulate("sr", window=8, loss=0.1, seed=1, **MODEL)
    assert gbn.sends > sr.sends
    assert sr.sends == 120 + sr.lost          # SR resends exactly what was lost (ACKs are never lost)
    assert sr.throughput > gbn.throughput


def test_same_seed_same_run_and_a_log():
    a = pipelining.simulate("gbn", window=4, loss=0.3, seed=9, log_limit=20, **MODEL)
    b = pipelining.simulate("gbn", window=4, loss=0.3, seed=9, log_limit=20, **MODEL)
    assert (a.time, a.sends, a.log) == (b.time, b.sends, b.log)
    assert len(a.log) == 20 and any("lost" in what for _, what in a.log)
    assert pipelining.simulate("gbn", window=4, loss=0.3, seed=10, **MODEL).sends != a.sends


@pytest.mark.parametrize("kw, fragment", [
    (dict(protocol="abp"), "'gbn' or 'sr'"), (dict(window=0), "1 or more"), (dict(loss=1.0), "probability"),
])
def test_bad_settings(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        pipelining.simulate(**kw)


# -- notebook 07's helpers and form ---------------------------------------------------

def test_throughput_plot_text_is_the_table_and_a_png():
    from mailkit.course.timers import throughput_plot
    plot = throughput_plot(range(1, 4), loss=0.1, seed=1)
    lines = repr(plot).splitlines()
    assert lines[0].startswith("L = 8000 bits, R = 1 Mbit/s, RTT = 40 ms")
    assert lines[2].split()[:3] == ["1", "20.8", "20.8"]
    assert plot._repr_png_().startswith(b"\x89PNG")


def test_rtt_samples_and_the_plot_on_real_sockets():
    from mailkit.course.timers import Lab, rtt_plot, rtt_samples
    with Lab(delay=0.01) as lab:
        client = lab.client(timeout=0.5)
        lab.link.plan_next(lose_reply=True)          # count is resent after one timeout
        client.count()
        client.count()
        samples = rtt_samples(client.transcript)
    assert [s.resent for s in samples] == [True, False]
    assert samples[0].rtt > samples[1].rtt             # the first includes the timeout
    plot = rtt_plot(samples)
    text = repr(plot)
    assert "resent: no sample (Karn)" in text.splitlines()[2]
    assert "2000.0 ms" in text.splitlines()[2]        # the RFC's RTO backed off from 1 s
    assert plot._repr_png_().startswith(b"\x89PNG")


def test_rdt30_ladder_from_a_real_run():
    from mailkit.course import SeqClient, SeqServer
    from mailkit.course.timers import USERS, Lab, inbox_of, rdt30_ladder
    receiver = SeqServer(users=USERS, scrypt_n=16).start()
    link = Lab.link_to(receiver)
    try:
        sender = SeqClient(*link.address, timeout=0.3)
        link.plan_next()
        sender.login("alice", USERS["alice"])
        link.plan_next(lose_reply=True)
        sender.send("bob", "Tea?", "x")
        text = repr(rdt30_ladder(sender.transcript, link.events, 0.3))
        subjects = inbox_of(receiver)
    finally:
        link.stop()
        receiver.stop()
    assert subjects == ["[seq 0] Tea?"]                # once, though sent twice
    assert "the reply is lost: the mail WAS delivered" in text
    assert "timeout (0.3 s): send the same again" in text
    assert "a duplicate: acknowledged again, not delivered" in text


def test_pipeline_form_runs_the_three_and_leaves_its_fields():
    from mailkit.forms import pipeline_form
    form = pipeline_form(loss=0.1, rtt_ms=40, window=4)
    assert "(nothing yet)" in form.text
    result = form.run_with(window=8, loss=0.2)
    assert form.window.value == 4 and math.isclose(form.loss.value, 0.1)
    text = repr(result).splitlines()
    assert text[0] == "theory without loss: 125.0 mails/s"
    assert text[1].startswith("stop-and-wait") and text[2].startswith("GBN, window 8")
    assert text[3].startswith("SR, window 8")
    form.click()
    assert "GBN, window 4" in form.text
    assert "mailkit-pipeline-form" in form._dom_classes


def test_each_expiry_of_the_timer_doubles_the_rto():
    est = estimate([0.05, Sample(0.65, resent=True, timeouts=2), Sample(0.35, resent=True)])
    assert [h[3] for h in est.history] == [1.0, 2.0, 4.0, 8.0]
