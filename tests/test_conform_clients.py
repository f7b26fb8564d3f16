"""The conformance suite against clients (issue 22): the example client passes;
the 2017 client, run as a program, passes what it does right and fails
``client/silent-server`` (it waits for ever, as the real one did); each wrong
client (tests/wrong_clients.py) fails the check named for its flaw; the JUnit
XML and Gradescope's results.json parse and count; the command line's exit
status.  No timed assertions: only verdicts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import failing, PY, SERVE, WRONG_SERVER, WRONG_CLIENT, EXAMPLE_CLIENT, CLIENT_2017
from mailkit.conform import (
    CLIENT_CHECKS, CommandTarget, gradescope_json, junit_xml, run_client_suite, run_suite, text_report,
)

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(Path(__file__).parent))
from wrong_clients import FLAWS as CLIENT_FLAWS  # noqa: E402



def test_the_example_client_passes_every_client_check():
    suite = run_client_suite(EXAMPLE_CLIENT, seed=2, strict=True)
    assert failing(suite) == set(), text_report(suite)
    assert len(suite.results) == len(CLIENT_CHECKS)


@pytest.mark.slow      # the silent-server check waits its 12 s budget for a client that hangs
def test_the_2017_client_passes_what_it_does_right_and_hangs_on_a_silent_server():
    suite = run_client_suite(CLIENT_2017, seed=2)
    by = {r.name: r.status for r in suite.results}
    for name in ("client/login-bytes", "client/frame-checksum", "client/frame-fields",
                 "client/no-resend-after-OK", "client/resend-after-KO", "client/gives-up"):
        assert by[name] == "pass", (name, text_report(suite))
    assert by["client/silent-server"] == "fail"        # the real 2017 client waited for ever
    silent = next(r for r in suite.results if r.name == "client/silent-server")
    assert "still running when stopped" in text_report(suite) and silent.steps


@pytest.mark.parametrize("flaw", [pytest.param(f, marks=pytest.mark.slow) if f == "waits-for-ever" else f
                                  for f in CLIENT_FLAWS if f != "none"])   # waits-for-ever: a 12 s budget
def test_each_wrong_client_fails_the_check_named_for_its_flaw(flaw):
    named = CLIENT_FLAWS[flaw]
    suite = run_client_suite([*WRONG_CLIENT, flaw, "{host}", "{port}"], seed=4, only=[named])
    [result] = suite.results
    assert result.status == "fail", (flaw, result.message)


def test_an_uppercase_checksum_gets_a_hint():
    suite = run_client_suite([*WRONG_CLIENT, "uppercase-checksum", "{host}", "{port}"], seed=4,
                             only=["client/frame-checksum"])
    assert "uppercase hex: mailkit's servers answer 'ERROR: checksum in uppercase hex'" in suite.results[0].message
    newline = run_client_suite([*WRONG_CLIENT, "newline-after-frame", "{host}", "{port}"], seed=4,
                               only=["client/frame-checksum"])
    assert "a line end after the checksum: mailkit's servers accept one" in newline.results[0].message


# -- output for machines ----------------------------------------------------------------


def test_junit_and_gradescope_outputs_parse_and_count(tmp_path):
    with CommandTarget([*WRONG_SERVER, "bare-ko-for-errors", "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=5, strict=True,
                          only=["frame/bad-session-id", "frame/count", "frame/uppercase-checksum", "durability/after-OK"],
                          noise=False)
    root = ET.fromstring(junit_xml(suite))
    [ts] = root.findall("testsuite")
    cases = ts.findall("testcase")
    assert int(ts.get("tests")) == len(cases) == len(suite.results) == 4
    failures = {c.get("classname") + "." + c.get("name") for c in cases if c.find("failure") is not None}
    # the flaw, and a SHOULD this server misses too (it compares checksums as lowercase text)
    assert failures == {"conform.server.frame.bad-session-id", "conform.server.frame.uppercase-checksum"}
    assert int(ts.get("failures")) == 2
    assert "EXPECTED" in cases[[c.get("name") for c in cases].index("bad-session-id")].find("failure").text

    results = json.loads(gradescope_json(suite))
    assert {"score", "tests"} <= set(results)
    for test in results["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(test)
    scores = {t["name"].split(" ")[0]: (t["score"], t["max_score"]) for t in results["tests"]}
    assert scores["frame/bad-session-id"] == (0.0, 1.0) and scores["frame/count"] == (1.0, 1.0)
    assert scores["frame/uppercase-checksum"] == (0.0, 0.0)     # a SHOULD scores nothing
    assert results["score"] == sum(t["score"] for t in results["tests"])


def test_the_command_line_writes_every_format_and_its_exit_status_says_pass_or_fail(tmp_path):
    junit, gs = tmp_path / "junit.xml", tmp_path / "results.json"
    run = subprocess.run([PY, "-m", "mailkit", "conform", "server", "--seed", "9", "--json",
                          "--junit", str(junit), "--gradescope", str(gs),
                          "--", *WRONG_SERVER, "one-recv-1024", "{port}", "{users}", "{db}"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert report["seed"] == 9 and not report["ok"]
    assert "stream/large-frame" in {r["check"] for r in report["results"] if r["status"] == "fail"}
    assert ET.parse(junit).getroot().tag == "testsuites"
    assert json.loads(gs.read_text())["tests"]
    ok = subprocess.run([PY, "-m", "mailkit", "conform", "server", "--no-noise", "--check", "login/ok",
                         "--", *SERVE], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(r"^seed \d+ \(run again with --seed \d+", ok.stdout, re.M)


# -- examples/ in C and bash --------------------------------------------------------------


def test_a_client_that_prints_without_end_is_read_within_bounds():
    """A client's output is kept up to MAX_OUTPUT_BYTES and the rest read and
    dropped (it never blocks on a full pipe): 8 MB then exit 0, and `yes`,
    stopped at the budget."""
    import sys
    from mailkit.conform.clients import MAX_OUTPUT_BYTES, run_program
    big = [sys.executable, "-c", "import sys; sys.stdout.write('x' * (8 << 20))"]
    out, status = run_program(big, ("127.0.0.1", 9), "alice\n", budget=60)
    assert status == 0 and out.startswith("x" * MAX_OUTPUT_BYTES)
    assert out.endswith(f"[{(8 << 20) - MAX_OUTPUT_BYTES} more bytes of output dropped: the first {MAX_OUTPUT_BYTES} are kept]")
    out, status = run_program(["yes"], ("127.0.0.1", 9), "", budget=1)
    assert status is None and len(out) < MAX_OUTPUT_BYTES + 100 and "more bytes of output dropped" in out
