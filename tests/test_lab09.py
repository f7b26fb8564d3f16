"""Lab 9 (congestion control): wrong solutions, each graded below full with
the check that catches it named, and a solution that calls mailkit's own
Reno, flagged.  (test_labs.py grades every lab's student version and its
pasted-back solution, and runs every hidden check for 20 drawn inputs:
lab 9 is among them.)"""

from __future__ import annotations

import pytest

from mailkit.labs import release
from test_labs import LABS, _wrong, grade_variants, needs_sandbox

L9 = "09-congestion"

# (lab, what is wrong, {solution cell: code}, a check that must fail)
WRONG_09 = [
    (L9, "no slow start: congestion avoidance from the first ACK",
     _wrong(L9, "RenoSender", ("        elif self.cwnd < self.ssthresh:\n            self.cwnd += 1\n", "")),
     "events-per-run"),
    (L9, "cwnd halves on every duplicate ACK",
     _wrong(L9, "RenoSender", ("        self.dupacks += 1\n        if self.in_recovery:",
                               "        self.dupacks += 1\n        self.cwnd = max(self.cwnd / 2, 1)\n        if self.in_recovery:")),
     "fast-retransmit"),
    (L9, "no fast retransmit: waits for the timeout",
     _wrong(L9, "RenoSender", ("        if self.dupacks == 3:", "        if False:")),
     "events-per-run"),
    (L9, "a timeout sets cwnd to half the flight instead of one segment",
     _wrong(L9, "RenoSender", ("        self.cwnd = 1.0\n", "        self.cwnd = self.ssthresh\n")),
     "timeout"),
    (L9, "ssthresh from cwnd, not from the flight (eq. 4 misread)",
     _wrong(L9, "RenoSender", ("            self.ssthresh = max(flight / 2, 2)\n            self.cwnd = self.ssthresh + 3\n",
                               "            self.ssthresh = max(self.cwnd / 2, 2)\n            self.cwnd = self.ssthresh + 3\n")),
     "recovery-per-run"),
    (L9, "fast recovery never ends: a new ACK keeps the inflated window",
     _wrong(L9, "RenoSender", ("            self.in_recovery = False\n            self.cwnd = self.ssthresh\n",
                               "            self.in_recovery = False\n")),
     "recovery-per-run"),
    (L9, "a timeout leaves fast recovery on",
     _wrong(L9, "RenoSender", ("        self.dupacks = 0\n        self.in_recovery = False\n        ### END SOLUTION",
                               "        self.dupacks = 0\n        ### END SOLUTION")),
     "recovery-per-run"),
    (L9, "no inflation: further duplicate ACKs in fast recovery leave cwnd alone",
     _wrong(L9, "RenoSender", ("        if self.in_recovery:\n            self.cwnd += 1\n            return False",
                               "        if self.in_recovery:\n            return False")),
     "recovery-per-run"),
    (L9, "congestion avoidance adds a whole segment per ACK: no additive increase",
     _wrong(L9, "RenoSender", ("            self.cwnd += 1 / self.cwnd\n", "            self.cwnd += 1\n")),
     "slow-start"),
    (L9, "Tahoe, not Reno: the third duplicate ACK drops cwnd to one segment",
     _wrong(L9, "RenoSender", ("            self.cwnd = self.ssthresh + 3\n", "            self.cwnd = 1.0\n")),
     "fast-retransmit"),
    (L9, "a new ACK does not reset the count of duplicates: no second fast retransmit",
     _wrong(L9, "RenoSender", ("        self.dupacks = 0\n        if self.in_recovery:\n            self.in_recovery = False",
                               "        if self.in_recovery:\n            self.in_recovery = False")),
     "recovery-per-run"),
    (L9, "ssthresh without eq. 4's floor of two segments",
     _wrong(L9, "RenoSender", ("            self.ssthresh = max(flight / 2, 2)\n            self.cwnd = self.ssthresh + 3\n",
                               "            self.ssthresh = flight / 2\n            self.cwnd = self.ssthresh + 3\n"),
            ("        self.ssthresh = max(flight / 2, 2)\n        self.cwnd = 1.0\n",
             "        self.ssthresh = flight / 2\n        self.cwnd = 1.0\n")),
     "timeout"),
    (L9, "half an odd flight rounded down (flight // 2)",
     _wrong(L9, "RenoSender", ("max(flight / 2, 2)", "max(flight // 2, 2)")),
     "events-per-run"),
]

KIT_09 = [
    (L9, {"RenoSender": "from mailkit import congestion\n\n\nclass RenoSender(congestion.Reno):\n"
                        "    def __init__(self, initial_cwnd=1, ssthresh=INITIAL_SSTHRESH):\n"
                        "        super().__init__(initial_cwnd, ssthresh)\n"}, "Reno"),
]


def test_at_least_four_wrong_solutions():
    assert len(WRONG_09) >= 4


@pytest.mark.parametrize("index", range(len(WRONG_09)), ids=[what for _, what, _, _ in WRONG_09])
def test_a_wrong_solution_compiles_and_fails_its_check_here(index):
    """Without a sandbox: the wrong sender, run through the named check's
    cell (visible) or probe (hidden, for 20 drawn seeds, as test_labs runs
    the solution's) in this process, fails it every time.  (Measured the
    same way, each hidden check catches each entry in 20 of 20 draws,
    except: no slow start, recovery-per-run 18/20; a timeout leaves fast
    recovery on, events-per-run 16/20; ssthresh without the floor,
    recovery-per-run 4/20 and bottleneck-per-run 2/20 (events-per-run draws
    flights of 1 to 3 now and then for it: 20/20); flight // 2,
    recovery-per-run 19/20.)"""
    import contextlib
    import io
    from mailkit.labs import load_lab
    from mailkit.labs.notebook import is_check, is_solution, solution_name
    from mailkit.labs.probe import run_locally
    _, what, code, catcher = WRONG_09[index]
    lab = load_lab(LABS / f"{L9}.ipynb")
    namespace: dict = {}
    for cell in lab.nb.cells:
        if cell.cell_type == "code" and not is_check(cell):
            source = code.get(solution_name(cell), cell.source) if is_solution(cell) else cell.source
            exec(compile(source, what, "exec"), namespace)
    check = next(c for c in lab.nb.cells if is_check(c) and c.metadata["mailkit"]["check"] == catcher)
    reference = "".join(o.get("text", "") for o in check.outputs)
    for seed in range(20 if check.metadata["mailkit"].get("hidden") else 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if check.metadata["mailkit"].get("hidden"):
                run_locally(check.source, dict(namespace), seed)
            else:
                exec(compile(check.source, catcher, "exec"), dict(namespace))
        assert out.getvalue() != reference, (what, seed)


@pytest.fixture(scope="module")
def wrong_gradebook(tmp_path_factory):
    released = tmp_path_factory.mktemp("release")
    release([LABS / f"{L9}.ipynb"], released, check=False)
    entries = WRONG_09 + [(lab, "kit", code, "") for lab, code, _ in KIT_09]
    return grade_variants(released, entries, tmp_path_factory.mktemp("wrong09"))


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", range(len(WRONG_09)), ids=[what for _, what, _, _ in WRONG_09])
def test_a_wrong_solution_is_graded_below_full(wrong_gradebook, index):
    lab_id, what, _, catcher = WRONG_09[index]
    result = wrong_gradebook.result(f"s{index:02d}", lab_id)
    assert result.problem == "" and result.notes == [], (what, result.notes)
    failed = [c.name for c in result.checks if not c.passed]
    print(f"{what}: {result.points}/{result.max_points}, failed {failed}")
    assert catcher in failed, (what, failed)
    assert result.points < result.max_points


@pytest.mark.slow
@needs_sandbox
def test_calling_mailkits_reno_is_flagged(wrong_gradebook):
    lab_id, _, name = KIT_09[0]
    result = wrong_gradebook.result(f"s{len(WRONG_09):02d}", lab_id)
    assert any(f"uses mailkit's {name}" in flag for flag in result.flags), result.flags
    # it works (flagged for a person to look at); only the visible run's
    # printed name differs ("Reno 1": the subclass keeps Reno's name)
    assert [c.name for c in result.checks if not c.passed] == ["bottleneck"]
    for i, (lab, *_) in enumerate(WRONG_09):
        assert wrong_gradebook.result(f"s{i:02d}", lab).flags == []
