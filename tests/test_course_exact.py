"""The course's factual claims, re-computed: each test re-runs what a
notebook states, so the text and the code cannot drift apart."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from mailkit import detect, pipelining
from mailkit.course.checksums import CRC32_GENERATOR, crc32_blind_flips

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def source(notebook: str, cell_id: str) -> str:
    nb = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))
    [cell] = [c for c in nb["cells"] if c.get("id") == cell_id]
    return "".join(cell["source"])


# -- 04: CRC-32 does not catch every odd number of flips ---------------------

@pytest.mark.parametrize("start", [0, 3, 27, 60])
def test_fifteen_flips_in_the_generators_pattern_leave_crc32_unchanged(start):
    data = b"0123456789:email:bob:Lunch:Shall we meet at noon by the fountain?"
    flips = crc32_blind_flips(data, start=start)
    assert len(flips) == 15 == bin(CRC32_GENERATOR).count("1")
    damaged = detect.flip(data, flips)
    assert damaged != data
    assert zlib.crc32(damaged) == zlib.crc32(data)
    # ...and not by chance: one flip fewer is caught
    assert zlib.crc32(detect.flip(data, flips[1:])) != zlib.crc32(data)


def test_notebook_04_no_longer_promises_every_odd_number_of_errors():
    text = source("04-bit-flips-and-retry.ipynb", "b64efa52")
    [crc_row] = [line for line in text.splitlines() if line.startswith("| CRC-32")]
    assert "odd" not in crc_row
    assert "Not every odd number of flips" in text and "15 terms" in text


# -- 07: the losses of Go-Back-N, counted from the run ------------------------

def losses(run):
    seen, first, again = set(), 0, 0
    for _, what in run.log:
        if what.startswith("send"):
            n = int(what.split()[1])
            if "lost" in what:
                first, again = (first + 1, again) if n not in seen else (first, again + 1)
            seen.add(n)
    return first, again


def test_07s_count_of_gbns_lost_sends_is_the_runs_own():
    gbn = pipelining.simulate("gbn", window=4, loss=0.1, seed=1, log_limit=10**6)
    sr = pipelining.simulate("sr", window=4, loss=0.1, seed=1, log_limit=10**6)
    first, again = losses(gbn)
    text = source("07-silence-timers-rtt-pipelining.ipynb", "d3a8d9d6")
    assert f"sent {gbn.sends}" in text and f"sent {sr.sends} packets" in text
    assert f"{gbn.lost} of its sends were lost: {first} first sends and {again} resends" in text
    assert f"each of its {sr.lost} lost packets once more" in text and sr.sends == sr.mails + sr.lost


def test_a_window_of_one_names_its_protocol():
    assert repr(pipelining.simulate("sr", window=1, mails=5)).startswith("SR, window 1 (stop-and-wait):")


def test_the_pipeline_form_at_window_1_shows_gbn_and_sr_too():
    from mailkit.forms import pipeline_form
    lines = repr(pipeline_form().run_with(window=1)).splitlines()
    assert [line.split(":")[0] for line in lines[1:]] == [
        "stop-and-wait", "GBN, window 1 (stop-and-wait)", "SR, window 1 (stop-and-wait)"]


# -- 08: what Wireshark shows ------------------------------------------------

def test_the_handshake_view_writes_the_window_scale_as_wireshark_does():
    from mailkit.course_tcp import handshake_view, load_capture
    text = handshake_view(load_capture().connection("login")).text
    assert "WS=1024 (shift 10)" in text and "WS=10," not in text


# -- quizzes ------------------------------------------------------------------

def test_quiz_08_works_without_importing_notebook_08s_module_first():
    code = ("from mailkit.course import quiz\n"
            "import sys\n"
            "assert 'mailkit.course_tcp' not in sys.modules\n"
            "print(quiz('08', 'a', 1, 'b').text.splitlines()[-1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "· 3 of 3 right"
