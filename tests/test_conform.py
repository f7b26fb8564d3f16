"""The conformance suite (issue 22): it passes what is right, fails what is
wrong by name, and says so to people and machines.

* mailkit's two servers pass every check, directly and through noise;
  ``python -m mailkit serve`` passes under ``conform server -- COMMAND``,
  durability (kill -9 after an OK) included;
* each deliberately wrong server (tests/wrong_servers.py) and client
  (tests/wrong_clients.py) fails the check named for its flaw;
* the 2017 client, run as a program, passes what it does right and fails
  ``client/silent-server`` (it waits for ever, as the real one did);
* the C server and client and the bash client in examples/ pass;
* the JUnit XML parses and counts right; Gradescope's results.json has
  the fields Gradescope reads; the matrix and its SVG.

No timed assertions: the checks' own waits are the suite's business, and
these tests only look at verdicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import USERS
from mailkit.conform import (
    CHECKS, CLIENT_CHECKS, AddressTarget, CommandTarget, gradescope_json, junit_xml, run_check,
    run_client_suite, run_suite, text_report,
)
from mailkit.conform.matrix import matrix_text, run_matrix
from mailkit.course.legacy2017 import Server2017
from mailkit.pictures.matrix import matrix_svg

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SERVE = [PY, "-m", "mailkit", "serve", "--port", "{port}", "--db", "{db}", "--users-file", "{users}", "--quiet"]
WRONG_SERVER = [PY, str(ROOT / "tests" / "wrong_servers.py")]
WRONG_CLIENT = [PY, str(ROOT / "tests" / "wrong_clients.py")]
EXAMPLE_CLIENT = [PY, str(ROOT / "examples" / "client.py"), "{host}", "{port}"]
CLIENT_2017 = [PY, "-m", "mailkit.course.client2017", "{host}", "{port}"]

sys.path.insert(0, str(Path(__file__).parent))
from wrong_clients import FLAWS as CLIENT_FLAWS  # noqa: E402
from wrong_servers import FLAWS as SERVER_FLAWS  # noqa: E402


def failing(suite) -> set[str]:
    return {r.id for r in suite.results if r.status != "pass" and r.status != "skip"}


# -- mailkit's servers pass -------------------------------------------------------------


def test_both_mailkit_servers_pass_every_check_directly_and_through_noise(server):
    suite = run_suite(AddressTarget(server.address, USERS), seed=7, strict=True)
    assert failing(suite) == set(), text_report(suite)
    assert suite.ok
    skipped = {r.id for r in suite.results if r.status == "skip"}
    assert skipped == {"durability/after-OK"}          # needs a server the suite can restart
    assert {r.mode for r in suite.results} == {"direct", "noise"}
    noisy = {r.name for r in suite.results if r.mode == "noise"}
    assert noisy == {name for name, c in CHECKS.items() if c.noise}


def test_mailkit_serve_started_by_the_suite_passes_durability_too():
    with CommandTarget(SERVE) as target:
        result = run_check("durability/after-OK", target, seed=3)
        assert target.starts == 2                      # killed with SIGKILL after the OK, started again
    assert result.status == "pass", result.message
    assert any("after the restart" in s.note for s in result.steps)


def test_every_check_names_the_section_it_tests():
    headings = set(re.findall(r"^#+ (.+)$", (ROOT / "docs" / "protocol.md").read_text(), re.M))
    protocol = set(re.findall(r"^#+ (.+)$", Path("/work/shared/PROTOCOL.md").read_text(), re.M)) \
        if Path("/work/shared/PROTOCOL.md").exists() else set()
    for c in [*CHECKS.values(), *CLIENT_CHECKS.values()]:
        section = c.section.replace("`", "")
        if section.startswith("PROTOCOL.md: "):
            if protocol:
                assert section.removeprefix("PROTOCOL.md: ") in protocol, c.name
        else:
            assert section in {h.replace("`", "") for h in headings}, (c.name, c.section)
        assert re.fullmatch(r"[a-z]+/[A-Za-z0-9-]+", c.name) and c.doc


# -- wrong servers fail their named check -------------------------------------------------


@pytest.mark.parametrize("flaw", [f for f in SERVER_FLAWS if f != "none"])
def test_each_wrong_server_fails_the_check_named_for_its_flaw(flaw):
    named = SERVER_FLAWS[flaw]
    with CommandTarget([*WRONG_SERVER, flaw, "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=11, only=[named], noise=False)
    [result] = suite.results
    assert result.status == "fail", f"{flaw}: {result.status} {result.message}"
    assert not suite.ok


def test_the_correct_twin_of_the_wrong_servers_passes_every_required_check_but_two_shoulds():
    with CommandTarget([*WRONG_SERVER, "none", "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=11, strict=True)
    # it compares the text after '#' as it is: no trailing newline, no uppercase hex
    assert failing(suite) == {"frame/trailing-newline", "frame/uppercase-checksum"}, text_report(suite)
    assert all(r.passed for r in suite.results if r.required)
    assert not suite.ok                  # --strict: a SHOULD that fails fails the run


def test_a_failure_shows_the_exchange_what_was_expected_and_the_section():
    with CommandTarget([*WRONG_SERVER, "no-checksum-check", "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=1, only=["frame/checksum-mismatch", "email/deliver"], noise=False)
    text = text_report(suite)
    assert "FAIL  frame/checksum-mismatch" in text and "PASS  email/deliver" in text
    block = text.split("FAIL  frame/checksum-mismatch")[1]
    assert ">>> sent" in block and "dAmaged" in block             # the damaged frame as it went out
    assert "<<< got  14 bytes: b'OK: Email Sent'" in block        # what came back instead of KO
    assert "EXPECTED: exactly KO, and nothing else" in block
    assert 'SEE:      docs/protocol.md, "Replies"' in block
    assert "2 required check(s) failed" not in text and "1 required check(s) failed" in text


def test_a_server_that_crashes_fails_one_check_and_is_started_again():
    with CommandTarget([*WRONG_SERVER, "crashes-on-hash-in-subject", "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=1, only=["email/hash-in-subject", "email/colon-in-body"], noise=False)
        assert target.starts == 2
    by = {r.id: r for r in suite.results}
    assert by["email/hash-in-subject"].status == "fail"
    assert "the server exited during this check (status 3)" in by["email/hash-in-subject"].message
    assert by["email/colon-in-body"].status == "pass"        # the next check met a fresh server


def test_the_2017_server_fails_what_mailkit_fixed():
    with Server2017({"alice": "wonderland", "bob": "builder"}) as old:
        target = AddressTarget(old.address)
        assert run_check("login/ok", target).status == "pass"
        # a bare KO for a wrong session id: a client would retry it for nothing
        assert run_check("frame/bad-session-id", target, sessions={}).status == "fail"


# -- clients ----------------------------------------------------------------------------


def test_the_example_client_passes_every_client_check():
    suite = run_client_suite(EXAMPLE_CLIENT, seed=2, strict=True)
    assert failing(suite) == set(), text_report(suite)
    assert len(suite.results) == len(CLIENT_CHECKS)


def test_the_2017_client_passes_what_it_does_right_and_hangs_on_a_silent_server():
    suite = run_client_suite(CLIENT_2017, seed=2)
    by = {r.name: r.status for r in suite.results}
    for name in ("client/login-bytes", "client/frame-checksum", "client/frame-fields",
                 "client/no-resend-after-OK", "client/resend-after-KO", "client/gives-up"):
        assert by[name] == "pass", (name, text_report(suite))
    assert by["client/silent-server"] == "fail"        # the real 2017 client waited for ever
    silent = next(r for r in suite.results if r.name == "client/silent-server")
    assert "still running when stopped" in text_report(suite) and silent.steps


@pytest.mark.parametrize("flaw", [f for f in CLIENT_FLAWS if f != "none"])
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


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """examples/server.c and client.c built with the system gcc into a private folder."""
    gcc = shutil.which("gcc")
    if gcc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gcc is missing under CI=true (.ci/run installs it)")
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("examples")
    for name, extra in (("server", ["-pthread"]), ("client", [])):
        subprocess.run([gcc, "-O2", "-Wall", "-Werror", *extra, "-o", str(out / name),
                        str(ROOT / "examples" / f"{name}.c")], check=True, capture_output=True)
    return out


def test_the_c_server_passes_every_check(built):
    with CommandTarget([str(built / "server"), "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=6, strict=True)
    assert failing(suite) == set(), text_report(suite)


def test_the_c_client_passes_every_client_check(built):
    suite = run_client_suite([str(built / "client"), "{host}", "{port}"], seed=6, strict=True)
    assert failing(suite) == set(), text_report(suite)


def test_the_bash_client_passes_every_required_client_check():
    assert shutil.which("sha1sum") and shutil.which("timeout")
    suite = run_client_suite(["bash", str(ROOT / "examples" / "client.sh"), "{host}", "{port}"], seed=6)
    assert failing(suite) == set(), text_report(suite)


# -- the matrix ---------------------------------------------------------------------------


def test_the_matrix_shows_who_interoperates_and_draws_it(built, tmp_path):
    with Server2017({"alice": "wonderland", "bob": "builder"}) as old:
        result = run_matrix([SERVE, [str(built / "server"), "{port}", "{users}", "{db}"], old.address],
                            [EXAMPLE_CLIENT, [str(built / "client"), "{host}", "{port}"]],
                            users={"alice": "wonderland", "bob": "builder"}, seed=5, mails=3, budget=15)
    assert len(result.cells) == 3 and all(len(row) == 2 for row in result.cells)
    assert [[c.status for c in row] for row in result.cells] == [["ok", "ok"]] * 3, matrix_text(result)
    text = matrix_text(result)
    assert "C1 = " in text and "3/3" in text
    svg = ET.fromstring(matrix_svg(result.rows, result.cols, result.cells))
    rects = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.find("{http://www.w3.org/2000/svg}title") is not None]
    assert len(rects) == 6


def test_the_matrix_marks_a_client_that_sends_mail_twice_as_broken():
    result = run_matrix([SERVE], [[*WRONG_CLIENT, "sends-email-twice", "{host}", "{port}"]],
                        users={"alice": "wonderland", "bob": "builder"}, seed=5, mails=2, budget=15)
    [[cell]] = result.cells
    copies = [int(n) for n in re.search(r"copies per mail \[([\d, ]+)\]", cell.detail).group(1).split(",")]
    assert cell.status == "broken" and max(copies) == 2        # a second copy (the link may damage one)



# -- docs/protocol.md says what the suite does ----------------------------------------------


DOCS = (ROOT / "docs" / "protocol.md").read_text()


def test_the_docs_list_every_check_with_its_level_and_section():
    rows = re.findall(r"^\| `([a-z]+/[A-Za-z0-9-]+)` \| (required|SHOULD) \| ([^|]+) \|", DOCS, re.M)
    listed = {name: (level, section.strip()) for name, level, section in rows}
    every = {**CHECKS, **CLIENT_CHECKS}
    assert set(listed) == set(every)
    for name, c in every.items():
        assert listed[name] == ("required" if c.required else "SHOULD", c.section), name


def test_the_c_sha1_gives_the_docs_test_vectors(built, tmp_path):
    main = tmp_path / "vectors.c"
    main.write_text('#include "sha1.h"\n#include <stdio.h>\n'
                    'int main(void) { static char buf[1 << 20]; size_t n = fread(buf, 1, sizeof buf, stdin);\n'
                    '  char hex[41]; sha1_hex(buf, n, hex); puts(hex); return 0; }\n')
    subprocess.run(["gcc", "-O2", "-I", str(ROOT / "examples"), "-o", str(tmp_path / "vectors"), str(main)],
                   check=True)
    section = DOCS.split("### SHA-1 test vectors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]*)` \| \d+ \| `([0-9a-f]{40})` \|$", section, re.M)
    assert len(rows) == 6
    for content, digest in [*rows, ("x" * 100_000, hashlib.sha1(b"x" * 100_000).hexdigest()),
                            ("y" * 55, hashlib.sha1(b"y" * 55).hexdigest()),      # padding edges
                            ("z" * 56, hashlib.sha1(b"z" * 56).hexdigest()),
                            ("", hashlib.sha1(b"").hexdigest())]:
        got = subprocess.run([str(tmp_path / "vectors")], input=content.encode(), capture_output=True, check=True)
        assert got.stdout.decode().strip() == digest, content[:20]


def test_the_commands_the_docs_show_run_as_written(built, tmp_path):
    """The conformance section's commands, verbatim, from a copy of the
    repository's examples/ (gcc writes its binaries there)."""
    block = DOCS.split("## Conformance: checking any server or client", 1)[1].split("```sh\n", 1)[1]
    commands = block.split("```", 1)[0].strip().splitlines()
    assert len(commands) == 9
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in commands:
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, f"{command}\n{run.stdout[-3000:]}\n{run.stderr[-2000:]}"
    svg = ET.parse(tmp_path / "matrix.svg").getroot()
    assert svg.tag.endswith("svg")


def test_a_budget_bounds_a_run_against_a_server_that_never_answers():
    """A grader's bound: past the budget, the checks left fail as not run."""
    with CommandTarget([*WRONG_SERVER, "waits-for-close", "{port}", "{users}", "{db}"]) as target:
        suite = run_suite(target, seed=1, noise=False, budget=5.0,
                          only=["login/ok", "login/bad-password", "frame/count", "frame/help", "email/deliver"])
    assert len(suite.results) == 5 and not suite.ok
    assert any("time budget (5 s) was spent" in r.message for r in suite.results)
    assert suite.results[0].status == "fail" and "time budget" not in suite.results[0].message


def test_probe_runs_one_named_check_as_a_grader_would(server, capsys):
    from mailkit.conform import probe
    users = {"alice": USERS["alice"], "bob": USERS["bob"]}
    a = probe("email/colon-in-subject", *server.address, seed=123, users=users)
    b = probe("email/colon-in-subject", *server.address, seed=124, users=users, noise=True)
    assert a.passed and b.passed and b.mode == "noise"
    assert capsys.readouterr() == ("", "")                       # nothing printed
    sent = [s.sent for s in a.steps]
    assert any(b"Re#3A lunch" in x for x in sent)                # the seeded text went out escaped
    again = probe("email/colon-in-subject", *server.address, seed=123, users=users)

    def email(result) -> list[bytes]:   # what the email said, without session id and checksum
        return [s.sent.split(b":email:", 1)[1].rsplit(b"#", 1)[0] for s in result.steps if b":email:" in s.sent]
    assert email(a) == email(again) and email(a)[0] != email(b)[0]   # the seed decides the text
    assert json.loads(json.dumps(a.as_dict()))["name"] == "email/colon-in-subject"
    wrong = probe("login/ok", *server.address, users={"alice": "nope", "bob": "x"})
    assert wrong.status == "fail" and wrong.expected == "OK: and a ten-digit session id"
