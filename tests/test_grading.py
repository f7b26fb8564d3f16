"""Grading a class: `python -m mailkit.labs grade` on sample submissions of
lab 1 that the tests make: a full solution, a partial one, an endless loop,
a crash, edited check cells, a syntax error, a file that is not a notebook,
a student who handed in nothing, and one hostile notebook per attack of
issue 15.  Each gets the right points (the hostile ones nothing beyond
their honest part), the classmates and the gradebook are untouched, no
process is left behind, and the gradebook files say so.

Grading runs sandboxed, as it does for an instructor: these tests need
root and bubblewrap (CI installs it: .ci/run)."""

from __future__ import annotations

import csv
import html
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from mailkit.labs.__main__ import main
from mailkit.labs import sandbox
from mailkit.labs.notebook import is_check, is_solution, load_lab, student_version

ROOT = Path(__file__).resolve().parent.parent
LAB = load_lab(ROOT / "labs" / "01-handshake-client.ipynb")
TIMEOUT_S = 5.0

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.available()), reason=f"no sandbox here: {sandbox.available()}")]

FULL = next(c.source for c in LAB.nb.cells if is_solution(c))

PARTIAL = '''
def login(host, port, user, password):
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"{user}:{password}".encode("ascii"))
        sock.shutdown(socket.SHUT_WR)
        reply = sock.recv(1024).decode()
    if reply.startswith("OK:"):
        return reply[3:]
'''   # no LoginFailed on KO, ASCII only, one recv: right-password + server-gone = 3 points

ENDLESS = FULL.replace("raise LoginFailed(text)", "while True:\n            pass")   # loops on a wrong password
CRASH = "import os\n" + FULL.replace("raise LoginFailed(text)", "os._exit(1)")   # the kernel dies on one

SYNTAX = "def login(host, port, user, password)\n    return '0123456789'\n"

CHECKS = ["right-password", "wrong-password", "server-gone", "special-password", "reply-in-pieces"]
HIDDEN = {"special-password", "reply-in-pieces"}
VISIBLE_POINTS = 5


def points(*per_check):
    return dict(zip(CHECKS, per_check))


EXPECTED = {   # student: (total, points per check, problem)
    "ada": (9, points(2, 2, 1, 2, 2), ""),
    "ben": (3, points(2, 0, 1, 0, 0), ""),
    "cy": (5, points(2, 0, 1, 0, 2), ""),
    "dee": (2, points(2, 0, 0, 0, 0), ""),
    "eve": (0, points(0, 0, 0, 0, 0), ""),
    "fay": (0, points(0, 0, 0, 0, 0), ""),
    "gus": (0, points(0, 0, 0, 0, 0), "not a notebook"),
    "hal": (0, points(0, 0, 0, 0, 0), "missing"),
    # the attacks: the honest part of each is the solution it carries (stub: 0, FULL: 9)
    "ivy": (VISIBLE_POINTS, points(2, 2, 1, 0, 0), ""),   # forges the visible checks it knows; no hidden point
    "jon": (0, points(0, 0, 0, 0, 0), ""),
    "kim": (9, points(2, 2, 1, 2, 2), ""),
    "lee": (0, points(0, 0, 0, 0, 0), ""),
    "mo": (9, points(2, 2, 1, 2, 2), ""),
}


def with_solution(code: str, *extra: str) -> nbformat.NotebookNode:
    """The student version with *code* as the solution, and *extra* cells right after it."""
    nb = student_version(LAB)
    for i, cell in enumerate(nb.cells):
        if is_solution(cell):
            cell.source = code
            nb.cells[i + 1:i + 1] = [nbformat.v4.new_code_cell(x) for x in extra]
            break
    return nb


def edited_checks() -> nbformat.NotebookNode:
    """The stub, with every check cell rewritten to print its reference output."""
    nb = student_version(LAB)
    for cell in nb.cells:
        if is_check(cell):
            text = "".join(o.get("text", "") for o in cell.outputs)
            cell.source = f"print({text!r}, end='')"
    return nb


def references() -> dict[str, str]:
    """What a student knows: the visible checks' sources and reference outputs."""
    return {c.source: "".join(o.get("text", "") for o in c.outputs)
            for c in student_version(LAB).cells if is_check(c)}


# -- the attacks of issue 15, each a cell a student adds ----------------------------

def forger_of_outputs() -> str:
    """Issue 15's first attack: read the notebook the grader writes into the
    kernel's folder (every reference output and hidden check), and install an
    IPython input transformer that prints the expected output in place of
    each check.  The visible checks' outputs are in the student's own
    notebook; the hidden ones are nowhere the kernel can read."""
    return f'''
import glob, json, os
found = {{}}
for pattern in ["*.ipynb", "../*.ipynb", "/tmp/**/*.ipynb", "/home/**/*.ipynb", "/run/**/*", "/*.ipynb", "/*/*.ipynb"]:
    for path in glob.glob(pattern, recursive=True)[:50]:
        try:
            found[path] = open(path).read()
        except OSError:
            pass
known = {references()!r}
for text in found.values():
    try:
        for cell in json.loads(text).get("cells", []):
            if cell.get("metadata", {{}}).get("mailkit", {{}}).get("check"):
                known["".join(cell["source"])] = "".join(o.get("text", "") for o in cell.get("outputs", []))
    except Exception:
        pass
def fake(lines):
    source = "".join(lines)
    for check, output in known.items():
        if source.strip() == check.strip() or check.strip() in source:
            return [f"print({{output!r}}, end='')\\n"]
    return lines
get_ipython().input_transformers_cleanup.append(fake)
print("grader notebooks found:", len(found))
'''


def snooper(gradebook: Path, classmate: Path) -> str:
    """Issue 15's second attack: find labs/ through the grader's /proc entry
    and leak what it read into the feedback through an exception message."""
    return f'''
import os
leaked = []
paths = [{str(ROOT / "labs" / "01-handshake-client.ipynb")!r}, {str(gradebook)!r}, {str(classmate)!r},
         "/proc/1/environ", "/proc/1/cwd", "/root"]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        paths += [f"/proc/{{pid}}/cwd/labs/01-handshake-client.ipynb", f"/proc/{{pid}}/environ"]
for path in paths:
    try:
        text = open(path, errors="replace").read() if not os.path.isdir(path) else str(os.listdir(path))
    except OSError:
        continue
    if "BEGIN SOLUTION" in text or "wonderland" in text or "MAILKIT" in text or "alice" in text:
        leaked.append(text[:2000])
raise RuntimeError("LEAK " + repr(leaked))
'''


def daemon(gradebook: Path, classmate: Path, old: Path) -> str:
    """Issue 15's third attack: a process that leaves the kernel's session,
    clears its environment, outlives the run, then rewrites the gradebook,
    a classmate's notebook and an old gradebook."""
    return f'''
import os, subprocess, sys
code = """
import time
time.sleep(4)
for path, text in [({str(gradebook)!r}, "student,total\\\\nkim,999\\\\n"), ({str(classmate)!r}, "{{}}"),
                   ({str(old)!r}, "kim,999\\\\n")]:
    try:
        open(path, "w").write(text)
    except OSError:
        pass
"""
subprocess.Popen([sys.executable, "-c", code], env={{}}, start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    os.execve(sys.executable, [sys.executable, "-c", code], {{}})
'''


def result_forger() -> str:
    """Issue 15's fourth attack: delete and forge the result file the checker
    writes (a report line saying every cell passed), wherever it can."""
    return '''
import glob, json, os
forged = "".join(json.dumps({"cell": i, "passed": True}) + "\\n" for i in range(40))
written = []
for folder in [".", "/tmp", os.path.expanduser("~"), "/run/mailkit", "/"] + glob.glob("/tmp/*/"):
    for name in ["report.jsonl", "report.json", "results.json"]:
        path = os.path.join(folder, name)
        try:
            if os.path.exists(path):
                os.remove(path)
            with open(path, "w") as f:
                f.write(forged)
            written.append(path)
        except OSError:
            pass
print(forged, end="")
'''


HOG = "big = bytearray(2 * 1024 ** 3)   # 2 GB\nbig[::4096] = b'x' * len(big[::4096])\n"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    subs = root / "submissions"
    gradebook = root / "gradebook.csv"
    old = root / "old-gradebook.csv"
    old.write_text("student,total\nkim,3\n")
    classmate = subs / "ada" / "my-lab-1.ipynb"
    samples = {
        "ada/my-lab-1.ipynb": with_solution(FULL),           # found by its metadata, not its name
        "ben/01-handshake-client.ipynb": with_solution(PARTIAL),
        "cy/01-handshake-client.ipynb": with_solution(ENDLESS),
        "dee/01-handshake-client.ipynb": with_solution(CRASH),
        "eve/01-handshake-client.ipynb": edited_checks(),
        "fay/01-handshake-client.ipynb": with_solution(SYNTAX),
        "ivy/01-handshake-client.ipynb": with_solution(student_version(LAB).cells[3].source, forger_of_outputs()),
        "jon/01-handshake-client.ipynb": with_solution(student_version(LAB).cells[3].source,
                                                       snooper(gradebook, classmate)),
        "kim/01-handshake-client.ipynb": with_solution(FULL, daemon(gradebook, classmate, old)),
        "lee/01-handshake-client.ipynb": with_solution(student_version(LAB).cells[3].source, result_forger()),
        "mo/01-handshake-client.ipynb": with_solution(FULL, HOG),
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
    return root, subs, {"classmate": classmate.read_bytes(), "old": old.read_text()}


@pytest.fixture(scope="module")
def run(graded, request):
    root, subs, before = graded
    capture = request.getfixturevalue("capsys_module")
    code = main(["grade", str(subs), "--source", str(ROOT / "labs"), "--out", str(root / "gradebook.csv"),
                 "--html", str(root / "gradebook.html"), "--canvas", str(root / "canvas.csv"),
                 "--feedback", str(root / "feedback"),
                 "--jobs", "2", "--timeout", str(TIMEOUT_S)])
    out, err = capture()
    return code, out, err, root, before


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
    code, out, err, _, _ = run
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = lines[0]
    assert summary.startswith(f"graded {len(EXPECTED) - 1} notebook(s) of {len(EXPECTED)} student(s) for 1 lab(s) in ")
    assert "with 2 job(s)" in summary
    assert "1 missing; 1 not a notebook" in summary
    assert "UNSANDBOXED" not in summary
    assert "grading" in err and f"{len(EXPECTED) - 1}/{len(EXPECTED) - 1}" in err   # tqdm's bar, on stderr


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_points_per_student(run, student):
    total, per_check, _ = EXPECTED[student]
    row = rows(run[3])[student]
    assert row["lab"] == "01-handshake-client"
    assert {name: int(row[f"01-handshake-client/{name}"]) for name in per_check} == per_check
    assert (int(row["total"]), int(row["max"])) == (total, 9)


def test_csv_columns(run):
    with open(run[3] / "gradebook.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["student", "lab", "notebook", *(f"01-handshake-client/{c}" for c in CHECKS),
                      "total", "max", "sandbox", "flags", "feedback"]
    assert list(rows(run[3])) == sorted(EXPECTED)
    sandboxed = {student: row["sandbox"] for student, row in rows(run[3]).items()}
    assert sandboxed.pop("gus") == sandboxed.pop("hal") == ""
    assert set(sandboxed.values()) == {"yes"}


def test_canvas_export(run):
    """Canvas's gradebook import: the identifying columns, a column per lab, Points Possible."""
    with open(run[3] / "canvas.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 1: Handshake client"]
    assert table[1] == ["Points Possible", "", "", "", "", "9"]
    assert {row[3]: int(row[5]) for row in table[2:]} == {s: total for s, (total, _, _) in EXPECTED.items()}


def test_feedback(run):
    feedback = {student: row["feedback"] for student, row in rows(run[3]).items()}
    assert feedback["ada"] == "all checks passed"
    assert rows(run[3])["ada"]["notebook"] == "my-lab-1.ipynb"
    assert "wrong-password: output differs from the reference:" in feedback["ben"]
    assert "special-password: hidden check failed: it raised UnicodeEncodeError" in feedback["ben"]
    assert f"wrong-password: timed out after {TIMEOUT_S:g} s" in feedback["cy"]
    assert "wrong-password: the kernel died or stopped responding" in feedback["dee"]
    assert "server-gone: not run: the kernel died or stopped before it" in feedback["dee"]
    assert "right-password: NotImplementedError: connect, send" in feedback["eve"]
    assert "your cell 'login' failed: SyntaxError" in feedback["fay"]
    assert "not a notebook" in feedback["gus"]
    assert feedback["hal"] == "no notebook for 01-handshake-client"


def test_feedback_files_one_per_student_and_lab(run):
    root = run[3]
    files = sorted(p.relative_to(root / "feedback").as_posix() for p in (root / "feedback").rglob("*.txt"))
    assert files == [f"{s}/01-handshake-client.txt" for s in sorted(EXPECTED)]
    ben = (root / "feedback" / "ben" / "01-handshake-client.txt").read_text()
    assert ben.startswith("Lab 1: Handshake client (01-handshake-client): 3/9 points")
    assert "PASS  right-password    2/2" in ben and "FAIL  wrong-password    0/2" in ben
    assert "expected: alice -> LoginFailed" in ben               # a visible check's difference
    assert "FAIL  special-password  0/2 (hidden)\n      hidden check failed: it raised UnicodeEncodeError" in ben
    assert "logged in as" not in ben and "hidden_check" not in ben   # no hidden expected value, no code


def test_hidden_check_feedback_does_not_tell_how_to_pass(run):
    """Only the check's name and the kind of failure: no expected output, no code."""
    row = rows(run[3])["ben"]
    hidden = [ln for ln in row["feedback"].splitlines() if ln.startswith(tuple(HIDDEN))]
    assert hidden == ["special-password: hidden check failed: it raised UnicodeEncodeError",
                      "reply-in-pieces: hidden check failed: its output differs from the reference"]
    assert "logged in as" not in row["feedback"] and "half" not in row["feedback"]


def test_html_gradebook(run):
    page = (run[3] / "gradebook.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "Lab 1: Handshake client" in page
    for student, (total, _, _) in EXPECTED.items():
        assert f"<td>{student}</td>" in page
        assert f'<td class="total">{total}/9</td>' in page
    assert html.escape("your cell 'login' failed: SyntaxError") in page
    passed = sum(sum(1 for p in per.values() if p) for _, per, _ in EXPECTED.values())
    assert page.count('class="pass"') == passed


# -- the attacks ---------------------------------------------------------------------

def test_forged_outputs_earn_no_hidden_point(run):
    """A kernel that reads what it can and patches IPython to print the
    expected outputs: it finds no grader notebook, and only the visible
    checks (whose outputs every student has) can be forged."""
    row = rows(run[3])["ivy"]
    assert all(row[f"01-handshake-client/{c}"] == "0" for c in HIDDEN)
    assert int(row["total"]) == VISIBLE_POINTS


def test_nothing_of_the_graders_is_readable_or_leaks(run):
    row = rows(run[3])["jon"]
    assert "a cell you added failed: RuntimeError: LEAK []" in row["feedback"]
    for secret in ("BEGIN SOLUTION", "sock.shutdown", "create_connection"):
        assert secret not in (run[3] / "gradebook.csv").read_text()
        assert secret not in (run[3] / "gradebook.html").read_text()


def test_a_process_left_behind_changes_nothing(run):
    """kim's detached processes would rewrite the gradebook, ada's notebook
    and an old gradebook 4 s after starting: they are dead with the run."""
    root, before = run[3], run[4]
    csv_before = (root / "gradebook.csv").read_bytes()
    time.sleep(5)
    assert (root / "gradebook.csv").read_bytes() == csv_before
    assert int(rows(root)["ada"]["total"]) == 9 and int(rows(root)["kim"]["total"]) == 9
    assert (root / "submissions" / "ada" / "my-lab-1.ipynb").read_bytes() == before["classmate"]
    assert (root / "old-gradebook.csv").read_text() == before["old"]


def test_a_forged_result_file_earns_nothing(run):
    row = rows(run[3])["lee"]
    assert int(row["total"]) == 0


def test_memory_is_capped(run):
    row = rows(run[3])["mo"]
    assert "a cell you added failed: MemoryError" in row["feedback"]
    assert int(row["total"]) == 9


def test_no_process_is_left_behind(run):
    """Every process of the grading run was a child of this one; none is left."""
    assert _my_descendants() == []


def _my_descendants() -> list[int]:
    """Processes whose parent is this test process (a kernel that outlived
    its harness would be reparented to init, so the runs' own records are
    checked too, in the tests below)."""
    ps = subprocess.Popen(["ps", "-o", "pid=", "--ppid", str(os.getpid())], stdout=subprocess.PIPE, text=True)
    out = ps.communicate()[0]
    return [int(p) for p in out.split() if int(p) != ps.pid]


def _alive(pid: int, started: str) -> bool:
    from mailkit.labs.harness import start_time
    return start_time(pid) == started != ""


def test_a_run_past_its_deadline_is_killed_with_everything_it_started():
    """A kernel that ignores interrupts, and processes the student started
    that left the session and cleared their environment: the run ends and
    the sandbox's PID namespace is empty afterwards."""
    from mailkit.labs.runner import run_notebook
    first = nbformat.v4.new_code_cell("print('hello')", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="hello\n")])
    first.metadata["mailkit"] = {"check": "hello"}
    stubborn = nbformat.v4.new_code_cell(
        "import os, signal, subprocess\n"
        "subprocess.Popen(['sh', '-c', 'sleep 300 & sleep 300'], env={}, start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n    os.execve('/usr/bin/sleep', ['sleep', '300'], {})\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    pass\n")
    nb = nbformat.v4.new_notebook(cells=[first, stubborn, nbformat.v4.new_code_cell("print(1)")])
    result = run_notebook(nb, cell_timeout=1, sandbox=True)
    assert result.cells[0].passed and not result.cells[1].passed and 2 not in result.cells
    assert "Failed to interrupt kernel" in result.cells[1].message
    assert result.processes_seen >= 5          # the kernel, sh, two sleeps, the forked sleep (+ bwrap's init)
    assert result.processes_left == 0


def test_killing_the_grader_loses_nothing(tmp_path):
    """SIGKILL the grader half-way (as an OOM kill would): its harnesses and
    sandboxes die with it; the same command again resumes from the journal
    and writes the whole gradebook."""
    subs = tmp_path / "submissions"
    for student in ("p1", "p2", "p3", "p4"):
        (subs / student).mkdir(parents=True)
        nbformat.write(with_solution(FULL), subs / student / "01-handshake-client.ipynb")
    out = tmp_path / "gradebook.csv"
    cmd = [sys.executable, "-m", "mailkit.labs", "grade", str(subs), "--source", str(ROOT / "labs"),
           "--out", str(out), "--quiet", "--jobs", "1"]
    grader = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = Path(f"{out}.journal")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and grader.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 1 and list(tmp_path.rglob("kernel.pids")):
            break
        time.sleep(0.05)
    records = [line.split() for f in tmp_path.rglob("*.pids") for line in f.read_text().splitlines()]
    assert grader.poll() is None, "the grader finished before it could be killed"
    grader.send_signal(signal.SIGKILL)
    grader.wait()
    assert not out.exists()
    assert records, "no run was under way"
    gone_by = time.monotonic() + 10
    while any(_alive(int(pid), started) for pid, started in records) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert [pid for pid, started in records if _alive(int(pid), started)] == []
    done = journal.read_text().count("\n")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{done} taken from the journal" in again.stdout
    with open(out, newline="") as f:
        assert {row["student"]: row["total"] for row in csv.DictReader(f)} == {
            "p1": "9", "p2": "9", "p3": "9", "p4": "9"}
    assert not Path(f"{journal}.tmp").exists()          # the killed run's private folders are gone too
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no half-written gradebook
    # ... and its runs' memory cgroups (named after the grader's pid), where this machine makes them
    parents = [parent for _, parent in sandbox.memory_cgroup_parents()]
    assert [c for parent in parents for c in parent.glob(f"mailkit-run-{grader.pid}-*")] == []


def test_grade_refuses_without_the_sandbox(tmp_path, monkeypatch, capsys):
    """Where the sandbox cannot run, grade refuses; --unsafe-no-sandbox grades
    and the gradebook says UNSANDBOXED."""
    monkeypatch.setattr(sandbox, "available", lambda: "bubblewrap is not installed (test)")
    subs = tmp_path / "submissions"
    (subs / "ada").mkdir(parents=True)
    nbformat.write(with_solution(FULL), subs / "ada" / "01-handshake-client.ipynb")
    out = tmp_path / "gradebook.csv"
    args = ["grade", str(subs), "--source", str(ROOT / "labs"), "--out", str(out), "--quiet"]
    assert main(args) == 2
    assert "cannot sandbox submissions: bubblewrap is not installed" in capsys.readouterr().err
    assert not out.exists()
    assert main(args + ["--unsafe-no-sandbox"]) == 0
    assert "UNSANDBOXED" in capsys.readouterr().out
    with open(out, newline="") as f:
        row = next(csv.DictReader(f))
    assert (row["sandbox"], row["total"]) == ("UNSANDBOXED", "9")
    assert row["flags"] == ""


def test_a_2017_lab_1_without_half_close_or_with_one_recv_loses_the_hidden_points(tmp_path):
    """Issue 15: lab 1 without the half-close, reading one recv(1024), scored 6/6."""
    from mailkit.labs.check import check_notebook
    no_half_close = FULL.replace("        sock.shutdown(socket.SHUT_WR)\n", "")
    one_recv = FULL.replace("while chunk := sock.recv(1024):\n            reply += chunk",
                            "reply = sock.recv(1024)")
    assert no_half_close != FULL and one_recv != FULL
    for name, code in [("no-half-close", no_half_close), ("one-recv", one_recv)]:
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(with_solution(code), path)
        result = check_notebook(path, LAB, hidden=True, sandbox=True, cell_timeout=TIMEOUT_S)
        failed = [c.name for c in result.checks if not c.passed]
        assert "reply-in-pieces" in failed, (name, failed)
        assert result.points < result.max_points


def test_warm_kernels_start_the_next_notebooks_kernel_and_leave_none(monkeypatch):
    """Grading starts the next notebook's harness and kernel while the
    current notebook runs: three notebooks take three harnesses (not three
    plus spares), each notebook's results are its own, a spare whose
    settings differ is not used, and no spare outlives the grading."""
    from mailkit.labs import runner
    started = []

    class Counted(runner._Harness):
        def __init__(self, settings):
            super().__init__(settings)
            started.append(self)
    monkeypatch.setattr(runner, "_Harness", Counted)

    def notebook(n):
        cell = nbformat.v4.new_code_cell(f"print({n} * 2)", execution_count=1, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text=f"{n * 2}\n")])
        cell.metadata["mailkit"] = {"check": "double"}
        wrong = nbformat.v4.new_code_cell("print('x')", execution_count=1, outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="y\n")])
        wrong.metadata["mailkit"] = {"check": "wrong"}
        return nbformat.v4.new_notebook(cells=[cell, wrong])

    with runner.warm_kernels(3):
        results = [runner.run_notebook(notebook(n), cell_timeout=5, sandbox=True) for n in range(3)]
        assert len(started) == 4             # the first, a spare for each next one, and one more spare
        spare = started[-1]
        assert spare.proc.poll() is None     # waiting with its kernel for a notebook that never comes
        other = runner.run_notebook(notebook(5), cell_timeout=5, sandbox=True, hide=["/srv/other"])
    assert [(r.cells[0].passed, r.cells[1].passed) for r in results] == [(True, False)] * 3
    assert other.cells[0].passed and spare.proc.returncode is not None   # not the spare: other settings
    assert len(started) == 5
    assert all(h.proc.returncode is not None and not h.private.exists() for h in started)


@pytest.mark.skipif(bool(sandbox.available()) and os.environ.get("CI") != "true",
                    reason=f"no sandbox here: {sandbox.available()}")
def test_a_readable_folder_under_tmp_is_not_hidden_by_the_sandboxs_own_tmp(monkeypatch, tmp_path):
    """A clone (and its .venv) may live in /tmp, where the sandbox mounts its
    own empty /tmp: the folders the kernel must read are bound on top of it,
    read-only, and the rest of /tmp stays the sandbox's own."""
    assert str(tmp_path).startswith("/tmp/")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "marker").write_text("readable")
    (tmp_path / "secret").write_text("not for the kernel")
    roots = sandbox.readable_roots() + [tmp_path / "venv"]
    monkeypatch.setattr(sandbox, "readable_roots", lambda: roots)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    script = (f"import os; print(open({str(tmp_path / 'venv' / 'marker')!r}).read()); "
              f"print(os.path.exists({str(tmp_path / 'secret')!r})); "
              "open('/tmp/scratch', 'w').write('x'); print('tmp writable')")
    command = sandbox.bwrap_command([sys.executable, "-c", script], uid=201234, run_dir=run_dir,
                                    limits=sandbox.Limits())
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["readable", "False", "tmp", "writable"], result.stderr
