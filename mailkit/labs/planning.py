"""Stage 2 of grading, *plan*: the job, from the lab's source alone.

The planner takes two inputs of very different standing:

* the :class:`~mailkit.labs.notebook.Lab`, the instructor's source notebook,
  whose metadata is trusted: it says which cell is a setup cell, a solution,
  a visible check (with its reference output) or a hidden check (a probe
  that runs in the grader's harness), and the lab's limits;
* the :class:`~mailkit.labs.reading.Submission`, plain data: code cells as
  ``(id, source text)``.  The id only says which solution slot of the source
  a cell fills; any other cell is an *extra*, run in the kernel where the
  student put it.

So every role, reference output, probe and limit comes from the source.
A student's cell can only ever be code that runs in the sandboxed kernel:
there is no way for it to become a check, a probe or a reference.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field

import nbformat

from .sanitize import canonical
from .notebook import NBVAL_IGNORE, CellRole, Lab, is_check, is_solution, solution_name
from .reading import SourceTree, Submission, parse_notebook
from .serverlab import ServerLab

__all__ = ["PlannedCell", "Job", "plan", "plan_trusted_notebook", "assemble", "ServerJob", "plan_server",
           "DEFAULT_RUN_LIMIT_S", "DEFAULT_CELL_TIMEOUT_S"]

# One wall-clock limit per notebook run, whatever its cell count: a lab's whole
# run takes 1-7 s (lab 6, with its timers); a sender with no timeout ~25 s.
# A lab may declare more in its source's metadata: {"mailkit": {"run_limit_s": 300}}.
DEFAULT_RUN_LIMIT_S = 120.0
DEFAULT_CELL_TIMEOUT_S = 10.0   # a lab's slowest check takes about a second


@dataclass(frozen=True)
class PlannedCell:
    kind: str                        # "setup", "solution", "extra" (the student's) or "check"
    name: str                        # the check's or solution's name, or the cell id
    source: str
    probe: bool = False              # a hidden check: runs in the harness, never in the kernel
    reference: str | None = None     # a check's reference output: it never leaves the grader

    @property
    def role(self) -> CellRole:
        return CellRole(self.kind, self.name)

    @property
    def students(self) -> bool:
        return self.kind in ("solution", "extra")


@dataclass(frozen=True)
class Job:
    """What one notebook's run does, decided by the source."""

    cells: tuple[PlannedCell, ...]
    probe_setup: tuple[str, ...] = ()            # the source's setup cells, run before each probe
    run_limit_s: float = DEFAULT_RUN_LIMIT_S     # the whole run, kernel start included
    cell_timeout: float = DEFAULT_CELL_TIMEOUT_S
    notes: tuple[str, ...] = field(default=())   # what was missing from the submission

    @property
    def roles(self) -> list[CellRole]:
        return [c.role for c in self.cells]

    def for_harness(self) -> list[dict]:
        """The cells as the harness gets them: code and whether it is a
        probe; no reference, no name, nothing to judge by."""
        return [{"source": c.source, "probe": c.probe, "keep": c.reference is not None} for c in self.cells]


def _meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("mailkit", {})
    return meta if isinstance(meta, dict) else {}


def run_limit(lab: Lab) -> float:
    value = lab.nb.metadata.get("mailkit", {}).get("run_limit_s", DEFAULT_RUN_LIMIT_S)
    return float(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_RUN_LIMIT_S


def _reference(cell) -> str:
    # A released notebook carries each check's reference in its metadata too
    # (running the notebook replaces the outputs, not that): `check` without
    # the sources uses it.  The instructor's sources have the outputs.
    reference = _meta(cell).get("reference")
    return reference if isinstance(reference, str) else canonical(cell.get("outputs", []))


def plan(lab: Lab, submission: Submission, *, hidden: bool = True,
         cell_timeout: float = DEFAULT_CELL_TIMEOUT_S) -> Job:
    """The job for *submission* against *lab*: the source's cells in the
    source's order, with the student's text in each solution slot it filled
    (matched by cell id) and the cells they added after the slot before
    them; every setup and check cell from the source (*hidden*: hidden
    checks too, as probes)."""
    slots = {c.get("id"): c for c in lab.nb.cells if c.get("cell_type") == "code" and c.get("id")}
    mine: dict[int, str] = {}             # id(source cell) -> the student's text for it
    extras: dict[int, list] = {}          # id(source cell) or -1 -> extras after it
    anchor = -1
    for cell in submission.cells:
        src = slots.get(cell.id) if cell.id else None
        if src is not None and id(src) not in mine:
            mine[id(src)] = cell.source    # a setup or check cell's copy is matched, then ignored
            anchor = id(src)
        else:
            extras.setdefault(anchor, []).append(cell)

    cells: list[PlannedCell] = []
    notes: list[str] = []
    first_check = next(i for i, c in enumerate(lab.nb.cells) if is_check(c))

    def add_extras(key: int) -> None:
        for cell in extras.pop(key, []):
            cells.append(PlannedCell("extra", cell.id, cell.source))

    for i, src in enumerate(lab.nb.cells):
        if i == first_check:
            add_extras(-1)
        if src.get("cell_type") != "code":
            continue
        if is_check(src):
            hidden_check = bool(_meta(src).get("hidden"))
            if hidden or not hidden_check:
                cells.append(PlannedCell("check", str(_meta(src)["check"]), src.source,
                                         probe=hidden_check, reference=_reference(src)))
        elif is_solution(src) and id(src) in mine:
            cells.append(PlannedCell("solution", solution_name(src), mine[id(src)]))
        elif is_solution(src):
            notes.append(f"the solution cell {solution_name(src)!r} is missing from the notebook")
        else:
            cells.append(PlannedCell("setup", src.get("id", ""), src.source))
        add_extras(id(src))
    for key in list(extras):
        add_extras(key)
    if notes and any(c.kind == "extra" for c in cells):
        notes.append("(cells are matched to the lab's by their cell id: the cells that match none "
                     "still ran, as cells you added)")
    setup = tuple(c.source for c in lab.nb.cells
                  if c.get("cell_type") == "code" and not is_check(c) and not is_solution(c))
    return Job(tuple(cells), setup, run_limit(lab), cell_timeout, tuple(notes))


def plan_trusted_notebook(nb: nbformat.NotebookNode, *, cell_timeout: float = DEFAULT_CELL_TIMEOUT_S,
                          run_limit_s: float = DEFAULT_RUN_LIMIT_S) -> Job:
    """A job straight from a notebook whose metadata is trusted (a lab
    source, or a notebook a test or benchmark built): each code cell as it
    is, a check cell with its reference, a hidden check as a probe."""
    cells = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        meta = _meta(cell)
        if "check" in meta:
            cells.append(PlannedCell("check", str(meta["check"]), cell.source,
                                     probe=bool(meta.get("hidden")), reference=_reference(cell)))
        else:
            cells.append(PlannedCell("setup", cell.get("id", ""), cell.source))
    return Job(tuple(cells), (), run_limit_s, cell_timeout)


def assemble(lab: Lab, student: nbformat.NotebookNode, *, hidden: bool = True,
             ) -> tuple[nbformat.NotebookNode, list[CellRole], list[str]]:
    """The job for *student* (an nbformat notebook, read as a submission
    is: metadata dropped) as a notebook a person can open, with the roles
    of its code cells and the notes.  The grader runs the :class:`Job`,
    never this notebook."""
    read = parse_notebook("notebook", json.dumps(student).encode())
    job = plan(lab, read if isinstance(read, Submission) else Submission("notebook", "", None), hidden=hidden)
    sources = {(_role_of(c)): c for c in lab.nb.cells if is_check(c)}
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(lab.nb.metadata))
    for cell in job.cells:
        if cell.kind == "check":
            nb.cells.append(copy.deepcopy(sources[cell.name]))
        else:
            new = nbformat.v4.new_code_cell(cell.source, metadata={"tags": [NBVAL_IGNORE]})
            new["id"] = uuid.uuid4().hex[:8]
            nb.cells.append(new)
    return nb, job.roles, list(job.notes)


def _role_of(cell) -> str:
    return str(_meta(cell)["check"])


# -- a server lab (mailkit.labs.serverlab): the same stage, for a folder of source code ---------



@dataclass
class ServerJob:
    """What the harness does for one submission.  Everything but ``files``
    comes from the lab source."""

    files: list[tuple[str, bytes, bool]]
    build: list[str]             # [] : nothing to build
    start: list[str]
    checks: list[str]            # conform check ids, "name" or "name@noise"
    build_s: float
    budget_s: float
    run_limit_s: float
    notes: list[str] = field(default_factory=list)
    problem: str = ""            # set: nothing to run (no run script, no Makefile)

    def for_harness(self) -> dict:
        import base64
        return {"kind": "server", "build": self.build, "start": self.start, "checks": self.checks,
                "build_s": self.build_s, "budget_s": self.budget_s,
                "files": [[rel, base64.b64encode(data).decode(), ex] for rel, data, ex in self.files]}


def plan_server(lab: ServerLab, tree: SourceTree) -> ServerJob:
    """The job: the student's files as data, and the lab's build, start and
    checks.  The start command is the lab's entry for the first of its
    files (``run``, ``Makefile``) the folder holds; the build is run only
    if a Makefile is there."""
    names = tree.names
    job = ServerJob(list(tree.files), lab.build if "Makefile" in names else [], [],
                    [c.name for c in lab.checks], lab.build_s, lab.budget_s, lab.run_limit_s,
                    notes=list(tree.skipped))
    for wanted, command in lab.start.items():
        if wanted in names:
            job.start = list(command)
            break
    else:
        job.problem = "did not run"
        job.notes.append(f"no {' or '.join(lab.start)} at the top of the folder: nothing starts the server")
    return job
