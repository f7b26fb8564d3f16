"""How long does grading a class take?  Grades N copies of one lab's
solution (as N students' submissions) with `python -m mailkit.labs grade`,
once per --jobs value, with the sandbox and without it
(--unsafe-no-sandbox), and prints a table: seconds, per notebook, and
the sandbox's cost as a ratio.

    .venv/bin/python benchmarks/grading.py                      # 30 x lab 1, jobs 1 and 2
    .venv/bin/python benchmarks/grading.py --lab 04-server --count 10 --jobs 1 2 4
    .venv/bin/python benchmarks/grading.py --count 60 --jobs 2 --sandbox on

The sandboxed runs need root and bubblewrap.  Not part of `make test` (it
takes a few minutes); run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from mailkit.labs.notebook import is_solution, load_lab, solution_name, student_version

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="01-handshake-client")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sandbox", choices=["both", "on", "off"], default="both")
    args = parser.parse_args()
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.sandbox]
    lab_path = ROOT / "labs" / f"{args.lab}.ipynb"
    print(f"{args.count} submissions of {args.lab}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'jobs':>4} {'sandbox':>7} {'seconds':>8} {'per notebook':>13}  summary")
    with tempfile.TemporaryDirectory() as tmp:
        subs = make_submissions(lab_path, Path(tmp), args.count)
        for jobs in args.jobs:
            took = {}
            for sandboxed in modes:
                started = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-m", "mailkit.labs", "grade", str(subs), "--source", str(ROOT / "labs"),
                     "--out", str(Path(tmp) / f"gradebook-{jobs}-{sandboxed}.csv"), "--jobs", str(jobs),
                     "--quiet", "--fresh", *([] if sandboxed else ["--unsafe-no-sandbox"])],
                    check=True, capture_output=True, text=True).stdout.strip()
                took[sandboxed] = time.perf_counter() - started
                print(f"{jobs:>4} {'on' if sandboxed else 'off':>7} {took[sandboxed]:>8.1f} "
                      f"{took[sandboxed] / args.count:>12.2f}s  {out}")
            if len(took) == 2:
                print(f"{jobs:>4} sandbox on / off: {took[True] / took[False]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
