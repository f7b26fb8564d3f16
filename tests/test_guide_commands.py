"""The grading commands of docs/instructor.md, run verbatim (issue 19).

Each block is taken from the guide as it is written and run with bash from
the folder the guide implies (one holding `labs/`, where `submissions/`
goes), with relative paths, so a guide whose commands do not work as
written fails here.  Two things stand in for the class's machine: `python`
is this checkout's `.venv/bin/python` (the guide says `python` is the one
with mailkit installed), and `sudo` runs its command as is (these tests run
as root already; the image may not have sudo).  The collection recipe reads
`HOMES` (default /home), which points it at homes made here.

Grading runs sandboxed: root and bubblewrap (CI installs it: .ci/run)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mailkit.labs import sandbox
from mailkit.labs.notebook import is_solution, load_lab

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "instructor.md"
LAB = "01-handshake-client"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.available()), reason=f"no sandbox here: {sandbox.available()}")]


def blocks() -> list[str]:
    """Every fenced block of the guide without a language (the shell's)."""
    found, current, fence = [], None, ""
    for line in GUIDE.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```") and current is None:
            current, fence = [], line.strip()
        elif line.startswith("```"):
            if fence == "```":
                found.append("".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return found


def block(starting: str) -> str:
    found = [b for b in blocks() if b.startswith(starting)]
    assert len(found) == 1, f"the guide has {len(found)} blocks starting {starting!r}"
    return found[0]


def bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    done = subprocess.run(["bash", "-e", "-c", 'sudo() { "$@"; }\n' + script], cwd=cwd,
                          env=dict(os.environ, PATH=path, **env), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def with_solution(released: Path) -> nbformat.NotebookNode:
    answers = {c.id: c.source for c in load_lab(ROOT / "labs" / f"{LAB}.ipynb").nb.cells if is_solution(c)}
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        if cell.get("id") in answers:
            cell.source = answers[cell.id]
    return nb


def rows(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "gradebook.csv", newline="", encoding="utf-8") as f:
        return {row["student"]: row for row in csv.DictReader(f) if row["lab"] == LAB}


def test_the_whole_cycle_runs_as_written(tmp_path):
    """Release, collect (here: two students' notebooks made from the
    release), grade: the first block of the guide."""
    shutil.copytree(ROOT / "labs", tmp_path / "labs")
    cycle = block("python -m mailkit.labs release labs/ --out release/          # student versions")
    release, _, grading = cycle.partition("# ... students work")
    grading = grading.partition("\n")[2]
    bash(release, tmp_path)
    released = tmp_path / "release" / f"{LAB}.ipynb"
    for student, nb in (("alice", with_solution(released)), ("bob", nbformat.read(released, as_version=4))):
        (tmp_path / "submissions" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "submissions" / student / f"{LAB}.ipynb")
    done = bash(grading, tmp_path)
    assert "grader error" not in done.stdout
    assert rows(tmp_path)["alice"]["total"] == "9" and rows(tmp_path)["bob"]["total"] == "0"
    assert (tmp_path / "gradebook.html").exists() and (tmp_path / "canvas.csv").exists()


def test_collecting_from_jupyterhub_follows_no_link_and_grading_runs_as_written(tmp_path):
    """The hub's collection loop copies alice's notebook, not bob's link to
    /etc/shadow nor eve's folder that links into alice's home; then the
    Grading section's command grades what was collected."""
    shutil.copytree(ROOT / "labs", tmp_path / "labs")
    homes = tmp_path / "homes"
    mine = homes / "alice" / "mailkit-course" / "assignments"
    mine.mkdir(parents=True)
    shutil.copy(ROOT / "labs" / f"{LAB}.ipynb", mine / "scratch.txt")      # not a notebook: not copied
    nbformat.write(with_solution(_released(tmp_path)), mine / f"{LAB}.ipynb")
    bobs = homes / "bob" / "mailkit-course" / "assignments"
    bobs.mkdir(parents=True)
    (bobs / f"{LAB}.ipynb").symlink_to("/etc/shadow")
    (homes / "eve").mkdir()
    (homes / "eve" / "mailkit-course").symlink_to(homes / "alice" / "mailkit-course")

    bash(block("HOMES=${HOMES:-/home}"), tmp_path, HOMES=str(homes))
    subs = tmp_path / "submissions"
    assert sorted(p.name for p in subs.iterdir()) == ["alice", "bob", "eve"]
    assert [p.name for p in (subs / "alice").iterdir()] == [f"{LAB}.ipynb"]
    assert (subs / "alice" / f"{LAB}.ipynb").read_bytes() == (mine / f"{LAB}.ipynb").read_bytes()
    assert list((subs / "bob").iterdir()) == [] and list((subs / "eve").iterdir()) == []

    done = bash(block("sudo python -m mailkit.labs grade submissions/"), tmp_path)
    assert "grader error" not in done.stdout
    assert rows(tmp_path)["alice"]["total"] == "9"
    assert (tmp_path / "feedback" / "alice" / f"{LAB}.txt").exists()


def _released(tmp_path: Path) -> Path:
    from mailkit.labs.notebook import student_version
    path = tmp_path / "released.ipynb"
    nbformat.write(student_version(load_lab(ROOT / "labs" / f"{LAB}.ipynb")), path)
    return path
