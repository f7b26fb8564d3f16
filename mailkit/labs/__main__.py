"""``python -m mailkit.labs``: release, check and grade lab notebooks.

    python -m mailkit.labs list --source labs/
    python -m mailkit.labs execute labs/01-handshake-client.ipynb
    python -m mailkit.labs release labs/ --out release/
    python -m mailkit.labs check 01-handshake-client.ipynb --source labs/
    python -m mailkit.labs grade submissions/ --source labs/ --out gradebook.csv --html gradebook.html --jobs 2

See docs/instructor.md for the whole course workflow.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .planning import DEFAULT_CELL_TIMEOUT_S, DEFAULT_RUN_LIMIT_S
from .sandbox import Limits

GRADE_EPILOG = f"""\
threat model (docs/instructor.md has the whole of it):
  A submission is hostile data. It is read once, bounded (size, nesting,
  cells), without following links (a link is noted "skipped: symlink" and
  scores 0); of each code cell only its text is kept, never its metadata.
  What runs is planned from the lab source alone: a student's cell only
  ever runs in the sandboxed kernel. The kernel runs under bubblewrap (as
  root: apt-get install bubblewrap): a throwaway uid, its own PID, mount and
  network namespaces, only /usr, Python and mailkit readable, writes only to
  its own tmpfs; memory capped per submission (a cgroup where the machine
  has one, else --memory x --processes), CPU, disk, and one wall-clock
  limit per notebook ({DEFAULT_RUN_LIMIT_S:g} s unless the lab says more). It cannot read
  the sources, other submissions, the gradebook or your files; everything it
  started is killed when its run ends. Hidden checks are the lab source's
  code, run in the grader with inputs drawn per run, against the student's
  code through the kernel; every verdict is taken in the grader from what
  it observed, never from a file or line the kernel can write. Visible
  checks compare outputs the student already knows, so a kernel can fake
  those: hidden checks carry at least 40% of each lab. Not covered: kernel
  exploits, CPU side channels, a student copying another's solution.
  Without bubblewrap, grade refuses unless --unsafe-no-sandbox. Results go
  to the journal as each notebook finishes; after a crash, run the same
  command again: it resumes. A run that failed for the grader's own reasons
  is a "grader error", not a grade: the next run retries it.
"""

SOURCE_ENV = "MAILKIT_LABS_SOURCE"   # where `check` looks for the sources when --source is not given


def main(argv: list[str] | None = None) -> int:
    # The docstring's first line, without its reST backticks (--help is plain text).
    parser = argparse.ArgumentParser(prog="python -m mailkit.labs",
                                     description=__doc__.split("\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    ls = sub.add_parser("list", help="the labs in a folder, with their checks and points")
    ls.add_argument("--source", default="labs", help="folder of source notebooks (default labs/)")

    ex = sub.add_parser("execute", help="run source notebooks and store their reference outputs",
                        description="Run each source notebook (with its solutions) in a fresh kernel and "
                                    "store the outputs in it: they are the reference for the checks.")
    ex.add_argument("sources", nargs="+", metavar="SOURCE")

    rel = sub.add_parser("release", help="write the student versions",
                         description="Write the student version of each source notebook: solutions "
                                     "replaced by stubs that raise NotImplementedError with a hint, "
                                     "hidden checks left out, visible checks kept with their reference "
                                     "outputs. Each source is first checked against its own solution.")
    rel.add_argument("sources", nargs="+", metavar="SOURCE", help="source notebooks or folders of them")
    rel.add_argument("--out", required=True, metavar="DIR", help="where to write the student versions")
    rel.add_argument("--no-check", action="store_true",
                     help="do not run each source's checks against its solution first")

    chk = sub.add_parser("check", help="check one notebook: points and feedback per check",
                         description="Run a student's notebook in a kernel of its own (outputs compared as nbval does), with the "
                                     "check cells taken from the lab's source, and print each check's "
                                     "result, points and feedback. Exit status 0 if every check passed.")
    chk.add_argument("notebook", metavar="NOTEBOOK")
    chk.add_argument("--source", help=f"the lab's source notebook or a folder of them (default: ${SOURCE_ENV}, "
                                      "else labs/; without one, the notebook's own check cells are used)")
    chk.add_argument("--hidden", action="store_true", help="run the hidden checks too (instructors)")
    chk.add_argument("--timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S, metavar="S",
                     help=f"seconds a cell may run (default {DEFAULT_CELL_TIMEOUT_S:g})")

    gr = sub.add_parser("grade", help="grade a folder of submissions (one subfolder per student)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Grade every student's notebooks, each in a sandboxed kernel of its own "
                                    "with a time limit per cell, hidden checks included; write the gradebook.",
                        epilog=GRADE_EPILOG)
    gr.add_argument("submissions", metavar="SUBMISSIONS_DIR")
    gr.add_argument("--source", required=True, help="folder of the labs' source notebooks")
    gr.add_argument("--out", required=True, metavar="CSV", help="the gradebook as CSV")
    gr.add_argument("--html", metavar="HTML", help="the gradebook as an HTML page too")
    gr.add_argument("--canvas", metavar="CSV", help="the totals as a CSV that Canvas's gradebook import takes")
    gr.add_argument("--feedback", metavar="DIR",
                    help="one file per student and lab, DIR/STUDENT/LAB.txt: each check, pass or fail, and a hint")
    gr.add_argument("--jobs", type=int, default=1, metavar="N", help="notebooks graded at once (default 1)")
    gr.add_argument("--timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S, metavar="S",
                    help=f"seconds a cell may run (default {DEFAULT_CELL_TIMEOUT_S:g}); a whole notebook "
                         f"may run {DEFAULT_RUN_LIMIT_S:g} s, or what its lab's run_limit_s says")
    gr.add_argument("--lab", action="append", metavar="LAB",
                    help="grade only this lab (id or file name; may be repeated); default: every lab handed in")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    limits = Limits()
    gr.add_argument("--memory", type=int, default=limits.memory_mb, metavar="MB",
                    help=f"memory of a submission, all its processes together, where a cgroup can be made; "
                         f"and the address space of each of its processes (default {limits.memory_mb})")
    gr.add_argument("--processes", type=int, default=limits.processes, metavar="N",
                    help=f"processes and threads of a submission (default {limits.processes})")
    gr.add_argument("--cpu", type=int, default=limits.cpu_s, metavar="S",
                    help=f"CPU seconds of each process of a submission (default {limits.cpu_s})")
    gr.add_argument("--disk", type=int, default=limits.disk_mb, metavar="MB",
                    help=f"size of a submission's home and /tmp (default {limits.disk_mb})")
    gr.add_argument("--journal", metavar="FILE",
                    help="where each result is written as it comes (default: CSV + '.journal'); "
                         "a later run with the same journal resumes")
    gr.add_argument("--fresh", action="store_true", help="ignore (and replace) the journal of an earlier run")
    gr.add_argument("--unsafe-no-sandbox", action="store_true",
                    help="grade even where the sandbox is missing: students' code runs with YOUR "
                         "permissions; the gradebook says UNSANDBOXED")

    args = parser.parse_args(argv)
    from .notebook import LabError   # after parsing, so --help is quick
    try:
        return COMMANDS[args.cmd](args)
    except (LabError, FileNotFoundError, ValueError) as exc:   # SandboxUnavailable is a ValueError
        print(f"mailkit.labs: {exc}", file=sys.stderr)
        return 2


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _list(args) -> int:
    from .notebook import find_labs
    for lab in find_labs(args.source):
        print(f"{lab.path.name}: {lab.title} ({_num(lab.max_points)} points)")
        for c in lab.checks:
            hidden = " (hidden)" if c.hidden else ""
            print(f"  {c.name:<22} {_num(c.points):>3}  {c.title}{hidden}")
    return 0


def _execute(args) -> int:
    from .releasing import execute
    for source in args.sources:
        execute(source)
        print(f"executed {source}")
    return 0


def _release(args) -> int:
    from .releasing import release
    for path in release(args.sources, args.out, check=not args.no_check):
        print(f"wrote {path}")
    return 0


def _find_source(notebook: Path, source: str | None):
    """The lab to check *notebook* against, and a warning if it is the notebook itself."""
    from .notebook import NotANotebook, find_labs, load_lab
    from .reading import Unreadable, read_submission
    student = read_submission(notebook)
    if isinstance(student, Unreadable):
        raise NotANotebook(f"{notebook.name}: {student.why}")
    lab_id = student.lab_id or notebook.stem
    where = source or os.environ.get(SOURCE_ENV) or ("labs" if Path("labs").is_dir() else None)
    if where:
        for lab in find_labs(where):
            if lab.id == lab_id or lab.path.stem == lab_id:
                return lab, ""
        if source:
            raise ValueError(f"no lab {lab_id!r} in {source}")
    return load_lab(notebook), (f"no source for lab {lab_id!r} found: checking against the check cells "
                                "in the notebook itself (grading uses the instructor's)")


def _check(args) -> int:
    from .check import check_notebook
    from .notebook import NotANotebook
    path = Path(args.notebook)
    try:
        lab, warning = _find_source(path, args.source)
    except NotANotebook as exc:
        print(f"mailkit.labs: {exc}", file=sys.stderr)
        return 2
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    result = check_notebook(path, lab, hidden=args.hidden, cell_timeout=args.timeout)
    print(f"{lab.title} ({lab.id}): {path}")
    width = max(len(c.name) for c in result.checks) if result.checks else 10
    for c in result.checks:
        status = "PASS" if c.passed else "FAIL"
        hidden = " (hidden)" if c.hidden else ""
        print(f"  {status}  {c.name:<{width}}  {_num(c.points)}/{_num(c.max_points)}{hidden}")
        for line in c.feedback.splitlines():
            print(f"          {line}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"score: {_num(result.points)}/{_num(result.max_points)} points ({result.seconds:.1f} s)")
    return 0 if all(c.passed for c in result.checks) else 1


def _grade(args) -> int:
    from .grading import grade
    from .gradebook import write_canvas_csv, write_csv, write_feedback, write_html
    journal = Path(args.journal or f"{args.out}.journal").resolve()
    if args.fresh:
        journal.unlink(missing_ok=True)
    limits = Limits(memory_mb=args.memory, processes=args.processes, cpu_s=args.cpu, disk_mb=args.disk)
    if args.unsafe_no_sandbox:
        print("warning: --unsafe-no-sandbox: students' code runs with your permissions", file=sys.stderr)
    private = [Path(p).resolve().parent for p in (args.out, args.html, args.canvas) if p]
    private += [Path(args.feedback).resolve()] if args.feedback else []
    book = grade(args.submissions, args.source, jobs=args.jobs, cell_timeout=args.timeout,
                 labs=args.lab, progress=not args.quiet, sandbox=not args.unsafe_no_sandbox,
                 limits=limits, journal=journal, private=private)
    write_csv(book, args.out)
    if args.html:
        write_html(book, args.html)
    if args.canvas:
        write_canvas_csv(book, args.canvas)
    if args.feedback:
        write_feedback(book, args.feedback)
    if book.ignored:
        print(f"ignored (not in a student's folder): {', '.join(book.ignored)}", file=sys.stderr)
    print(book.summary())
    return 0


COMMANDS = {"list": _list, "execute": _execute, "release": _release, "check": _check, "grade": _grade}

if __name__ == "__main__":
    sys.exit(main())
