"""Stage 4 of grading, *judge*, in the grader's process: a run's cell
verdicts (each output already compared with its reference in the grader,
:mod:`mailkit.labs.runner`) become each check's points and feedback a
student can read; the static rules read the student's code with ``ast``
(never run it); and the notes and flags for the instructor are written.

What it judges from: the lab (the source), the job (planned from the
source), the run's observations.  A run that failed for the grader's own
reasons is judged ``grader error``: no points either way, never journalled,
retried by the next ``grade``."""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field

from .kitflag import kit_findings, parse_cell
from .notebook import Check, Lab
from .planning import Job
from .runner import CellResult, RunResult

__all__ = ["CheckResult", "LabResult", "judge", "failed_lab", "feedback_for", "diff_text", "kit_calls",
           "static_findings", "apply_static_rules", "random_draws", "STATIC_RULES", "NOT_RUN", "GRADER_ERROR",
           "parse_cell"]

GRADER_ERROR = "grader error"
NOT_RUN = ("missing", "not a notebook", "skipped", GRADER_ERROR)   # problems where no check ran

FEEDBACK_LINES = 6   # the first lines of a difference or a traceback: enough to act on


@dataclass
class CheckResult:
    name: str
    points: float          # earned
    max_points: float
    passed: bool
    hidden: bool = False
    feedback: str = ""


@dataclass
class LabResult:
    """One student's result on one lab."""

    student: str
    lab: str
    notebook: str = ""      # the file graded, relative to the student's folder
    checks: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # about the whole submission
    seconds: float = 0.0
    problem: str = ""       # "not a notebook", "skipped", "missing", "timed out", "did not run", "grader error" or ""
    sandboxed: bool = False  # the kernel ran in the sandbox
    flags: list[str] = field(default_factory=list)   # for the instructor: why to look at this one

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.checks)

    def feedback(self) -> str:
        """Every note, then each failed check's name and feedback (its
        further lines indented)."""
        lines = list(self.notes)
        for c in self.checks:
            if not c.passed and self.problem not in NOT_RUN:
                first, *rest = c.feedback.splitlines() or ["failed"]
                lines.append(f"{c.name}: {first}")
                lines += [f"  {line}" for line in rest]
        return "\n".join(lines) or "all checks passed"


def failed_lab(student: str, lab: Lab, *, problem: str, note: str, hidden: bool = True,
               notebook: str = "") -> LabResult:
    """A result with every check failed, for a submission that could not be run."""
    result = LabResult(student, lab.id, notebook, problem=problem, notes=[note])
    for c in lab.visible_checks(hidden):
        result.checks.append(CheckResult(c.name, 0, c.points, False, c.hidden, f"not run ({problem})"))
    return result


def judge(lab: Lab, job: Job, run: RunResult, *, student: str, notebook: str = "",
          cell_timeout: float | None = None) -> LabResult:
    """The result of *run* (of *job*, planned from *lab*) for *student*."""
    cell_timeout = job.cell_timeout if cell_timeout is None else cell_timeout
    hidden = any(c.probe for c in job.cells) or not any(c.hidden for c in lab.checks)
    if run.grader_error:
        result = failed_lab(student, lab, problem=GRADER_ERROR, hidden=hidden, notebook=notebook,
                            note=f"not graded: the grader failed ({run.grader_error}); "
                                 "the next grade retries it")
        result.seconds, result.sandboxed = run.seconds, run.sandboxed
        return result
    student_cells = [(c.role, c.source) for c in job.cells if c.students]
    result = LabResult(student, lab.id, notebook, notes=list(job.notes), seconds=run.seconds,
                       flags=kit_calls(lab, student_cells), sandboxed=run.sandboxed)
    checks = {c.name: c for c in lab.checks}
    for index, planned in enumerate(job.cells):
        cell = run.cells.get(index)
        if planned.kind != "check":
            if cell is not None and not cell.passed:
                what = {"solution": f"your cell {planned.name!r}", "setup": "a setup cell",
                        "extra": "a cell you added"}[planned.kind]
                result.notes.append(f"{what} failed: {_exception_line(cell) or cell.message}")
            continue
        check = checks[planned.name]
        passed = cell is not None and cell.passed
        feedback = "" if passed else feedback_for(check, cell, run, cell_timeout)
        result.checks.append(CheckResult(check.name, check.points if passed else 0, check.points,
                                         passed, check.hidden, feedback))
    apply_static_rules(result, lab, student_cells)
    if run.killed:
        result.problem = "timed out"
        result.notes.insert(0, f"the run was stopped after {run.seconds:.0f} s (the limit for the whole "
                               f"notebook is {job.run_limit_s:g} s); checks not run count as failed")
    elif not run.cells:
        result.problem = "did not run"
        tail = run.log.strip().splitlines()[-1:] or ["no output"]
        result.notes.insert(0, f"the notebook did not run: {tail[0]}")
    return result


def kit_calls(lab: Lab, cells) -> list[str]:
    """Why to look at a submission that reaches mailkit's own implementation
    of what the lab asks for, by any route the grader can read
    (:mod:`mailkit.labs.kitflag`): the names the lab's metadata lists
    (``{"mailkit": {"kit": {"names": [...], "attributes": [...]}}}``), and
    ``cannot tell: computed import (...)`` where the code computes what it
    imports or looks up."""
    kit = lab.nb.metadata.get("mailkit", {}).get("kit", {})
    names, attributes = kit.get("names", ()), kit.get("attributes", ())
    found = []
    for role, source in cells:
        where = f"solution cell {role.name!r}" if role.kind == "solution" else "a cell the student added"
        found += [f"{finding} in {where}" for finding in kit_findings(source, names, attributes)]
    return found


# -- static rules: the grader reads the student's code (never the kernel) ------------
#
# A lab's metadata may name, per check, a rule that the student's solution
# cells and added cells must keep: ``{"mailkit": {"static": {"unpredictable-ids":
# "no-random"}}}``.  The grader parses the code with ``ast`` in its own process:
# nothing the kernel does (patching ``random.seed``, printing, forging files)
# changes the verdict.  A finding fails that check (it must pass its
# behavioural test *and* keep the rule) and flags the row for the instructor.
# What a rule cannot see: code built at run time (``exec`` of a string,
# ``getattr`` with a computed name); such code is flagged, not failed.

RANDOM_SAFE = {"SystemRandom"}      # random's one generator that reads the OS's randomness


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain on a name, else ""."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return ""


def random_draws(source: str) -> list[str]:
    """Where *source* uses Python's ``random`` generator (a Mersenne Twister,
    whose next outputs follow from its past ones): ``random.choice(...)``,
    ``from random import randint``, ``random.Random()``, ``random.seed = ...``,
    under any alias.  ``random.SystemRandom`` (the OS's randomness, as
    ``secrets`` and ``os.urandom``) is fine.  Code that imports modules by a
    computed name is reported as such ("dynamic ...")."""
    tree = parse_cell(source)
    if tree is None:
        return []           # not Python: it does not run in the kernel either
    if isinstance(tree, str):
        return [f"dynamic: {tree}"]
    aliases: set[str] = set()          # names bound to the random module
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "random":
                    aliases.add(a.asname or "random")
        elif isinstance(node, ast.ImportFrom) and node.module == "random":
            found += [f"from random import {a.name}" for a in node.names if a.name not in RANDOM_SAFE]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("__import__", "importlib.import_module"):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and arg.value == "random":
                    found.append(f"{name}('random')")
                elif not isinstance(arg, ast.Constant):
                    found.append(f"dynamic import: {name}(...) of a computed name")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr not in RANDOM_SAFE):
            found.append(f"{node.value.id}.{node.attr}")
    return sorted(set(found), key=found.index)


STATIC_RULES = {
    "no-random": (random_draws, "draws from Python's random (predictable), not secrets"),
}


def static_findings(lab: Lab, cells) -> dict[str, list[str]]:
    """``{check name: [finding, ...]}`` for the rules in *lab*'s metadata,
    over the student's *cells* (``(role, source)``: solution cells and cells
    they added)."""
    rules = lab.nb.metadata.get("mailkit", {}).get("static", {}) or {}
    out: dict[str, list[str]] = {}
    for check, rule in rules.items():
        find, _ = STATIC_RULES[rule]
        for role, source in cells:
            where = f"solution cell {role.name!r}" if role.kind == "solution" else "a cell the student added"
            out.setdefault(check, []).extend(f"{f} in {where}" for f in find(source))
    return {check: found for check, found in out.items() if found}


def apply_static_rules(result: LabResult, lab: Lab, cells) -> None:
    """Fail each check whose static rule the student's code breaks, and flag the row."""
    rules = lab.nb.metadata.get("mailkit", {}).get("static", {}) or {}
    for check_name, found in static_findings(lab, cells).items():
        _, what = STATIC_RULES[rules[check_name]]
        dynamic = all(f.startswith("dynamic") for f in found)
        result.flags.append(f"{check_name}: {'code the grader cannot read statically' if dynamic else what}: "
                            + "; ".join(found[:3]))
        if dynamic:
            continue        # cannot tell: flagged for the instructor, not failed
        for c in result.checks:
            if c.name == check_name and c.passed:
                c.passed, c.points = False, 0
                c.feedback = (f"{'hidden check failed: ' if c.hidden else ''}{what} "
                              f"({'; '.join(f for f in found if not f.startswith('dynamic'))[:200]})")


def _exception_line(cell: CellResult) -> str:
    """The last line of a traceback: ``NotImplementedError: write login()``."""
    lines = [ln for ln in cell.traceback.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def feedback_for(check: Check, cell: CellResult | None, run: RunResult, cell_timeout: float) -> str:
    """What a student reads about a failed check.  A hidden check says only
    which check failed and in what way, never what it expected."""
    if cell is None:
        why = "the run was stopped (time limit)" if run.killed else "the kernel died or stopped before it"
        return f"not run: {why}"
    if cell.message.startswith("Kernel dead"):
        return "not run: the kernel had died in an earlier cell (a crash, or it stopped responding)"
    if "Failed to interrupt kernel" in cell.message or "waiting for output" in cell.message:
        kind = "the kernel died or stopped responding during this check"
        return kind if not check.hidden else f"hidden check failed: {kind}"
    if "Timeout" in cell.message:
        kind = f"timed out after {cell_timeout:g} s (an endless loop, or waiting for a reply that never comes?)"
        return kind if not check.hidden else f"hidden check failed: {kind}"
    if cell.message == "Cell outputs differ":
        if check.hidden:
            return "hidden check failed: its output differs from the reference"
        return "output differs from the reference:\n" + diff_text(cell.expected, cell.got)
    exc = _exception_line(cell) or cell.message
    if check.hidden:
        return f"hidden check failed: it raised {exc.split(':')[0]}"
    return exc


def diff_text(expected: str, got: str) -> str:
    lines = list(difflib.unified_diff(expected.splitlines(), got.splitlines(),
                                      "expected", "got", n=0, lineterm=""))
    body = [("expected: " if ln[0] == "-" else "got:      ") + ln[1:]
            for ln in lines if not ln.startswith(("---", "+++", "@@"))]
    if not body:   # same text, different kinds of output (e.g. a result instead of print)
        return f"expected: {expected!r}\ngot:      {got!r}"
    shown = body[:FEEDBACK_LINES]
    if len(body) > FEEDBACK_LINES:
        shown.append(f"  ... ({len(body) - FEEDBACK_LINES} more lines differ)")
    return "\n".join(shown)
