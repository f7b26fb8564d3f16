"""The conformance suite against servers (issue 22): mailkit's two servers
pass every check, directly and through noise, and `conform server -- COMMAND`
with durability; each wrong server (tests/wrong_servers.py) fails the check
named for its flaw; a failure shows its exchange; a budget bounds a run; the
probe API a grader uses.  The clients are in test_conform_clients.py, the
examples, the matrix and the docs' commands in test_conform_examples.py (three
files, so that `make test`'s workers share them).

No timed assertions: the checks' own waits are the suite's business, and
these tests only look at verdicts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from conftest import USERS, failing, SERVE, WRONG_SERVER
from mailkit.conform import (
    CHECKS, CLIENT_CHECKS, AddressTarget, CommandTarget, run_check,
    run_suite, text_report,
)
from mailkit.course.legacy2017 import Server2017

ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(Path(__file__).parent))
from wrong_servers import FLAWS as SERVER_FLAWS  # noqa: E402



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


@pytest.mark.slow      # every server check, its budgets spent on the two it fails: 11-12 s
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


@pytest.mark.slow      # waits for the budget it tests: ~8 s
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
