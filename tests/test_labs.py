"""The labs and the tools that release and check them (mailkit.labs).

The expensive part (a kernel per notebook) runs once per module: every
lab's student version and the same version with its solutions pasted back
are graded together, two at a time, and the tests read the gradebook.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import nbformat
import pytest

from mailkit.labs import find_labs, grade, load_lab, release
from mailkit.labs.__main__ import main
from mailkit.labs.notebook import (
    BEGIN, END, LabError, is_check, is_solution, read_notebook, solution_name, stub_source,
    student_version,
)
from mailkit.labs.sanitize import patterns
from mailkit.labs import sandbox
from conftest import PerThreadStdout

# Grading runs sandboxed (bubblewrap, as root): CI installs it (.ci/run) and
# must run these; elsewhere they skip if the machine cannot sandbox.
needs_sandbox = pytest.mark.skipif(bool(sandbox.available()) and os.environ.get("CI") != "true",
                                   reason=f"no sandbox here: {sandbox.available()}")

ROOT = Path(__file__).resolve().parent.parent
LABS = ROOT / "labs"
LAB_IDS = [p.stem for p in sorted(LABS.glob("*.ipynb"))]
TIMEOUT_S = 10.0


def paste_solutions(student: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version with each solution cell's source taken from the lab's source."""
    solutions = {solution_name(c): c.source for c in source.cells if is_solution(c)}
    nb = copy.deepcopy(student)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = solutions[solution_name(cell)]
    return nb


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    release([LABS], out, check=False)   # make test runs the sources under nbval already
    return out


@pytest.fixture(scope="module")
def gradebook(released, tmp_path_factory):
    """'stub' hands in every student version as released; 'pasted' hands in
    the same notebooks with the solutions pasted back."""
    subs = tmp_path_factory.mktemp("submissions")
    for student in ("stub", "pasted"):
        (subs / student).mkdir()
    for path in sorted(released.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.write(nb, subs / "stub" / path.name)
        source = nbformat.read(LABS / path.name, as_version=4)
        nbformat.write(paste_solutions(nb, source), subs / "pasted" / path.name)
    return grade(subs, LABS, jobs=2, cell_timeout=TIMEOUT_S, progress=False)


# -- the source notebooks --------------------------------------------------


def test_only_source_notebooks_in_labs():
    """make test runs every notebook under labs/: nothing generated may live there."""
    assert LAB_IDS, "no lab notebooks"
    for path in LABS.rglob("*.ipynb"):
        if any(part.startswith(".") for part in path.relative_to(LABS).parts):
            continue        # .ipynb_checkpoints: pytest does not collect dot folders
        nb = read_notebook(path)
        assert any(BEGIN in c.source for c in nb.cells), f"{path.name} has no solution: not a source"


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_source_is_a_valid_lab(lab_id):
    lab = load_lab(LABS / f"{lab_id}.ipynb")
    assert lab.id == lab_id
    assert lab.checks and all(c.points > 0 for c in lab.checks)
    assert any(c.hidden for c in lab.checks), "every lab has at least one hidden check"
    assert all(c.title for c in lab.checks)
    for cell in lab.nb.cells:
        if is_check(cell):
            assert cell.execution_count is not None, f"{cell.id} has no reference output"


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_points_table_matches_the_checks(lab_id):
    """The table of points in a lab's introduction says what grading counts."""
    import re
    lab = load_lab(LABS / f"{lab_id}.ipynb")
    intro = lab.nb.cells[0].source
    rows = re.findall(r"^\| (.+?) \| (\d+) \|$", intro, flags=re.MULTILINE)
    table = {name: int(points) for name, points in rows}
    assert table.pop("hidden checks") == sum(c.points for c in lab.checks if c.hidden)
    assert list(table.values()) == [c.points for c in lab.checks if not c.hidden]


def test_sanitize_patterns_are_those_of_make_test():
    """The grader masks outputs exactly as make test does."""
    from nbval.plugin import get_sanitize_patterns
    cfg = (ROOT / "tests" / "nbval-sanitize.cfg").read_text()
    assert patterns() == get_sanitize_patterns(cfg)
    assert patterns()


# -- stubs -----------------------------------------------------------------

STUBS = [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n",
     "def f():\n    raise NotImplementedError('replace this line with your solution')\n"),
    ("def f():\n    ### BEGIN SOLUTION\n    # hint: add one\n    return 1\n    ### END SOLUTION\n",
     "def f():\n    raise NotImplementedError('add one')\n"),
    ("class A:\n    def a(self):\n        ### BEGIN SOLUTION\n        pass\n        ### END SOLUTION\n"
     "    def b(self):\n        ### BEGIN SOLUTION\n        # hint: it's b\n        pass\n        ### END SOLUTION\n",
     "class A:\n    def a(self):\n        raise NotImplementedError('replace this line with your solution')\n"
     "    def b(self):\n        raise NotImplementedError(\"it's b\")\n"),
    ("x = 1\n", "x = 1\n"),
]


@pytest.mark.parametrize("source, stub", STUBS)
def test_stub_source(source, stub):
    assert stub_source(source) == stub
    compile(stub, "<stub>", "exec")


@pytest.mark.parametrize("source, error", [
    ("    ### BEGIN SOLUTION\n    x = 1\n", "has no ### END SOLUTION"),
    ("x = 1\n### END SOLUTION\n", "without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside another solution"),
])
def test_stub_source_refuses_broken_markers(source, error):
    with pytest.raises(LabError, match=error):
        stub_source(source)


def _lab_notebook(tmp_path, *cells) -> Path:
    nb = nbformat.v4.new_notebook(cells=list(cells))
    path = tmp_path / "lab.ipynb"
    nbformat.write(nb, path)
    return path


def _check_cell(name, points=1, **extra):
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.metadata["mailkit"] = {"check": name, "points": points, **extra}
    return cell


@pytest.mark.parametrize("cells, error", [
    ([nbformat.v4.new_code_cell("x = 1")], "no check cells"),
    ([_check_cell("a"), _check_cell("a")], "two checks are named 'a'"),
    ([_check_cell("a", points="two")], "expected a number"),
    ([nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n"), _check_cell("a")], "has no ### END"),
])
def test_load_lab_refuses_bad_sources(tmp_path, cells, error):
    with pytest.raises(LabError, match=error):
        load_lab(_lab_notebook(tmp_path, *cells))


# -- student versions --------------------------------------------------------


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_student_version(released, lab_id):
    lab = load_lab(LABS / f"{lab_id}.ipynb")
    student = nbformat.read(released / f"{lab_id}.ipynb", as_version=4)
    text = json.dumps(student)
    assert BEGIN not in text and END not in text
    assert student.metadata.mailkit["lab"] == lab_id
    # every line of every solution is gone (but for lines that are also elsewhere, like a docstring)
    stubbed = "\n".join(c.source for c in student.cells if is_solution(c))
    assert stubbed.count("raise NotImplementedError(") == sum(
        c.source.count(BEGIN) for c in lab.nb.cells)
    checks = {c.metadata["mailkit"]["check"]: c for c in student.cells if is_check(c)}
    assert set(checks) == {c.name for c in lab.checks if not c.hidden}
    for cell in lab.nb.cells:
        if is_check(cell) and cell.metadata["mailkit"]["check"] in checks:
            kept = checks[cell.metadata["mailkit"]["check"]]
            assert kept.source == cell.source and kept.outputs == cell.outputs
    for cell in student.cells:
        if is_solution(cell):
            assert cell.outputs == [] and cell.execution_count is None


def test_assemble_takes_checks_from_the_source():
    lab = load_lab(LABS / "01-handshake-client.ipynb")
    student = student_version(lab)
    for cell in student.cells:
        if is_check(cell):
            cell.source = 'print("all good")'
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="all good\n")]
    student.cells.append(nbformat.v4.new_code_cell("scratch = 1"))
    from mailkit.labs.planning import assemble
    nb, roles, notes = assemble(lab, student, hidden=True)
    source_checks = [c for c in lab.nb.cells if is_check(c)]
    assembled_checks = [c for c in nb.cells if is_check(c)]
    assert [c.source for c in assembled_checks] == [c.source for c in source_checks]
    assert [c.outputs for c in assembled_checks] == [c.outputs for c in source_checks]
    assert [r.name for r in roles if r.kind == "check"] == [c.name for c in lab.checks]
    assert [r.kind for r in roles].count("extra") == 1
    assert notes == []
    visible, roles, _ = assemble(lab, student, hidden=False)
    assert [r.name for r in roles if r.kind == "check"] == [c.name for c in lab.checks if not c.hidden]


def test_assemble_notes_a_missing_solution_cell():
    lab = load_lab(LABS / "01-handshake-client.ipynb")
    student = student_version(lab)
    student.cells = [c for c in student.cells if not is_solution(c)]
    from mailkit.labs.planning import assemble
    _, roles, notes = assemble(lab, student)
    assert "solution" not in {r.kind for r in roles}
    assert notes == ["the solution cell 'login' is missing from the notebook"]


# -- every check can fail, and passes with the solution -------------------------


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_every_check_fails_on_the_stub(gradebook, lab_id):
    result = gradebook.result("stub", lab_id)
    assert result.problem == ""
    assert [c.name for c in result.checks] == [c.name for c in load_lab(LABS / f"{lab_id}.ipynb").checks]
    passed = [c.name for c in result.checks if c.passed]
    assert passed == [], f"checks that pass on the stub cannot fail: {passed}"
    for c in result.checks:
        if not c.hidden:
            assert "NotImplementedError" in c.feedback, c
        else:
            assert c.feedback.startswith("hidden check failed: "), c
            assert c.feedback in ("hidden check failed: it raised NotImplementedError",
                                  "hidden check failed: its output differs from the reference"), c


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_solution_pasted_back_passes(gradebook, lab_id):
    result = gradebook.result("pasted", lab_id)
    failed = {c.name: c.feedback for c in result.checks if not c.passed}
    assert failed == {}
    assert result.points == result.max_points == load_lab(LABS / f"{lab_id}.ipynb").max_points
    assert result.notes == []


# -- the command line ---------------------------------------------------------------


def test_cli_list(capsys):
    assert main(["list", "--source", str(LABS)]) == 0
    out = capsys.readouterr().out
    for lab in find_labs(LABS):
        assert f"{lab.path.name}: {lab.title}" in out
        for c in lab.checks:
            assert c.name in out


def test_cli_release_refuses_to_overwrite_the_sources(capsys):
    assert main(["release", str(LABS), "--out", str(LABS), "--no-check"]) == 2
    assert "would replace them" in capsys.readouterr().err


@pytest.mark.slow
def test_release_refuses_stale_reference_outputs(tmp_path):
    """A source whose stored outputs are not its solution's is not released."""
    nb = nbformat.read(LABS / "02-framing.ipynb", as_version=4)
    for cell in nb.cells:
        if is_check(cell) and cell.metadata["mailkit"]["check"] == "parse":
            cell.outputs[0]["text"] = cell.outputs[0]["text"].replace("Lunch", "Dinner")
    (tmp_path / "labs").mkdir()
    nbformat.write(nb, tmp_path / "labs" / "02-framing.ipynb")
    with pytest.raises(LabError, match=r"fails its own checks \(parse: output differs"):
        release([tmp_path / "labs"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_check_prints_each_check(released, capsys):
    code = main(["check", str(released / "01-handshake-client.ipynb"), "--source", str(LABS)])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("Lab 1: Handshake client (01-handshake-client):")
    assert [ln.split()[:3] for ln in lines if ln.startswith("  FAIL")] == [
        ["FAIL", "right-password", "0/2"], ["FAIL", "wrong-password", "0/2"], ["FAIL", "server-gone", "0/1"]]
    assert "NotImplementedError: connect, send USER:PASSWORD" in out
    assert "special-password" not in out          # hidden: only when grading, or with --hidden
    assert lines[-1].startswith("score: 0/5 points")


# -- what the check cells use -------------------------------------------------------


def test_support_imports_no_notebook_machinery():
    """Check cells import mailkit.labs.support in every student's kernel: it
    must stay quick, so neither it nor mailkit.labs pulls in nbformat."""
    import subprocess
    import sys
    code = ("import sys, mailkit.labs.support; "
            "print(sorted(m for m in ('nbformat', 'nbclient', 'tqdm', 'pytest') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sequence_numbers_round_trip():
    from mailkit import make_frame
    from mailkit.labs.support import add_seq, split_seq
    frame = make_frame("0123456789", "email", "bob", "Re: #1", "a:b#c")
    request = add_seq(1, frame)
    assert request.startswith(b"1/0123456789:email:")
    assert split_seq(request) == (1, frame)
    with pytest.raises(ValueError, match="checksum"):
        split_seq(request.replace(b"a:b", b"a;b"))
    with pytest.raises(ValueError, match="expected 0/, 1/ or S/"):
        split_seq(add_seq(1, frame)[2:].rpartition(b"#")[0] + b"#" + frame.rpartition(b"#")[2])
    from mailkit.labs.support import SYN_REPLY, syn
    assert syn("0123456789").startswith(b"S/0123456789#")
    assert split_seq(syn("0123456789")) == ("S", b"0123456789")
    with pytest.raises(ValueError, match="checksum"):
        split_seq(syn("0123456789").replace(b"S/0", b"S/1"))


def test_sequenced_replies_carry_a_checksum():
    """Lab 5's replies: SEQ/ and a checksum over all of it; a damaged one,
    a bare KO or nothing at all raise ValueError (the sender sends again)."""
    from mailkit import flip_bit
    from mailkit.labs.support import SYN_REPLY, seq_reply, split_reply
    reply = seq_reply(0, b"OK: Email Sent")
    assert reply.startswith(b"0/OK: Email Sent#") and len(reply) == 16 + 1 + 40
    assert split_reply(reply) == (0, b"OK: Email Sent")
    assert split_reply(seq_reply(1, b"a#b")) == (1, b"a#b")
    assert SYN_REPLY.startswith(b"S/OK#") and split_reply(SYN_REPLY) == ("S", b"OK")
    for byte in range(len(reply)):
        for bit in range(8):
            with pytest.raises(ValueError):
                split_reply(flip_bit(reply, byte, bit))
    for nothing in (b"KO", b"", b"0/OK: Email Sent"):
        with pytest.raises(ValueError, match="not a sequenced reply"):
            split_reply(nothing)
    with pytest.raises(ValueError, match="expected 0/, 1/ or S/"):
        split_reply(seq_reply(2, b"OK"))


def test_client_2017_and_bench():
    from mailkit.labs.support import Client2017, GaveUp, exchange, first_number
    from mailkit.labs import support as lab
    with lab.Bench() as bench:
        old = Client2017(*bench.server.address)
        assert old.login("alice", "wonderland").startswith("OK:")
        assert old.email("bob", "Hello", "from 2017") == "OK: Email Sent"
        assert first_number(old.count()) == 0
        assert exchange(*bench.link.address, bench.frame("carol", "Hi", "there")) == b"OK: Email Sent"
        assert bench.delivered() == 2 and bench.connections == 1
        assert bench.sequence_numbers() == [None]
    assert issubclass(GaveUp, OSError)


def test_run_server_records_what_serve_one_raised():
    from mailkit.labs import support as lab

    class Broken:
        def serve_one(self, conn):
            raise KeyError("inbox")

    with lab.run_server(Broken()) as server:
        try:
            assert lab.exchange(*server.address, b"alice:wonderland") == b""
        except OSError:
            pass          # closed with the request unread: the peer may see a reset,
            #               a broken pipe, or "not connected" at its half-close
    assert server.errors == ["KeyError: 'inbox'"]


@pytest.mark.slow
def test_a_new_lab_from_scratch(tmp_path, monkeypatch, capsys):
    """execute stores the reference, release stubs the solution, check
    without the source falls back to the notebook's own check cells."""
    solution = nbformat.v4.new_code_cell(
        "def double(x):\n    ### BEGIN SOLUTION\n    # hint: twice x\n    return 2 * x\n    ### END SOLUTION\n")
    check = nbformat.v4.new_code_cell("print(double(21))")
    check.metadata["mailkit"] = {"check": "double", "points": 1}
    source = tmp_path / "labs" / "09-double.ipynb"
    source.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[solution, check]), source)
    assert main(["execute", str(source)]) == 0
    stored = nbformat.read(source, as_version=4).cells[1]
    assert stored.outputs[0]["text"] == "42\n" and stored.execution_count == 2
    assert main(["release", str(source), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "out")
    monkeypatch.delenv("MAILKIT_LABS_SOURCE", raising=False)
    assert main(["check", "09-double.ipynb"]) == 1
    out, err = capsys.readouterr()
    assert "no source for lab '09-double' found" in err
    assert "FAIL  double  0/1" in out and "NotImplementedError: twice x" in out


def _runs(*results):
    from mailkit.labs import runner

    calls = []

    def fake_run_once(nb, **kwargs):
        calls.append(kwargs)
        return results[len(calls) - 1]

    return runner, calls, fake_run_once


def test_a_kernel_that_never_started_is_tried_once_more(monkeypatch):
    from mailkit.labs.runner import CellResult, RunResult

    dead = RunResult(cells={0: CellResult(0, False, "the kernel did not start: Kernel didn't respond in 30 seconds")})
    good = RunResult(cells={0: CellResult(0, True)})
    runner, calls, fake = _runs(dead, good)
    monkeypatch.setattr(runner, "_run_once", fake)
    assert runner.run_notebook(nbformat.v4.new_notebook(), deadline=5) is good
    assert len(calls) == 2


def test_a_second_failed_start_still_fails_and_other_failures_are_not_retried(monkeypatch):
    from mailkit.labs.runner import CellResult, RunResult

    dead = RunResult(cells={0: CellResult(0, False, "the kernel did not start: no")})
    runner, calls, fake = _runs(dead, dead)
    monkeypatch.setattr(runner, "_run_once", fake)
    result = runner.run_notebook(nbformat.v4.new_notebook(), deadline=5)
    assert not result.cells[0].passed and len(calls) == 2

    wrong = RunResult(cells={0: CellResult(0, False, "Cell outputs differ")})
    runner, calls, fake = _runs(wrong, wrong)
    monkeypatch.setattr(runner, "_run_once", fake)
    assert runner.run_notebook(nbformat.v4.new_notebook(), deadline=5) is wrong
    assert len(calls) == 1


# -- hidden checks are judged by the grader ------------------------------------------


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_hidden_checks_carry_at_least_40_percent(lab_id):
    lab = load_lab(LABS / f"{lab_id}.ipynb")
    hidden = sum(c.points for c in lab.checks if c.hidden)
    assert hidden >= 0.4 * lab.max_points, (hidden, lab.max_points)


@pytest.mark.slow
@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_the_solution_passes_its_hidden_checks_for_20_drawn_inputs(lab_id, monkeypatch):
    """Each hidden check is a probe with inputs drawn from the run's seed:
    the lab's own solution passes it for 20 different seeds, printing the
    reference output each time (so the output does not depend on the draw).
    The 20 run at once (they wait on sockets, not on the CPU)."""
    import io
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from mailkit.labs.harness import canonical
    from mailkit.labs.probe import run_locally
    from mailkit.labs.sanitize import sanitize
    lab = load_lab(LABS / f"{lab_id}.ipynb")
    namespace: dict = {}
    for cell in lab.nb.cells:
        if cell.cell_type == "code" and not is_check(cell):
            exec(compile(cell.source, lab_id, "exec"), namespace)
    stdout = PerThreadStdout(sys.stdout)
    monkeypatch.setattr(sys, "stdout", stdout)
    # The probes' mail servers hash every password (scrypt, ~50 ms of CPU
    # each, on purpose); what is checked here is not the hash: a cheaper
    # default cost for the servers they make (MailServer's scrypt_n) keeps
    # 20 draws per check within seconds.
    from mailkit import MailServer
    monkeypatch.setitem(MailServer.__init__.__kwdefaults__, "scrypt_n", 2 ** 8)

    def one(source: str, seed: int) -> str:
        stdout.local.buffer = io.StringIO()
        run_locally(source, dict(namespace), seed)
        return stdout.local.buffer.getvalue()

    hidden = [c for c in lab.nb.cells if is_check(c) and c.metadata["mailkit"].get("hidden")]
    # lab 4's no-lost-mail lowers the switch interval of the process it runs
    # in (here, this one) and puts it back; 20 at once may put back another's
    switch = sys.getswitchinterval()
    try:
        # Lab 6's budgets follow the round trips the check times (TimerBudget),
        # but its link still judges copies by when it read them: ten senders at
        # once in this one process, beside another make test and two CPU hogs
        # (load 29), starved the link into reading a first attempt and its
        # resend together once.  A grader runs one sender per sandbox: four here.
        with ThreadPoolExecutor(max_workers=4 if lab_id == "06-silence" else 10) as pool:
            for cell in hidden:
                outputs = list(pool.map(one, [cell.source] * 20, range(20)))
                for seed, out in enumerate(outputs):
                    assert sanitize(out) == sanitize(canonical(cell.outputs)), (cell.metadata, seed)
    finally:
        sys.setswitchinterval(switch)


@pytest.mark.slow
@needs_sandbox
def test_the_sources_setup_cells_run_not_the_students(tmp_path):
    """A correct lab 2 whose student deleted the "unused" imports of the setup cell: full marks."""
    from mailkit.labs.check import check_notebook
    lab = load_lab(LABS / "02-framing.ipynb")
    nb = paste_solutions(student_version(lab), lab.nb)
    for cell in nb.cells:
        if cell.get("id") == "setup":
            cell.source = "# cleaned up: nothing here was used\n"
    nbformat.write(nb, tmp_path / "02-framing.ipynb")
    result = check_notebook(tmp_path / "02-framing.ipynb", lab, hidden=True, sandbox=True)
    assert [c.name for c in result.checks if not c.passed] == []
    assert result.points == lab.max_points


@pytest.mark.slow
def test_check_without_the_source_is_not_fooled_by_the_students_own_outputs(released, tmp_path, capsys):
    """The student runs a wrong login(), saves, and checks offline: the
    reference is the released one (kept in the cells' metadata), not the
    outputs the student's run left in the notebook."""
    from mailkit.labs.notebook import is_check as check_cell
    lab = load_lab(LABS / "01-handshake-client.ipynb")
    nb = nbformat.read(released / "01-handshake-client.ipynb", as_version=4)
    wrong = next(c.source for c in lab.nb.cells if is_solution(c)).replace(
        "raise LoginFailed(text)", "return None")
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = wrong
        elif check_cell(cell) and cell.metadata["mailkit"]["check"] == "wrong-password":
            # what the student's own run saved: the wrong output
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                   text="alice -> logged in?! None\nmallory -> logged in?! None\n")]
    (tmp_path / "student").mkdir()
    nbformat.write(nb, tmp_path / "student" / "01-handshake-client.ipynb")
    code = main(["check", str(tmp_path / "student" / "01-handshake-client.ipynb"), "--source",
                 str(tmp_path / "student" / "01-handshake-client.ipynb")])
    out = capsys.readouterr().out
    assert code == 1
    assert [ln.split()[:3] for ln in out.splitlines() if ln.startswith("  FAIL")] == [
        ["FAIL", "wrong-password", "0/2"]]


def test_feedback_diff_of_a_check_printed_in_several_outputs():
    """Issue 15: when a check's reference is several outputs, the diff
    repeated "expected" lines and flagged lines that matched."""
    from mailkit.labs.check import diff_text
    from mailkit.labs.harness import canonical
    reference = [nbformat.v4.new_output("stream", name="stdout", text="one\n"),
                 nbformat.v4.new_output("stream", name="stdout", text="two\n"),
                 nbformat.v4.new_output("stream", name="stdout", text="three\n")]
    got = [nbformat.v4.new_output("stream", name="stdout", text="one\ntwo\nTHREE\n")]
    assert diff_text(canonical(reference), canonical(got)) == "expected: three\ngot:      THREE"


# -- wrong solutions: each graded below full, and the check that catches it -----------

def _solution(lab_id: str, name: str) -> str:
    lab = load_lab(LABS / f"{lab_id}.ipynb")
    return next(c.source for c in lab.nb.cells if is_solution(c) and solution_name(c) == name)


def _wrong(lab_id: str, name: str, *edits: tuple[str, str]) -> dict[str, str]:
    source = _solution(lab_id, name)
    for old, new in edits:
        assert old in source, (lab_id, old)
        source = source.replace(old, new)
    return {name: source}


def _no_lock(code: dict[str, str]) -> dict[str, str]:
    """*code* with every ``with self.lock:`` taken out (its block dedented)."""
    out = {}
    for name, source in code.items():
        lines, inside = [], None
        for line in source.splitlines(keepends=True):
            indent = len(line) - len(line.lstrip())
            if inside is not None and line.strip() and indent <= inside:
                inside = None
            if line.strip() == "with self.lock:":
                inside = indent
                continue
            lines.append(line[4:] if inside is not None and line.strip() else line)
        out[name] = "".join(lines)
    return out


# lab 4: a kernel that makes the grader's reseed of random do nothing
NO_OP_SEED = "import random\nrandom.seed = lambda *args, **kwargs: None\n\n\n"

# lab 5's sender: where it sends a request and reads the reply's number and checksum
SPLIT_REPLY = "got, reply = lab.split_reply(exchange(*self.address, request))"

# (lab, what is wrong, {solution cell: code}, a check that must fail)
WRONG = [
    ("01-handshake-client", "no half-close",
     _wrong("01-handshake-client", "login", ("        sock.shutdown(socket.SHUT_WR)\n", "")), "reply-in-pieces"),
    ("01-handshake-client", "one recv(1024)",
     _wrong("01-handshake-client", "login", ("while chunk := sock.recv(1024):\n            reply += chunk",
                                             "reply = sock.recv(1024)")), "reply-in-pieces"),
    ("01-handshake-client", "ASCII only",
     _wrong("01-handshake-client", "login", ('.encode("utf-8")', '.encode("ascii")')), "special-password"),
    ("01-handshake-client", "returns None on KO",
     _wrong("01-handshake-client", "login", ("raise LoginFailed(text)", "return None")), "wrong-password"),
    ("02-framing", "checksum of Latin-1 bytes",
     _wrong("02-framing", "make_frame", ('.encode("utf-8")', '.encode("utf-8", "replace").decode().encode("latin-1", "replace")')),
     "random-frames"),
    ("02-framing", "escapes the last field too",
     _wrong("02-framing", "make_frame", ("*(escape_field(f) for f in fields[:-1]), *fields[-1:]",
                                         "*(escape_field(f) for f in fields)")), "random-frames"),
    ("02-framing", "splits at the first #",
     _wrong("02-framing", "parse_frame", ('content, sep, digest = data.rpartition(b"#")',
                                          'content, sep, digest = data.partition(b"#")')), "special-characters"),
    ("02-framing", "never checks the checksum",
     _wrong("02-framing", "parse_frame", ("if not sep or hashlib.sha1(content).hexdigest().encode(\"ascii\") != digest:",
                                          "if not sep:")), "random-damage"),
    ("03-retry", "no retry after an empty reply",
     _wrong("03-retry", "send_with_retry", ('if reply and reply.strip() != b"KO":', 'if reply.strip() != b"KO":')),
     "lost-reply"),
    ("03-retry", "one attempt too few",
     _wrong("03-retry", "send_with_retry", ("for attempt in range(1 + retries):", "for attempt in range(retries):")),
     "gives-up"),
    ("03-retry", "ignores the retries parameter",
     _wrong("03-retry", "send_with_retry", ("for attempt in range(1 + retries):", "for attempt in range(4):")),
     "lost-reply"),
    ("03-retry", "retries an ERROR reply",
     _wrong("03-retry", "send_with_retry", ('if reply and reply.strip() != b"KO":',
                                            'if reply and not reply.startswith((b"KO", b"ERROR")):')),
     "no-retry-on-errors"),
    ("04-server", "one recv per request",
     _wrong("04-server", "MiniServer", ("        while True:\n            try:\n                chunk = conn.recv(65536)",
                                        "        for _ in range(1):\n            try:\n                chunk = conn.recv(65536)")),
     "hard-clients"),
    ("04-server", "KO for an unknown session",
     _wrong("04-server", "MiniServer", ('return b"ERROR: unknown session id"', 'return b"KO"')), "errors"),
    ("04-server", "logoff keeps the session",
     _wrong("04-server", "MiniServer", ("del self.sessions[session_id]", "pass")), "client-2017"),
    ("04-server", "counts everyone's mail",
     _wrong("04-server", "MiniServer", ('f"OK: {len(self.inbox[user])} messages"',
                                        'f"OK: {sum(map(len, self.inbox.values()))} messages"')), "mailkit-client"),
    ("04-server", "session ids from random (issue 15)",
     _wrong("04-server", "MiniServer", ('session_id = "".join(secrets.choice("0123456789") for _ in range(10))',
                                        'import random\n'
                                        '            session_id = "".join(random.choice("0123456789") for _ in range(10))')),
     "unpredictable-ids"),
    ("04-server", "session ids from random.randrange",
     _wrong("04-server", "MiniServer", ('session_id = "".join(secrets.choice("0123456789") for _ in range(10))',
                                        'import random\n'
                                        '            session_id = str(random.randrange(10 ** 9, 10 ** 10))')),
     "unpredictable-ids"),
    ("04-server", "ids from random, and random.seed made a no-op (defeats the reseed)",
     _wrong("04-server", "MiniServer", ("class MiniServer:\n", NO_OP_SEED + "class MiniServer:\n"),
            ('session_id = "".join(secrets.choice("0123456789") for _ in range(10))',
             'session_id = "".join(random.choice("0123456789") for _ in range(10))')),
     "unpredictable-ids"),
    ("04-server", "ids from `from random import choices`",
     _wrong("04-server", "MiniServer", ("class MiniServer:\n", "from random import choices\n\n\nclass MiniServer:\n"),
            ('session_id = "".join(secrets.choice("0123456789") for _ in range(10))',
             'session_id = "".join(choices("0123456789", k=10))')),
     "unpredictable-ids"),
    ("04-server", "no lock; copies the mailbox, appends, writes it back",
     _no_lock(_wrong("04-server", "MiniServer", ("        self.lock = threading.Lock()\n", ""),
                     ("self.inbox[recipient].append((user, subject, body))",
                                                 "mails = list(self.inbox[recipient])\n"
                                                 "                mails.append((user, subject, body))\n"
                                                 "                self.inbox[recipient] = mails"))),
     "no-lost-mail"),
    ("05-no-duplicates", "one expected number for every session",
     _wrong("05-no-duplicates", "sequenced", ("session = frame[:10]", "session = b'all'")), "damaged-and-sessions"),
    ("05-no-duplicates", "the sender never switches number",
     _wrong("05-no-duplicates", "sequenced", ("        self.seq = 1 - self.seq\n", "")), "same-mail-twice"),
    ("05-no-duplicates", "carries out resends again",
     _wrong("05-no-duplicates", "sequenced", ("if seq != self.expected.get(session, 0) and session in self.last_reply:",
                                              "if False:")), "random-losses"),
    ("05-no-duplicates", "no resend after KO",
     _wrong("05-no-duplicates", "sequenced", (SPLIT_REPLY, "raw = exchange(*self.address, request)\n"
                                                           "                    if raw == b\"KO\":\n"
                                                           "                        break\n"
                                                           "                    got, reply = lab.split_reply(raw)")),
     "damaged-and-sessions"),
    ("05-no-duplicates", "reads the reply's number, never checks its checksum",
     _wrong("05-no-duplicates", "sequenced", (SPLIT_REPLY, "got, _, reply = exchange(*self.address, request)"
                                                           ".rpartition(b\"#\")[0].partition(b\"/\")\n"
                                                           "                    got = \"S\" if got == b\"S\" else int(got)")),
     "damaged-replies"),
    ("05-no-duplicates", "replies without a checksum (SEQ/ only, as before issue 15)",
     _wrong("05-no-duplicates", "sequenced",
            (SPLIT_REPLY, "got, _, reply = exchange(*self.address, request).partition(b\"/\")\n"
                          "                    got = {b\"0\": 0, b\"1\": 1, b\"S\": \"S\"}.get(got)"),
            ("lab.seq_reply(seq, self.respond(frame))", "f\"{seq}/\".encode() + self.respond(frame)"),
            ("return lab.SYN_REPLY", "return b\"S/OK\"")),
     "damaged-replies"),
    ("05-no-duplicates", "a damaged reply is an error, not a lost reply",
     _wrong("05-no-duplicates", "sequenced", (SPLIT_REPLY, "raw = exchange(*self.address, request)\n"
                                                           "                    if raw in (b\"\", b\"KO\"):\n"
                                                           "                        continue"),
            ("                if got == seq:", "                got, reply = lab.split_reply(raw)   # damaged: ValueError\n"
                                             "                if got == seq:")),
     "damaged-replies"),
    ("05-no-duplicates", "keeps its number after GaveUp (issue 15)",
     _wrong("05-no-duplicates", "sequenced", ("            self.seq = None         # was it carried out?",
                                              "            pass                    # was it carried out?")),
     "gave-up-and-restart"),
    ("05-no-duplicates", "no SYN: a restarted sender starts at 0 (issue 15)",
     _wrong("05-no-duplicates", "sequenced", ("self.seq = None             # no number agreed yet", "self.seq = 0                # no number agreed yet"),
            ("            if seq == \"S\":", "            if seq == \"S\" and False:")),
     "gave-up-and-restart"),
    ("10-mac-tls", "check_hostname off",
     _wrong("10-mac-tls", "secure_context", ("    return context\n", "    context.check_hostname = False\n    return context\n")),
     "wrong-hostname"),
    ("10-mac-tls", "CERT_NONE: any certificate",
     _wrong("10-mac-tls", "secure_context", ("    return context\n", "    context.check_hostname = False\n"
                                                                  "    context.verify_mode = ssl.CERT_NONE\n    return context\n")),
     "impostor"),
    ("10-mac-tls", "cafile not used",
     _wrong("10-mac-tls", "secure_context", ("ssl.create_default_context(cafile=cafile)", "ssl.create_default_context()")),
     "tls-login"),
    ("10-mac-tls", "key not used (a plain SHA-256)",
     _wrong("10-mac-tls", "make_tag", ("hmac.new(key, content, hashlib.sha256).hexdigest()",
                                       "hashlib.sha256(content).hexdigest()")),
     "rfc-4231"),
    ("10-mac-tls", "SHA-256 of key + content (not HMAC: open to length extension)",
     _wrong("10-mac-tls", "make_tag", ("hmac.new(key, content, hashlib.sha256).hexdigest()",
                                       "hashlib.sha256(key + content).hexdigest()")),
     "rfc-4231"),
    ("10-mac-tls", "a truncated tag accepted",
     _wrong("10-mac-tls", "check_tag", ('    if not sep or len(claimed) != 64:\n        return False\n'
                                        '    return hmac.compare_digest(make_tag(key, content).encode("ascii"), claimed)',
                                        '    if not sep or len(claimed) < 32:\n        return False\n'
                                        '    return hmac.compare_digest(make_tag(key, content).encode("ascii")[:len(claimed)], claimed)')),
     "the-tag"),
    ("10-mac-tls", "a recomputed SHA-1 accepted (no key)",
     _wrong("10-mac-tls", "check_tag", ('    if not sep or len(claimed) != 64:\n        return False\n',
                                        '    if len(claimed) == 40:      # "a 2017 frame: its SHA-1 will do"\n'
                                        '        return claimed == hashlib.sha1(content).hexdigest().encode("ascii")\n'
                                        '    if not sep or len(claimed) != 64:\n        return False\n')),
     "the-tag"),
    ("10-mac-tls", "tag over the body only",
     _wrong("10-mac-tls", "check_tag", ('make_tag(key, content).encode("ascii"), claimed)',
                                        'make_tag(key, content.rpartition(b":")[2]).encode("ascii"), claimed)')),
     "the-tag"),
]

# Solutions that call mailkit's own implementation: full marks, but flagged.
KIT = [
    ("01-handshake-client", {"login": "def login(host, port, user, password):\n"
                                      "    from mailkit import MailClient\n"
                                      "    return MailClient(host, port).login(user, password)\n"}, "MailClient"),
    ("02-framing", {"make_frame": "def make_frame(session_id, command, *fields):\n"
                                  "    return mailkit_make_frame(session_id, command, *fields)\n"},
     "mailkit_make_frame"),
    ("04-server", _wrong("04-server", "MiniServer", ("    def respond(self, request):\n",
                                                      "    def respond(self, request):\n"
                                                      "        if not hasattr(self, 'kit'):\n"
                                                      "            from mailkit import MailServer\n"
                                                      "            self.kit = MailServer(self.users)\n"
                                                      "        return self.kit.respond(request)[1].encode()\n")),
     "MailServer"),
]


def grade_variants(released: Path, entries, subs: Path):
    """Grade one submission per entry ``(lab_id, what, code, ...)``: the
    released lab with the source's solutions pasted back, then the cells
    named in *code* (``{solution name: source}``) replaced.  Submission *i*
    is student ``s{i:02d}``."""
    for i, (lab_id, _, code, *_) in enumerate(entries):
        nb = paste_solutions(nbformat.read(released / f"{lab_id}.ipynb", as_version=4),
                             nbformat.read(LABS / f"{lab_id}.ipynb", as_version=4))
        for cell in nb.cells:
            if is_solution(cell) and solution_name(cell) in code:
                cell.source = code[solution_name(cell)]
        (subs / f"s{i:02d}").mkdir()
        nbformat.write(nb, subs / f"s{i:02d}" / f"{lab_id}.ipynb")
    return grade(subs, LABS, jobs=2, cell_timeout=TIMEOUT_S, progress=False)


# The wrong solutions above (WRONG, KIT) are graded in tests/test_labs_wrong.py,
# so that another worker grades them while this file's own batches run.


RANDOM_DRAWS = [
    ("import secrets\nsid = ''.join(secrets.choice('0123456789') for _ in range(10))", []),
    ("import random\nsid = random.SystemRandom().randrange(10 ** 10)", []),
    ("from random import SystemRandom\nr = SystemRandom()", []),
    ("import os\nsid = str(int.from_bytes(os.urandom(8), 'big') % 10 ** 10)", []),
    ("import random\nsid = random.choice('0123')", ["random.choice"]),
    ("import random as r\nsid = r.randint(0, 9)", ["r.randint"]),
    ("from random import randint, SystemRandom\nx = randint(1, 2)", ["from random import randint"]),
    ("import random\ng = random.Random()\nx = g.getrandbits(33)", ["random.Random"]),
    ("import random\nrandom.seed = lambda *a: None", ["random.seed"]),
    ("m = __import__('random')", ["__import__('random')"]),
    ("import importlib\nm = importlib.import_module('ran' + 'dom')", ["dynamic import: importlib.import_module(...) of a computed name"]),
    ("def f(:", []),            # not Python: the run fails it anyway
    ("random = 3\nx = random + 1", []),   # a variable called random, not the module
]


@pytest.mark.parametrize("source, found", RANDOM_DRAWS)
def test_random_draws_are_found_by_reading_the_code(source, found):
    from mailkit.labs.check import random_draws
    assert random_draws(source) == found


def test_static_rules_name_checks_and_rules_that_exist():
    from mailkit.labs.check import STATIC_RULES
    for lab_id in LAB_IDS:
        lab = load_lab(LABS / f"{lab_id}.ipynb")
        rules = lab.nb.metadata.get("mailkit", {}).get("static", {})
        assert set(rules) <= {c.name for c in lab.checks}, lab_id
        assert set(rules.values()) <= set(STATIC_RULES), lab_id
    assert load_lab(LABS / "04-server.ipynb").nb.metadata.mailkit.static == {"unpredictable-ids": "no-random"}


def test_a_no_op_random_seed_passes_the_reseed_but_not_the_static_rule():
    """Why lab 4 reads the code too: ids from random in a kernel whose
    random.seed does nothing pass the behavioural reseed probe; the static
    rule (in the grader) fails unpredictable-ids for it, and flags the row."""
    import io
    import contextlib
    from mailkit.labs.check import LabResult, CheckResult, apply_static_rules
    from mailkit.labs.notebook import CellRole
    from mailkit.labs.probe import run_locally
    lab = load_lab(LABS / "04-server.ipynb")
    code = next(w[2] for w in WRONG if w[1].startswith("ids from random, and random.seed made a no-op"))
    import random
    namespace: dict = {}
    seed = random.seed          # the wrong solution replaces it for the whole process: put it back
    try:
        for cell in lab.nb.cells:
            if cell.cell_type == "code" and not is_check(cell):
                exec(compile(code.get(solution_name(cell), cell.source) if is_solution(cell) else cell.source,
                             "lab4", "exec"), namespace)
        probe = next(c for c in lab.nb.cells if is_check(c) and c.metadata.mailkit.check == "unpredictable-ids")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            run_locally(probe.source, namespace, 7)
    finally:
        random.seed = seed
    assert "does not bring the same ids back: True" in out.getvalue()       # fooled
    result = LabResult("s", lab.id, checks=[CheckResult("unpredictable-ids", 2, 2, True, True)])
    apply_static_rules(result, lab, [(CellRole("solution", "MiniServer"), code["MiniServer"])])
    assert result.checks[0].passed is False and result.points == 0
    assert "random.seed" in result.checks[0].feedback and "random.choice" in result.checks[0].feedback
    assert any(f.startswith("unpredictable-ids: draws from Python's random") for f in result.flags)


@pytest.mark.parametrize("index", range(len(WRONG)), ids=[f"{lab}: {what}" for lab, what, _, _ in WRONG])
def test_a_wrong_solution_compiles(index):
    """A wrong solution that is not even Python fails every check: it would
    prove nothing about the check it names."""
    for source in WRONG[index][2].values():
        compile(source, WRONG[index][1], "exec")


def test_at_least_four_wrong_solutions_per_lab():
    from test_labs67 import WRONG_67        # labs 6 and 7 keep theirs in their own file
    from test_lab09 import WRONG_09         # and lab 9
    counts = {lab: sum(1 for w in WRONG + WRONG_67 + WRONG_09 if w[0] == lab) for lab in LAB_IDS}
    assert min(counts.values()) >= 4, counts


