"""How often does grading catch a wrong solution?  Grades N copies of one
of the wrong solutions in tests/test_labs.py (WRONG), and N copies of the
lab's own solution, sandboxed as `grade` does (a fresh seed per notebook),
and prints, per check, how many of the N failed it.  A hidden check that
depends on timing (lab 4's no-lost-mail) is measured here, not asserted in
a test.

    .venv/bin/python benchmarks/catch_rates.py --list
    .venv/bin/python benchmarks/catch_rates.py "no lock" --runs 20
    .venv/bin/python benchmarks/catch_rates.py --table        # every wrong solution once: a Markdown table

Needs root and bubblewrap (or --unsafe-no-sandbox).  Not part of `make test`.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mailkit.labs import grade, load_lab  # noqa: E402
from mailkit.labs.notebook import is_solution, solution_name, student_version  # noqa: E402


def notebook(lab_id: str, code: dict[str, str]) -> nbformat.NotebookNode:
    lab = load_lab(ROOT / "labs" / f"{lab_id}.ipynb")
    solutions = {solution_name(c): c.source for c in lab.nb.cells if is_solution(c)}
    nb = student_version(lab)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = code.get(solution_name(cell), solutions[solution_name(cell)])
    return nb


def table(wrong, *, jobs: int, sandbox: bool) -> int:
    """Grade each wrong solution once; print lab | wrong solution | points | checks failed."""
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "submissions"
        for i, (lab_id, _, code, _) in enumerate(wrong):
            (subs / f"w{i:02d}").mkdir(parents=True)
            nbformat.write(notebook(lab_id, code), subs / f"w{i:02d}" / f"{lab_id}.ipynb")
        book = grade(subs, ROOT / "labs", jobs=jobs, progress=False, sandbox=sandbox)
    print("| lab | wrong solution | points | checks failed (the test names the first) |")
    print("| --- | --- | --- | --- |")
    for i, (lab_id, what, _, catcher) in enumerate(wrong):
        r = book.result(f"w{i:02d}", lab_id)
        failed = [c.name + (" (hidden)" if c.hidden else "") for c in r.checks if not c.passed]
        failed.sort(key=lambda name: not name.startswith(catcher))
        print(f"| {lab_id[:2]} | {what} | {r.points:g}/{r.max_points:g} | {', '.join(failed)} |")
    return 0


def main() -> int:
    from test_labs import WRONG
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="?", default="", help="part of a wrong solution's description")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true", help="grade every wrong solution once; print a table")
    parser.add_argument("--unsafe-no-sandbox", action="store_true")
    args = parser.parse_args()
    if args.table:
        return table(WRONG, jobs=args.jobs, sandbox=not args.unsafe_no_sandbox)
    if args.list or not args.what:
        for lab_id, what, _, catcher in WRONG:
            print(f"{lab_id}: {what}  (caught by {catcher})")
        return 0
    chosen = [w for w in WRONG if args.what in w[1]]
    if len(chosen) != 1:
        print(f"{len(chosen)} wrong solutions match {args.what!r}; --list shows them")
        return 2
    lab_id, what, code, catcher = chosen[0]
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "submissions"
        for kind, nb in (("wrong", notebook(lab_id, code)), ("solution", notebook(lab_id, {}))):
            for i in range(args.runs):
                (subs / f"{kind}{i:02d}").mkdir(parents=True)
                nbformat.write(copy.deepcopy(nb), subs / f"{kind}{i:02d}" / f"{lab_id}.ipynb")
        book = grade(subs, ROOT / "labs", labs=[lab_id], jobs=args.jobs, progress=False,
                     sandbox=not args.unsafe_no_sandbox)
    print(f"{lab_id}: {what!r}, {args.runs} runs each, sandbox {'off' if args.unsafe_no_sandbox else 'on'}")
    for kind in ("wrong", "solution"):
        results = [r for r in book.results if r.student.startswith(kind)]
        failed: dict[str, int] = {}
        for r in results:
            for c in r.checks:
                failed[c.name] = failed.get(c.name, 0) + (not c.passed)
        below = sum(1 for r in results if r.points < r.max_points)
        print(f"  {kind:8} below full: {below}/{len(results)};  failed per check: "
              + ", ".join(f"{name} {n}/{len(results)}" for name, n in failed.items() if n))
    caught = sum(1 for r in book.results if r.student.startswith("wrong")
                 and not any(c.passed for c in r.checks if c.name == catcher))
    print(f"  the check named in the test ({catcher}) caught it in {caught}/{args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
