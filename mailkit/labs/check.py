"""Check one notebook: the five stages for one submission, top to bottom.

    read (reading)  ->  plan (planning)  ->  run (runner, harness, sandbox)  ->  judge (judging)

:func:`check_notebook` is what ``python -m mailkit.labs check`` and
:func:`mailkit.labs.grade` call per notebook; ``grade`` then records
(:mod:`mailkit.labs.gradebook`).  The names below the stages used to live
here and are still importable from here.
"""

from __future__ import annotations

from pathlib import Path

from .judging import (GRADER_ERROR, STATIC_RULES, CheckResult, LabResult, apply_static_rules, diff_text,  # noqa: F401
                      failed_lab, feedback_for, judge, kit_calls, random_draws, static_findings)
from .notebook import Lab
from .planning import DEFAULT_CELL_TIMEOUT_S, plan, plan_server
from .reading import Submission, Unreadable, read_submission
from .runner import ServerRun, run_job, run_server_job
from .serverjudge import KIT_FOLDER, judge_server
from .serverlab import ServerLab

__all__ = ["CheckResult", "LabResult", "check_notebook", "check_submission", "check_server", "feedback_for", "diff_text",
           "kit_calls", "static_findings", "random_draws", "STATIC_RULES"]


def check_notebook(path: str | Path, lab: Lab, *, student: str = "", hidden: bool = False,
                   cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, sandbox: bool = False,
                   limits=None, hide: list = (), tmp_root=None) -> LabResult:
    """Check the notebook at *path* against *lab*'s checks (hidden ones too
    if *hidden*); never raises for anything wrong with the notebook.  With
    *sandbox* the kernel runs in :mod:`mailkit.labs.sandbox` (grading)."""
    path = Path(path).resolve()
    return check_submission(read_submission(path), lab, student=student or path.stem, hidden=hidden,
                            cell_timeout=cell_timeout, sandbox=sandbox, limits=limits,
                            hide=[*hide, path.parent], tmp_root=tmp_root)


def check_submission(read: Submission | Unreadable, lab: Lab, *, student: str, hidden: bool = False,
                     cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, sandbox: bool = False,
                     limits=None, hide: list = (), tmp_root=None, notebook: str = "") -> LabResult:
    """Plan, run and judge a submission already read (plain data)."""
    notebook = notebook or read.name
    if isinstance(read, Unreadable):
        return failed_lab(student, lab, problem="skipped" if read.skipped else "not a notebook",
                          note=read.why, hidden=hidden, notebook=notebook)
    job = plan(lab, read, hidden=hidden, cell_timeout=cell_timeout)
    run = run_job(job, sandbox=sandbox, limits=limits, hide=[*hide, lab.path.parent.resolve()],
                  tmp_root=tmp_root)
    return judge(lab, job, run, student=student, notebook=notebook, cell_timeout=cell_timeout)


def check_server(read, lab: ServerLab, *, student: str, sandbox: bool = True, limits=None, hide: list = (),
                 tmp_root=None, folder: str = "") -> LabResult:
    """Plan, run and judge a server lab's submission already read (a
    :class:`~mailkit.labs.reading.SourceTree`): built, started and probed
    in the sandbox only (it is a program in any language: there is no
    unsandboxed way to run it here)."""
    folder = folder or read.name
    if isinstance(read, Unreadable):
        return failed_lab(student, lab, problem="skipped" if read.skipped else "not graded",
                          note=read.why, notebook=folder)
    if not sandbox:
        return failed_lab(student, lab, problem=GRADER_ERROR, notebook=folder,
                          note="not graded: a server lab is graded in the sandbox only")
    job = plan_server(lab, read)
    if job.problem:
        return judge_server(lab, job, ServerRun(), student=student, notebook=folder)
    # The student's server is theirs to write: mailkit's own package (a
    # `python -m mailkit serve` in a run script) is covered in the sandbox.
    run = run_server_job(job, limits=limits, hide=[*hide, lab.path.parent.resolve(), KIT_FOLDER],
                         tmp_root=tmp_root)
    return judge_server(lab, job, run, student=student, notebook=folder)
