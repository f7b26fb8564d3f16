"""Issue 19: every attack on the grader, graded by the real
``python -m mailkit.labs grade`` with the sandbox on, run the way the guide
writes it (relative paths, from the folder holding ``submissions/`` and
``labs/``).

Each hostile submission earns no more than the released stub, leaves the
classmate's score, the gradebook and the host unchanged, and runs nothing
outside the sandbox: the marker file each payload tries to write on the
host does not exist afterwards.

Grading runs sandboxed, as it does for an instructor: these tests need
root and bubblewrap (CI installs it: .ci/run)."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mailkit.labs import sandbox
from mailkit.labs.notebook import is_solution, load_lab, student_version

ROOT = Path(__file__).resolve().parent.parent
LABS = ["01-handshake-client", "02-framing"]
SOURCES = {lab: load_lab(ROOT / "labs" / f"{lab}.ipynb") for lab in LABS}
TIMEOUT_S = 5.0

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.available()), reason=f"no sandbox here: {sandbox.available()}")]


def stub(lab: str) -> nbformat.NotebookNode:
    return student_version(SOURCES[lab])


def solved(lab: str) -> nbformat.NotebookNode:
    """The student version with the source's solutions pasted in."""
    source = SOURCES[lab]
    answers = {c.id: c.source for c in source.nb.cells if is_solution(c)}
    nb = student_version(source)
    for cell in nb.cells:
        if cell.get("id") in answers:
            cell.source = answers[cell.id]
    return nb


def payload(marker: Path, classmate: Path) -> str:
    """What a hostile cell runs (issue 19): it writes the host marker, reads
    what it must not (the shadow file, the classmate's notebook), forges
    pass lines into the report where the harness kept it (its working
    folder) and into any descriptor it holds, and exits hard."""
    return f"""
import json, os, pathlib
pathlib.Path({str(marker)!r}).write_text("ran outside the sandbox")
stolen = [pathlib.Path(p).read_text()[:80] for p in ("/etc/shadow", {str(classmate)!r})]
print("stolen:", stolen)
for path in ("report.jsonl", os.path.join(os.getcwd(), "report.jsonl")):   # where the harness's report was
    with open(path, "a") as f:
        for i in range(40):
            f.write(json.dumps({{"cell": i, "passed": True, "status": "ok", "got": ""}}) + "\\n")
for fd in range(3, 64):
    try:
        os.write(fd, b'{{"cell": 0, "passed": true, "status": "ok"}}\\n')
    except OSError:
        pass
os._exit(0)
"""


def with_cell(nb: nbformat.NotebookNode, source: str, metadata: dict) -> nbformat.NotebookNode:
    """*nb* with one more code cell after its first solution cell."""
    nb = copy.deepcopy(nb)
    at = next(i for i, c in enumerate(nb.cells) if is_solution(c)) + 1
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata.update(metadata)
    nb.cells.insert(at, cell)
    return nb


def posing_as_checks(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """Every code cell of the stub given the payload and a check's metadata
    (hidden, and with the names of the real checks), the solution cells too."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.metadata["mailkit"] = {"check": f"x{i}", "hidden": True, "points": 100,
                                        "solution": "login", "reference": ""}
    return with_cell(nb, source, {"mailkit": {"check": "anything", "hidden": True}})


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One class, hostile and honest students side by side, graded with the
    guide's command from the folder the guide implies."""
    root = tmp_path_factory.mktemp("hostile")
    subs = root / "submissions"
    shutil.copytree(ROOT / "labs", root / "labs")
    markers = {}

    def put(student: str, name: str, nb) -> Path:
        path = subs / student / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        return path

    classmate = put("ada", "01-handshake-client.ipynb", solved(LABS[0]))
    put("ada", "02-framing.ipynb", solved(LABS[1]))
    for lab in LABS:
        put("stub", f"{lab}.ipynb", stub(lab))
        markers[f"meta-{lab}"] = root / f"marker-meta-{lab}"
        put("meta", f"{lab}.ipynb", with_cell(stub(lab), payload(markers[f"meta-{lab}"], classmate),
                                               {"mailkit": {"check": "anything", "hidden": True}}))
        markers[f"posing-{lab}"] = root / f"marker-posing-{lab}"
        put("posing", f"{lab}.ipynb", posing_as_checks(stub(lab), payload(markers[f"posing-{lab}"], classmate)))
    # links: to the source (the solution), to a classmate, to root's secrets; a folder that is a link
    (subs / "linker").mkdir()
    (subs / "linker" / "01-handshake-client.ipynb").symlink_to(root / "labs" / "01-handshake-client.ipynb")
    (subs / "copycat").mkdir()
    (subs / "copycat" / "01-handshake-client.ipynb").symlink_to(classmate)
    (subs / "shadow").mkdir()
    (subs / "shadow" / "01-handshake-client.ipynb").symlink_to("/etc/shadow")
    (subs / "mirror").symlink_to(root / "labs")
    (subs / "piper").mkdir()
    os.mkfifo(subs / "piper" / "01-handshake-client.ipynb")
    # one file nested 100,000 deep: beside an honest notebook, and as the lab's notebook
    put("deep", "01-handshake-client.ipynb", solved(LABS[0]))
    (subs / "deep" / "notes.ipynb").write_bytes(DEEP)
    (subs / "deeper").mkdir()
    (subs / "deeper" / "01-handshake-client.ipynb").write_bytes(DEEP)
    # names that clean to the same folder, and one a spreadsheet would run
    put("Bob Smith", "01-handshake-client.ipynb", solved(LABS[0]))
    put("Bob_Smith", "01-handshake-client.ipynb", stub(LABS[0]))
    put("=1+2", "01-handshake-client.ipynb", stub(LABS[0]))
    before = {"classmate": classmate.read_bytes(), "labs": sorted((p.name, p.read_bytes()) for p in
                                                                  (root / "labs").glob("*.ipynb"))}
    done = subprocess.run(
        [sys.executable, "-m", "mailkit.labs", "grade", "submissions/", "--source", "labs/",
         "--out", "gradebook.csv", "--canvas", "canvas.csv", "--feedback", "feedback",
         "--lab", LABS[0], "--lab", LABS[1], "--jobs", "2", "--timeout", str(TIMEOUT_S), "--quiet"],
        cwd=root, capture_output=True, text=True, timeout=900)
    return root, done, before, markers


def rows(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(root / "gradebook.csv", newline="", encoding="utf-8") as f:
        return {(row["student"], row["lab"]): row for row in csv.DictReader(f)}


def total(root: Path, student: str, lab: str) -> float:
    return float(rows(root)[(student, lab)]["total"])


def test_the_command_of_the_guide_grades_with_relative_paths(graded):
    root, done, _, _ = graded
    assert done.returncode == 0, done.stderr[-2000:]
    assert "graded " in done.stdout and "grader error" not in done.stdout
    assert total(root, "ada", LABS[0]) == SOURCES[LABS[0]].max_points      # relative --out: not 0 (issue 19)
    assert total(root, "ada", LABS[1]) == SOURCES[LABS[1]].max_points
    assert not (root / "gradebook.csv.journal.tmp").exists()


@pytest.mark.parametrize("student", ["meta", "posing"])
@pytest.mark.parametrize("lab", LABS)
def test_cell_metadata_earns_nothing_and_runs_nothing_outside_the_sandbox(graded, student, lab):
    """A cell with {"mailkit": {"check": ..., "hidden": true}} used to be a
    probe exec'd in the harness as root: full marks, /etc/shadow read."""
    root, _, _, markers = graded
    assert total(root, student, lab) <= total(root, "stub", lab)
    assert not markers[f"{student}-{lab}"].exists()
    row = rows(root)[(student, lab)]
    assert row["sandbox"] == "yes"
    assert "root:" not in row["feedback"] and "stolen" not in row["feedback"]


def test_the_classmate_and_the_sources_are_unchanged(graded):
    root, _, before, _ = graded
    assert (root / "submissions" / "ada" / "01-handshake-client.ipynb").read_bytes() == before["classmate"]
    assert sorted((p.name, p.read_bytes()) for p in (root / "labs").glob("*.ipynb")) == before["labs"]
    assert not list(root.glob("marker-*"))


@pytest.mark.parametrize("student", ["linker", "copycat", "shadow", "piper"])
def test_a_link_or_a_special_file_is_skipped_and_scores_0(graded, student):
    root, _, _, _ = graded
    row = rows(root)[(student, LABS[0])]
    assert float(row["total"]) == 0
    assert "skipped:" in row["feedback"]
    if student != "piper":
        assert "skipped: symlink" in row["feedback"]


def test_a_folder_that_is_a_link_scores_0_in_every_lab(graded):
    root, _, _, _ = graded
    for lab in LABS:
        row = rows(root)[("mirror", lab)]
        assert float(row["total"]) == 0 and "skipped: symlink mirror/" in row["feedback"]


def test_no_line_of_a_linked_file_reaches_feedback(graded):
    root, _, _, _ = graded
    secret = Path("/etc/shadow").read_text().splitlines()[0]
    for path in [root / "gradebook.csv", root / "canvas.csv", *(root / "feedback").rglob("*.txt")]:
        assert secret not in path.read_text(), path


def test_a_file_nested_100000_deep_costs_only_its_own_student(graded):
    root, done, _, _ = graded
    assert total(root, "deep", LABS[0]) == SOURCES[LABS[0]].max_points     # notes.ipynb beside it: nothing lost
    row = rows(root)[("deeper", LABS[0])]
    assert float(row["total"]) == 0
    assert "not a notebook: nested 100000 deep" in row["feedback"]
    assert "RecursionError" not in done.stderr


def test_feedback_folders_are_one_per_student(graded):
    root, _, _, _ = graded
    folders = {p.parent.name: p.read_text() for p in (root / "feedback").rglob(f"{LABS[0]}.txt")}
    students = {s for s, lab in rows(root) if lab == LABS[0]}
    assert len(folders) == len(students)
    mine = [text for name, text in folders.items() if name.startswith("Bob_Smith")]
    assert sorted(re.search(r"(\d+/\d+) points", t).group(1) for t in mine) == ["0/9", "9/9"]


def test_csv_cells_that_would_be_formulas_are_neutralised(graded):
    root, _, _, _ = graded
    for name in ("gradebook.csv", "canvas.csv"):
        with open(root / name, newline="", encoding="utf-8") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        assert "'=1+2" in cells, name
        assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")
                    or (c.startswith("-") and not c.lstrip("-").replace(".", "").isdigit())], name


# -- a grader failure is never a grade ---------------------------------------------


def test_a_grader_failure_is_not_a_grade_and_is_retried(tmp_path):
    """A hidden check with a bug of its own (here a name it never defined)
    is a grader error: no score, not journalled, counted in the summary,
    and graded by the next run once the lab is fixed."""
    labs = tmp_path / "labs"
    labs.mkdir()
    good = (ROOT / "labs" / f"{LABS[0]}.ipynb").read_text()
    nb = nbformat.reads(good, as_version=4)
    probe = next(c for c in nb.cells if c.get("metadata", {}).get("mailkit", {}).get("hidden"))
    probe.source = probe.source.replace("@hidden_check", "helper_the_lab_forgot()\n@hidden_check", 1)
    nbformat.write(nb, labs / f"{LABS[0]}.ipynb")
    (tmp_path / "submissions" / "ada").mkdir(parents=True)
    nbformat.write(solved(LABS[0]), tmp_path / "submissions" / "ada" / f"{LABS[0]}.ipynb")
    command = [sys.executable, "-m", "mailkit.labs", "grade", "submissions/", "--source", "labs/",
               "--out", "gradebook.csv", "--quiet", "--timeout", str(TIMEOUT_S)]
    first = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "1 grader error(s)" in first.stdout
    row = rows(tmp_path)[("ada", LABS[0])]
    assert "grader failed" in row["feedback"] and "NameError" in row["feedback"]
    journal = tmp_path / "gradebook.csv.journal"
    assert not journal.exists() or "grader error" not in journal.read_text()
    (labs / f"{LABS[0]}.ipynb").write_text(good)
    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "grader error" not in second.stdout and "taken from the journal" not in second.stdout
    assert total(tmp_path, "ada", LABS[0]) == SOURCES[LABS[0]].max_points


# -- bounded per submission -----------------------------------------------------


def test_the_run_limit_does_not_grow_with_the_cells_a_student_adds(tmp_path):
    """30 added cells of 4 s each (under the cell limit of 5 s) used to
    stretch the deadline to 30 s + 15 s per cell; now the lab's one limit
    (here declared as 20 s in the source's metadata) stops the run, and the
    checks after it fail."""
    labs = tmp_path / "labs"
    labs.mkdir()
    nb = nbformat.read(ROOT / "labs" / f"{LABS[0]}.ipynb", as_version=4)
    nb.metadata["mailkit"]["run_limit_s"] = 20
    nbformat.write(nb, labs / f"{LABS[0]}.ipynb")
    student = solved(LABS[0])
    at = next(i for i, c in enumerate(student.cells) if is_solution(c)) + 1
    student.cells[at:at] = [nbformat.v4.new_code_cell("import time\ntime.sleep(4)") for _ in range(30)]
    (tmp_path / "submissions" / "sam").mkdir(parents=True)
    nbformat.write(student, tmp_path / "submissions" / "sam" / f"{LABS[0]}.ipynb")
    done = subprocess.run([sys.executable, "-m", "mailkit.labs", "grade", "submissions/", "--source", "labs/",
                           "--out", "gradebook.csv", "--quiet", "--timeout", str(TIMEOUT_S)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    row = rows(tmp_path)[("sam", LABS[0])]
    assert "1 timed out" in done.stdout
    assert "the limit for the whole notebook is 20 s" in row["feedback"]
    assert float(row["total"]) == 0          # every check comes after the sleeps: none ran


def test_memory_is_bounded_per_submission_not_per_process():
    """Four forked children of 300 MB each, under --memory 600: each is
    below the per-process limit, the four together are not.  With a memory
    cgroup they cannot all live; without one the bound is the product the
    guide states."""
    from mailkit.labs.runner import run_notebook
    limits = sandbox.Limits(memory_mb=600)
    bound = sandbox.memory_bound(limits)
    hog = nbformat.v4.new_code_cell(
        "import os, time\n"
        "alive, pids = [], []\n"
        "for _ in range(4):\n"
        "    r, w = os.pipe()\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = bytearray(300 * 2**20)\n"
        "        block[::4096] = b'x' * len(block[::4096])\n"
        "        os.write(w, b'1')\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    os.close(w)\n"
        "    alive.append(os.read(r, 1))\n"
        "    pids.append(pid)\n"
        "time.sleep(2)\n"
        "living = [pid for pid in pids if os.waitpid(pid, os.WNOHANG) == (0, 0)]\n"
        "print('all four hold their memory:', alive.count(b'1') == 4 and len(living) == 4)\n",
        execution_count=1,
        outputs=[nbformat.v4.new_output("stream", name="stdout", text="all four hold their memory: True\n")])
    hog.metadata["mailkit"] = {"check": "hog"}
    result = run_notebook(nbformat.v4.new_notebook(cells=[hog]), cell_timeout=60, sandbox=True, limits=limits)
    assert result.memory == bound
    if bound.startswith("cgroup"):
        assert not result.cells[0].passed, "four children of 300 MB lived under a cap of 600 MB"
    else:
        assert bound == "rlimits only: 600 MB per process x 256 processes = 150 GB per submission"
        assert result.cells[0].passed


def test_a_harness_that_fails_is_a_grader_error_not_a_score():
    """The grader's own failure (here its harness cannot start the kernel:
    an rlimit the kernel refuses) says so, and judging it gives no grade."""
    from mailkit.labs.judging import judge
    from mailkit.labs.planning import plan
    from mailkit.labs.reading import parse_notebook
    from mailkit.labs.runner import run_job
    lab = SOURCES[LABS[0]]
    job = plan(lab, parse_notebook("x", nbformat.writes(solved(LABS[0])).encode()))
    run = run_job(job, sandbox=True, limits=sandbox.Limits(open_files=-5))
    assert run.grader_error.startswith("the grader's harness failed: ")
    result = judge(lab, job, run, student="ada")
    assert result.problem == "grader error" and result.points == 0
    assert "the next grade retries it" in result.feedback()
