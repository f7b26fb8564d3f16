"""Grading a class: `python -m mailkit.labs grade` on sample submissions of
lab 1 that the tests make: a full solution, a partial one, an endless loop,
a crash, edited check cells, a syntax error, a file that is not a notebook,
and a student who handed in nothing.  Each gets the right points, the run
finishes, and the gradebook files say so."""

from __future__ import annotations

import csv
import html
from pathlib import Path

import nbformat
import pytest

from mailkit.labs.__main__ import main
from mailkit.labs.notebook import is_check, is_solution, load_lab, student_version

ROOT = Path(__file__).resolve().parent.parent
LAB = load_lab(ROOT / "labs" / "01-handshake-client.ipynb")
TIMEOUT_S = 5.0

pytestmark = pytest.mark.slow     # one grading run of 8 students, ~20 s

FULL = next(c.source for c in LAB.nb.cells if is_solution(c))

PARTIAL = '''
def login(host, port, user, password):
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"{user}:{password}".encode("ascii"))
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(1024).decode()
    if reply.startswith("OK:"):
        return reply[3:]
'''   # no LoginFailed on KO, and ASCII only: right-password + server-gone = 3 points

ENDLESS = FULL.replace("raise LoginFailed(text)", "while True:\n            pass")   # loops on a wrong password
CRASH = "import os\n" + FULL.replace("raise LoginFailed(text)", "os._exit(1)")   # the kernel dies on one

SYNTAX = "def login(host, port, user, password)\n    return '0123456789'\n"

EXPECTED = {   # student: (total, points per check, problem)
    "ada": (6, {"right-password": 2, "wrong-password": 2, "server-gone": 1, "special-password": 1}, ""),
    "ben": (3, {"right-password": 2, "wrong-password": 0, "server-gone": 1, "special-password": 0}, ""),
    "cy": (4, {"right-password": 2, "wrong-password": 0, "server-gone": 1, "special-password": 1}, ""),
    "dee": (2, {"right-password": 2, "wrong-password": 0, "server-gone": 0, "special-password": 0}, ""),
    "eve": (0, {"right-password": 0, "wrong-password": 0, "server-gone": 0, "special-password": 0}, ""),
    "fay": (0, {"right-password": 0, "wrong-password": 0, "server-gone": 0, "special-password": 0}, ""),
    "gus": (0, {"right-password": 0, "wrong-password": 0, "server-gone": 0, "special-password": 0},
            "not a notebook"),
    "hal": (0, {"right-password": 0, "wrong-password": 0, "server-gone": 0, "special-password": 0}, "missing"),
}


def with_solution(code: str) -> nbformat.NotebookNode:
    nb = student_version(LAB)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = code
    return nb


def edited_checks() -> nbformat.NotebookNode:
    """The stub, with every check cell rewritten to print its reference output."""
    nb = student_version(LAB)
    for cell in nb.cells:
        if is_check(cell):
            text = "".join(o.get("text", "") for o in cell.outputs)
            cell.source = f"print({text!r}, end='')"
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    subs = root / "submissions"
    samples = {
        "ada/my-lab-1.ipynb": with_solution(FULL),           # found by its metadata, not its name
        "ben/01-handshake-client.ipynb": with_solution(PARTIAL),
        "cy/01-handshake-client.ipynb": with_solution(ENDLESS),
        "dee/01-handshake-client.ipynb": with_solution(CRASH),
        "eve/01-handshake-client.ipynb": edited_checks(),
        "fay/01-handshake-client.ipynb": with_solution(SYNTAX),
    }
    for name, nb in samples.items():
        (subs / name).parent.mkdir(parents=True)
        nbformat.write(nb, subs / name)
    (subs / "gus").mkdir()
    (subs / "gus" / "01-handshake-client.ipynb").write_text("I ran out of time, sorry!\n")
    (subs / "hal").mkdir()
    (subs / "hal" / "notes.txt").write_text("lab 1: see my email\n")
    # a copy of ada's notebook in Jupyter's checkpoints folder is not a submission
    (subs / "ada" / ".ipynb_checkpoints").mkdir()
    nbformat.write(with_solution(SYNTAX), subs / "ada" / ".ipynb_checkpoints" / "my-lab-1-checkpoint.ipynb")
    return root, subs


@pytest.fixture(scope="module")
def run(graded, request):
    root, subs = graded
    capture = request.getfixturevalue("capsys_module")
    code = main(["grade", str(subs), "--source", str(ROOT / "labs"), "--out", str(root / "gradebook.csv"),
                 "--html", str(root / "gradebook.html"), "--jobs", "2", "--timeout", str(TIMEOUT_S)])
    out, err = capture()
    return code, out, err, root


@pytest.fixture(scope="module")
def capsys_module():
    """capsys for a module-scoped fixture: capture the CLI's stdout and stderr with redirects."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(out))
    stack.enter_context(contextlib.redirect_stderr(err))

    def finish():
        stack.close()
        return out.getvalue(), err.getvalue()
    yield finish
    stack.close()


def rows(root) -> dict[str, dict[str, str]]:
    with open(root / "gradebook.csv", newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_grade_finishes_with_a_one_line_summary(run):
    code, out, err, _ = run
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = lines[0]
    assert summary.startswith("graded 7 notebook(s) of 8 student(s) for 1 lab(s) in ")
    assert "with 2 job(s)" in summary
    assert "1 missing; 1 not a notebook" in summary
    assert "grading" in err and "7/7" in err        # tqdm's progress bar, on stderr


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_points_per_student(run, student):
    total, per_check, _ = EXPECTED[student]
    row = rows(run[3])[student]
    assert row["lab"] == "01-handshake-client"
    assert {name: int(row[f"01-handshake-client/{name}"]) for name in per_check} == per_check
    assert (int(row["total"]), int(row["max"])) == (total, 6)


def test_csv_columns(run):
    with open(run[3] / "gradebook.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["student", "lab", "notebook", "01-handshake-client/right-password",
                      "01-handshake-client/wrong-password", "01-handshake-client/server-gone",
                      "01-handshake-client/special-password", "total", "max", "feedback"]
    assert list(rows(run[3])) == sorted(EXPECTED)


def test_feedback(run):
    feedback = {student: row["feedback"] for student, row in rows(run[3]).items()}
    assert feedback["ada"] == "all checks passed"
    assert rows(run[3])["ada"]["notebook"] == "my-lab-1.ipynb"
    assert "wrong-password: output differs from the reference:" in feedback["ben"]
    assert "special-password: hidden check failed: it raised UnicodeEncodeError" in feedback["ben"]
    assert f"wrong-password: timed out after {TIMEOUT_S:g} s" in feedback["cy"]
    assert "wrong-password: the kernel died or stopped responding" in feedback["dee"]
    assert "server-gone: not run: the kernel had died" in feedback["dee"]
    assert "right-password: NotImplementedError: connect, send" in feedback["eve"]
    assert "your cell 'login' failed: SyntaxError" in feedback["fay"]
    assert "not a notebook" in feedback["gus"]
    assert feedback["hal"] == "no notebook for 01-handshake-client"


def test_hidden_check_feedback_does_not_tell_how_to_pass(run):
    """Only the check's name and the kind of failure: no expected output, no code."""
    row = rows(run[3])["ben"]
    hidden = [ln for ln in row["feedback"].splitlines() if ln.startswith("special-password")]
    assert hidden == ["special-password: hidden check failed: it raised UnicodeEncodeError"]
    assert "carol" not in row["feedback"] and "wörd" not in row["feedback"]


def test_html_gradebook(run):
    page = (run[3] / "gradebook.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "Lab 1: Handshake client" in page
    for student, (total, _, _) in EXPECTED.items():
        assert f"<td>{student}</td>" in page
        assert f'<td class="total">{total}/6</td>' in page
    assert html.escape("your cell 'login' failed: SyntaxError") in page
    assert page.count('class="pass"') == 4 + 2 + 3 + 1   # checks passed by ada, ben, cy, dee


def test_no_process_is_left_behind(run):
    """Kernels run in sessions of their own: grading must still end them all."""
    assert _marked_processes() == []


def _marked_processes() -> list[str]:
    from mailkit.labs.runner import MARKER
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if f"{MARKER}=".encode() in (entry / "environ").read_bytes():
                found.append(entry.name)
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes through /proc")
def test_a_run_past_its_deadline_is_killed_with_everything_it_started():
    """A kernel that ignores interrupts, and a process the student started:
    the run ends at its deadline and leaves nothing behind."""
    from mailkit.labs.runner import run_notebook
    first = nbformat.v4.new_code_cell("print('hello')", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="hello\n")])
    stubborn = nbformat.v4.new_code_cell(
        "import signal, subprocess\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    pass\n")
    nb = nbformat.v4.new_notebook(cells=[first, stubborn, nbformat.v4.new_code_cell("print(1)")])
    result = run_notebook(nb, cell_timeout=1, deadline=4)
    assert result.killed
    assert result.cells[0].passed and 2 not in result.cells
    assert 3.5 < result.seconds < 10
    assert _marked_processes() == []
