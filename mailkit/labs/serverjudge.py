"""Stage 4 for a server lab (:mod:`mailkit.labs.serverlab`), *judge*, in
the grader's process: each probe's status as the harness reported it (the
harness is the grader's, out of the student's reach: see
:mod:`mailkit.labs.serverrun`), the points from the lab source."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import mailkit

from .judging import GRADER_ERROR, CheckResult, LabResult
from .planning import ServerJob
from .runner import ServerRun
from .serverlab import FEEDBACK_CHARS, ServerLab

__all__ = ["judge_server", "kit_flags", "KIT_FOLDER"]

# mailkit's own package: covered inside the sandbox when a server lab runs
# (check.check_server), so `python -m mailkit serve` in a run script finds
# nothing; a copy of it handed in is flagged (kit_flags).
KIT_FOLDER = Path(mailkit.__file__).resolve().parent


@lru_cache(maxsize=1)
def _kit_digests() -> dict[str, str]:
    return {hashlib.sha256(path.read_bytes()).hexdigest(): str(path.relative_to(KIT_FOLDER.parent))
            for path in KIT_FOLDER.rglob("*.py")}


# Code that runs mailkit: `python -m mailkit serve`, `import mailkit`,
# `from mailkit.server import ...` (a comment that names it is not flagged).
_USES_KIT = re.compile(rb"(-m\s+mailkit\b|\bimport\s+mailkit\b|\bfrom\s+mailkit\b|__import__\(\s*['\"]mailkit)")


def kit_flags(files) -> list[str]:
    """Flags for the instructor: submitted files that run or import mailkit
    (a run script that starts mailkit's server) or are byte for byte one of
    its modules.  A renamed, edited copy is not seen: the flag
    asks for a look, the probes decide the points."""
    digests = _kit_digests()
    flags = []
    for rel, data, _executable in files:
        copy = digests.get(hashlib.sha256(data).hexdigest())
        if copy:
            flags.append(f"uses mailkit's code: {rel} is a copy of {copy}")
        elif _USES_KIT.search(data):
            flags.append(f"uses mailkit's code: {rel} runs or imports mailkit")
    return flags


def judge_server(lab: ServerLab, job: ServerJob, run: ServerRun, *, student: str, notebook: str) -> LabResult:
    """Points per check from the lab; pass only for a probe that the
    harness (out of the student's reach) reported as passed."""
    result = LabResult(student, lab.id, notebook, notes=list(job.notes), seconds=run.seconds,
                       problem=job.problem, sandboxed=run.sandboxed, flags=kit_flags(job.files))
    if run.grader_error:
        result.problem = GRADER_ERROR
        result.notes.append(f"not graded: {run.grader_error}; the next grade retries it")
    elif run.build_failed:
        result.problem = "did not build"
        result.notes.append(f"the build failed: {run.build_failed}")
    elif run.start_failed:
        result.notes.append(f"the server did not start: {run.start_failed}")
    elif run.killed:
        result.problem = "timed out"
        result.notes.append(f"the run took longer than {lab.run_limit_s:g} s and was stopped")
    for check in lab.checks:
        probe = run.checks.get(check.name)
        passed = bool(probe) and probe["status"] == "pass" and not run.grader_error
        if passed:
            feedback = "passed"
        elif probe is None:
            feedback = "not run"
        elif check.hidden:      # which check and which section: the student runs conform to see more
            feedback = (f"failed ({check.title}); `python -m mailkit conform server -- sh ./run {{port}} "
                        "{users} {db}` runs the same check on your machine and shows the exchange")
        else:
            why = str(probe.get("message", ""))[:FEEDBACK_CHARS]
            feedback = f"failed ({check.title}): {why}"
            if probe.get("expected"):
                feedback += f"; expected: {str(probe['expected'])[:FEEDBACK_CHARS]}"
        result.checks.append(CheckResult(check.name, check.points if passed else 0.0, check.points, passed,
                                         check.hidden, feedback))
    return result
