"""Lab 7's round-trip time and throughput: the made-up captures' times,
the answers the grader compares with, the lab's own solution, and wrong
readings that the checks' tolerance rejects."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mailkit import pcap
from mailkit.labs import tcp_captures as T
from mailkit.pcap import ACK, SYN, read_segments

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labs" / "07-read-a-capture.ipynb"
SEEDS = range(40)


def solutions() -> dict:
    """The lab's own handshake_rtt and throughput, run from its source cells."""
    nb = json.loads(LAB.read_text(encoding="utf-8"))
    namespace = {"read_segments": read_segments, "SYN": SYN, "ACK": ACK}
    for cell in nb["cells"]:
        if cell["id"] in ("solution-handshake_rtt", "solution-throughput"):
            exec("".join(cell["source"]), namespace)      # noqa: S102 - the repository's own lab
    return namespace


def capture(tmp_path, seed, **choices):
    path = tmp_path / f"c{seed}.pcap"
    data, truth = T.capture_bytes(random.Random(seed), **choices)
    path.write_bytes(data)
    return path, truth


def right(truth, rtt, rate) -> bool:
    """What the hidden check accepts."""
    return (T.close(rtt, truth.handshake_rtt, spread=2 * T.TIME_RESOLUTION)
            and T.close(rate, truth.throughput, spread=1e-4 * truth.throughput))


def test_the_other_answers_did_not_move_when_times_were_modelled():
    _, truth = T.capture_bytes(random.Random(T.EXAMPLE_SEED), closes_first="client", refused_first=False)
    assert (truth.client_isn, truth.server_isn, truth.request_segments) == (404285457, 2503055453, 3)
    assert (truth.refused_port, truth.refused_isn) == (54964, 2051011345)


def test_times_rise_and_the_rtt_is_the_paths(tmp_path):
    for seed in SEEDS:
        path, truth = capture(tmp_path, seed)
        times = [s.time for s in read_segments(path)]
        assert times == sorted(times)
        assert T.RTT_RANGE[0] * 0.9 <= truth.handshake_rtt <= T.RTT_RANGE[1] * 1.1 + 0.001


def test_the_labs_solution_meets_the_grader_on_every_capture(tmp_path):
    ns = solutions()
    for seed in SEEDS:
        path, truth = capture(tmp_path, seed)
        assert right(truth, ns["handshake_rtt"](path), ns["throughput"](path)), seed


def last_ack(segments, client, server, end):
    return next(s for s in segments if s.sport == server and s.dport == client and s.has(ACK) and s.ack == end)


def readings(path):
    """Plausible wrong readings: (what, rtt, rate)."""
    segs = read_segments(path)
    syn_ack = next(s for s in segs if s.has(SYN) and s.has(ACK))
    client, server = syn_ack.dport, syn_ack.sport
    syn = next(s for s in segs if s.has(SYN) and not s.has(ACK) and s.sport == client)
    third = next(s for s in segs if s.sport == client and s.time > syn_ack.time)
    data = [s for s in segs if s.sport == client and s.dport == server and s.length > 0]
    end = (data[-1].seq + data[-1].length) % 2**32
    ack = last_ack(segs, client, server, end)
    first_ack = next(s for s in segs if s.sport == server and s.time > data[0].time and s.has(ACK))
    size = sum(s.length for s in data)
    rtt = syn_ack.time - syn.time
    rate = size / (ack.time - data[0].time)
    first_syn = next(s for s in segs if s.has(SYN) and not s.has(ACK))
    return [
        ("RTT to the client's ACK (the third segment)", third.time - syn.time, rate),
        ("RTT from the first SYN (the refused one, when it comes first)",
         syn_ack.time - first_syn.time, rate),
        ("RTT in milliseconds", rtt * 1000, rate),
        ("throughput up to the last data segment, not its ACK", rtt,
         size / (data[-1].time - data[0].time) if len(data) > 1 else float("inf")),
        ("throughput up to the server's first ACK", rtt, size / (first_ack.time - data[0].time)),
        ("throughput counting headers (40 bytes a segment)", rtt,
         (size + 40 * len(data)) / (ack.time - data[0].time)),
        ("throughput from the SYN", rtt, size / (ack.time - syn.time)),
        ("throughput in bits per second", rtt, rate * 8),
    ]


@pytest.mark.parametrize("which", range(8))
def test_wrong_readings_are_rejected(tmp_path, which):
    # The hidden check makes three captures, the first with the refused attempt
    # wherever rng puts it; a wrong reading must fail at least one of three.
    failures = 0
    for seed in range(3):
        path, truth = capture(tmp_path, 100 + seed, refused_first=bool(seed % 2 == 0))
        what, rtt, rate = readings(path)[which]
        failures += not right(truth, rtt, rate)
    assert failures, what


def test_the_pcap_keeps_what_the_answers_were_computed_from(tmp_path):
    path, truth = capture(tmp_path, 3)
    frames = pcap.read_pcap(path)
    assert all(abs(t - round(t, 6)) < 1e-7 for t, _ in frames)
