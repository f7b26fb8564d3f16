"""How long does grading a class take?  Grades N copies of one lab's
solution (as N students' submissions) with `python -m mailkit.labs grade`,
once per --jobs value, with the sandbox and without it
(--unsafe-no-sandbox), and prints a table: seconds, per notebook, and
the sandbox's cost as a ratio.  With --nbgrader, the same N notebooks are
also graded by nbgrader's `autograde` (serial, unsandboxed: how nbgrader
runs), for comparison.

    .venv/bin/python benchmarks/grading.py                      # 30 x lab 1, jobs 1 and 2
    .venv/bin/python benchmarks/grading.py --lab 04-server --count 10 --jobs 1 2 4
    .venv/bin/python benchmarks/grading.py --count 60 --jobs 2 --sandbox on
    .venv/bin/python benchmarks/grading.py --count 20 --rounds 3 --nbgrader /tmp/nbgrader-venv/bin/python

nbgrader is not one of mailkit's packages: put it in a throwaway virtual
environment of its own, never in .venv (`python3 -m venv /tmp/nbgrader-venv
&& /tmp/nbgrader-venv/bin/pip install nbgrader`), and pass its python.  Its
kernel imports mailkit from this checkout (PYTHONPATH).  If that python
cannot import nbgrader, the comparison is skipped with the reason.

For nbgrader the lab's source notebook gets nbgrader's cell metadata: the
solution cell is a solution cell, every check cell (hidden ones too, which
then run in the kernel against its own names, as in the source notebook)
an autograded test cell with the check's points.  `generate_assignment`
runs before the clock starts; `autograde` of all N is timed; `export` then
reads the scores back.

On a shared machine the load changes while it runs: --rounds N runs every
configuration in turn N times and reports the median of each.

The sandboxed runs need root and bubblewrap.  Not part of `make test` (it
takes a few minutes); run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from mailkit.labs.notebook import is_check, is_solution, load_lab, solution_name, student_version

ROOT = Path(__file__).resolve().parent.parent


def make_submissions(lab_path: Path, root: Path, count: int) -> Path:
    lab = load_lab(lab_path)
    solutions = {solution_name(c): c.source for c in lab.nb.cells if is_solution(c)}
    nb = student_version(lab)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = solutions[solution_name(cell)]
    subs = root / "submissions"
    for i in range(count):
        (subs / f"student{i:02d}").mkdir(parents=True)
        nbformat.write(copy.deepcopy(nb), subs / f"student{i:02d}" / lab_path.name)
    return subs


# -- nbgrader, for comparison ------------------------------------------------

def nbgrader_missing(python: str | None) -> str:
    """Why nbgrader cannot run with *python* ("" if it can)."""
    if not python:
        return "no --nbgrader PYTHON given"
    if not Path(python).exists():
        return f"{python} does not exist"
    done = subprocess.run([python, "-c", "import nbgrader, ipykernel; print(nbgrader.__version__)"],
                          capture_output=True, text=True)
    if done.returncode:
        return f"{python} cannot import nbgrader: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    return ""


def nbgrader_course(lab_path: Path, root: Path, count: int) -> Path:
    """A course folder for nbgrader: the lab's source with nbgrader's cell
    metadata, and *count* submissions (the source, solutions in place)."""
    lab = load_lab(lab_path)
    nb = copy.deepcopy(lab.nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = {"schema_version": 3, "grade": False, "locked": True, "solution": False,
                "grade_id": f"cell-{i}"}
        if is_solution(cell):
            meta.update(locked=False, solution=True, grade_id=f"solution-{solution_name(cell)}")
        elif is_check(cell):
            meta.update(grade=True, grade_id=cell.metadata.mailkit.check,
                        points=cell.metadata.mailkit.points)
        cell.metadata["nbgrader"] = meta
    course = root / "nbgrader-course"
    (course / "source" / "lab").mkdir(parents=True)
    nbformat.write(nb, course / "source" / "lab" / lab_path.name)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'mailkit-benchmark'\n"
        f"c.CourseDirectory.root = {str(course)!r}\n")
    for i in range(count):
        folder = course / "submitted" / f"student{i:02d}" / "lab"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / lab_path.name)
    return course


def run_nbgrader(python: str, lab_path: Path, root: Path, count: int) -> tuple[float, str]:
    """Seconds for ``nbgrader autograde`` of *count* copies, and a summary."""
    course = nbgrader_course(lab_path, root, count)
    env = dict(os.environ, PATH=f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=str(ROOT))       # nbgrader runs `alembic`; the kernel imports mailkit
    nbgrader = [python, "-m", "nbgrader"]

    def step(*args: str) -> None:
        done = subprocess.run([*nbgrader, *args], cwd=course, env=env, capture_output=True, text=True)
        if done.returncode or "[ERROR]" in done.stderr or "| ERROR]" in done.stderr:
            raise RuntimeError(f"nbgrader {args[0]} failed:\n{done.stderr[-1500:]}")

    step("generate_assignment", "lab", "--force")
    started = time.perf_counter()
    step("autograde", "lab", "--force")
    took = time.perf_counter() - started
    step("export")
    with open(course / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    full = sum(1 for r in rows if float(r["score"]) == float(r["max_score"]))
    return took, f"nbgrader autograde: {len(rows)} graded, {full} with full marks"


def run_mailkit(subs: Path, out: Path, jobs: int, sandboxed: bool) -> tuple[float, str]:
    started = time.perf_counter()
    summary = subprocess.run(
        [sys.executable, "-m", "mailkit.labs", "grade", str(subs), "--source", str(ROOT / "labs"),
         "--out", str(out), "--jobs", str(jobs), "--quiet", "--fresh",
         *([] if sandboxed else ["--unsafe-no-sandbox"])],
        check=True, capture_output=True, text=True).stdout.strip()
    return time.perf_counter() - started, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="01-handshake-client")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sandbox", choices=["both", "on", "off"], default="both")
    parser.add_argument("--nbgrader", metavar="PYTHON", default=None,
                        help="the python of a separate venv with nbgrader: grade the same notebooks with it too")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every configuration this many times, in turn; report the median")
    args = parser.parse_args()
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.sandbox]
    lab_path = ROOT / "labs" / f"{args.lab}.ipynb"
    why = nbgrader_missing(args.nbgrader)
    configs = [("mailkit", jobs, sandboxed) for jobs in args.jobs for sandboxed in modes]
    if not why:
        configs.append(("nbgrader", 1, False))
    print(f"{args.count} submissions of {args.lab}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, {args.rounds} round(s)")
    print(f"{'round':>5} {'grader':>8} {'jobs':>4} {'sandbox':>7} {'seconds':>8} {'per notebook':>13}  summary")
    took: dict[tuple, list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmp:
        subs = make_submissions(lab_path, Path(tmp), args.count)
        for r in range(args.rounds):
            for config in configs:
                grader, jobs, sandboxed = config
                if grader == "mailkit":
                    seconds, out = run_mailkit(subs, Path(tmp) / f"gradebook-{jobs}-{sandboxed}.csv", jobs, sandboxed)
                else:
                    course = Path(tmp) / f"nbgrader-{r}"
                    course.mkdir()
                    seconds, out = run_nbgrader(args.nbgrader, lab_path, course, args.count)
                took[config].append(seconds)
                mode = ("on" if sandboxed else "off") if grader == "mailkit" else "none"
                print(f"{r + 1:>5} {grader:>8} {jobs:>4} {mode:>7} {seconds:>8.1f} "
                      f"{seconds / args.count:>12.2f}s  {out}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if why:
        print(f"nbgrader: skipped ({why})")
    median = {c: statistics.median(t) for c, t in took.items()}
    print(f"\nmedian of {args.rounds} round(s), seconds per notebook (the whole command, start-up included):")
    for (grader, jobs, sandboxed), seconds in median.items():
        what = f"sandbox {'on' if sandboxed else 'off'}" if grader == "mailkit" else "serial, unsandboxed"
        print(f"  {grader:>8} --jobs {jobs} {what:<20} {seconds / args.count:.2f} s")
    for jobs in args.jobs:
        on, off = median.get(("mailkit", jobs, True)), median.get(("mailkit", jobs, False))
        if on and off:
            print(f"  mailkit --jobs {jobs}: sandbox on / off {on / off:.2f}")
        nb = median.get(("nbgrader", 1, False))
        if on and nb:
            print(f"  mailkit --jobs {jobs} sandbox on / nbgrader serial: {on / nb:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
