"""Lab notebooks: what is a check, what is a solution, and the notebooks
made from them.

A lab's *source* notebook holds the solution.  Its cells play roles:

* a **check** cell has ``{"mailkit": {"check": NAME, "points": N}}`` in its
  metadata (``"hidden": true`` keeps it out of the student version;
  ``"title"`` says in a few words what it checks).  Its stored outputs are
  the reference that nbval compares a student's outputs with.
* a **solution** cell contains ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
  (a ``# hint: ...`` line right after BEGIN becomes the stub's message);
  ``{"mailkit": {"solution": NAME}}`` names it, else its cell id does.
* every other cell (setup, text) is plain.

From a source this module makes the *student version* (:func:`student_version`)
and, from a student's notebook, the notebook that is checked
(:func:`assemble`): the student's cells, with every check cell taken from the
source, outputs and all, so that editing a check changes nothing.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = [
    "BEGIN", "END", "LabError", "NotANotebook", "Check", "Lab", "CellRole",
    "read_notebook", "load_lab", "find_labs", "stub_source", "student_version", "assemble",
]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HINT_PREFIX = "# hint:"
DEFAULT_HINT = "replace this line with your solution"
NBVAL_IGNORE = "nbval-ignore-output"


class LabError(ValueError):
    """A source notebook that is not a valid lab (says which cell and why)."""


class NotANotebook(ValueError):
    """A file that cannot be read as a Jupyter notebook."""


@dataclass(frozen=True)
class Check:
    name: str
    points: float
    hidden: bool = False
    title: str = ""
    cell_id: str = ""


@dataclass(frozen=True)
class CellRole:
    """What one code cell of an assembled notebook is, for mapping results."""

    kind: str    # "check", "solution", "setup" or "extra" (a cell the student added)
    name: str    # the check's or solution's name, or the cell id


@dataclass
class Lab:
    path: Path
    id: str
    title: str
    nb: nbformat.NotebookNode
    checks: list[Check] = field(default_factory=list)

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.checks)

    def visible_checks(self, hidden: bool = True) -> list[Check]:
        return [c for c in self.checks if hidden or not c.hidden]


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """Read a notebook (any nbformat 4 version), or raise :class:`NotANotebook`."""
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8")
        json.loads(text)
    except UnicodeDecodeError:
        raise NotANotebook(f"{name} is not a notebook (not even text)") from None
    except ValueError:
        raise NotANotebook(f"{name} is not a notebook (not JSON: it starts {text[:30]!r})") from None
    except OSError as exc:
        raise NotANotebook(f"{name} cannot be read ({_short(exc)})") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:    # nbformat raises several kinds for a bad structure
        raise NotANotebook(f"{name} is not a valid notebook ({_short(exc)})") from None
    if not isinstance(nb.get("cells"), list):
        raise NotANotebook(f"{name} is not a notebook (it has no cells)")
    return nb


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 100 else text[:100] + "…"


def _meta(cell) -> dict:
    meta = cell.get("metadata", {}).get("mailkit", {})
    return meta if isinstance(meta, dict) else {}


def is_check(cell) -> bool:
    return cell.get("cell_type") == "code" and "check" in _meta(cell)


def is_solution(cell) -> bool:
    return cell.get("cell_type") == "code" and (BEGIN in cell.source or "solution" in _meta(cell))


def solution_name(cell) -> str:
    return str(_meta(cell).get("solution") or cell.get("id", ""))


def load_lab(path: str | Path) -> Lab:
    """Read a source notebook and its checks; raise :class:`LabError` if
    the metadata or the solution markers are wrong."""
    path = Path(path)
    try:
        nb = read_notebook(path)
    except NotANotebook as exc:
        raise LabError(str(exc)) from None
    meta = nb.metadata.get("mailkit", {})
    lab = Lab(path, str(meta.get("lab") or path.stem), str(meta.get("title") or path.stem), nb)
    names = set()
    for i, cell in enumerate(nb.cells):
        where = f"{path.name}, cell {i}"
        if is_check(cell):
            m = _meta(cell)
            name, points = str(m["check"]), m.get("points", 1)
            if name in names:
                raise LabError(f"{where}: two checks are named {name!r}")
            if not isinstance(points, (int, float)) or isinstance(points, bool) or points < 0:
                raise LabError(f"{where}: check {name!r} has points={points!r}; expected a number >= 0")
            if BEGIN in cell.source:
                raise LabError(f"{where}: a check cell cannot hold a solution")
            names.add(name)
            lab.checks.append(Check(name, points, bool(m.get("hidden", False)),
                                    str(m.get("title", "")), cell.get("id", "")))
        elif cell.get("cell_type") == "code" and (BEGIN in cell.source or END in cell.source):
            try:
                stub_source(cell.source)
            except LabError as exc:
                raise LabError(f"{where}: {exc}") from None
    if not lab.checks:
        raise LabError(f"{path.name} has no check cells (cell metadata mailkit.check)")
    return lab


def find_labs(source: str | Path) -> list[Lab]:
    """Every lab in *source* (a folder of source notebooks, or one notebook)."""
    source = Path(source)
    paths = [source] if source.is_file() else sorted(source.glob("*.ipynb"))
    return [load_lab(p) for p in paths]


_BEGIN_RE = re.compile(r"^([ \t]*)" + re.escape(BEGIN) + r"\b.*$")


def stub_source(source: str) -> str:
    """*source* with every solution region replaced by
    ``raise NotImplementedError(hint)`` at the region's indentation."""
    out, lines, i = [], source.split("\n"), 0
    while i < len(lines):
        begin = _BEGIN_RE.match(lines[i])
        if END in lines[i] and not begin:
            raise LabError(f"{END} without {BEGIN} (line {i + 1})")
        if not begin:
            out.append(lines[i])
            i += 1
            continue
        indent, j = begin.group(1), i + 1
        hint = DEFAULT_HINT
        if j < len(lines) and lines[j].strip().startswith(HINT_PREFIX):
            hint = lines[j].strip()[len(HINT_PREFIX):].strip() or DEFAULT_HINT
        while j < len(lines) and END not in lines[j]:
            if BEGIN in lines[j]:
                raise LabError(f"{BEGIN} inside another solution (line {j + 1})")
            j += 1
        if j == len(lines):
            raise LabError(f"{BEGIN} on line {i + 1} has no {END}")
        out.append(f"{indent}raise NotImplementedError({hint!r})")
        i = j + 1
    return "\n".join(out)


def _clear(cell) -> None:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None


def student_version(lab: Lab) -> nbformat.NotebookNode:
    """The notebook students get: solutions replaced by stubs, hidden checks
    left out, visible checks kept with their reference outputs."""
    nb = copy.deepcopy(lab.nb)
    cells = []
    for cell in nb.cells:
        if is_check(cell):
            if _meta(cell).get("hidden"):
                continue
            # the reference where running the notebook does not overwrite it (student's `check`)
            from .harness import canonical
            cell.metadata["mailkit"]["reference"] = canonical(cell.get("outputs", []))
        elif cell.cell_type == "code":
            if BEGIN in cell.source:
                cell.source = stub_source(cell.source)
            _clear(cell)
        cells.append(cell)
    nb.cells = cells
    nb.metadata.setdefault("mailkit", {})
    nb.metadata.mailkit["lab"] = lab.id
    nb.metadata.mailkit["title"] = lab.title
    return nb


def _key(cell) -> tuple[str, str] | None:
    """How a student's cell is matched to a source cell."""
    meta = _meta(cell)
    if "check" in meta:
        return ("check", str(meta["check"]))
    if "solution" in meta:
        return ("solution", str(meta["solution"]))
    return None


def assemble(lab: Lab, student: nbformat.NotebookNode, *, hidden: bool = True,
             ) -> tuple[nbformat.NotebookNode, list[CellRole], list[str]]:
    """The notebook to check: the student's solution cells and the cells
    they added, and from the source every setup cell (the student's copies
    are ignored: deleting an "unused" import costs nothing) and every check
    cell (with *hidden*, hidden ones too), in the source's order.

    Returns ``(notebook, roles, notes)``: *roles* gives the role of each code
    cell in order (the harness's cell N is ``roles[N]``), *notes* says what was
    missing from the student's notebook.
    """
    by_key, by_id = {}, {}
    for cell in lab.nb.cells:
        if is_check(cell):
            by_key[("check", str(_meta(cell)["check"]))] = cell
        elif is_solution(cell):
            by_key[("solution", solution_name(cell))] = cell
        if cell.get("id"):
            by_id[cell.id] = cell
    # Which source cell each student cell stands for; the others are extras,
    # kept after the last matched cell before them.
    mine: dict[int, dict] = {}          # id(source cell) -> student's cell
    extras: dict[int, list] = {}        # id(source cell) or -1 -> extras after it
    anchor = -1
    for cell in student.cells:
        if cell.get("cell_type") != "code":
            continue
        src = by_key.get(_key(cell)) if _key(cell) else None
        if src is None and cell.get("id") in by_id:
            src = by_id[cell.id]
        if src is not None and id(src) not in mine:
            mine[id(src)] = cell
            anchor = id(src)
        else:
            extras.setdefault(anchor, []).append(cell)

    cells, roles, notes = [], [], []
    first_check = next(i for i, c in enumerate(lab.nb.cells) if is_check(c))

    def add(cell, role: CellRole, *, keep_outputs: bool) -> None:
        cell = copy.deepcopy(cell)
        if not keep_outputs:
            _clear(cell)
            cell.metadata = {"tags": [NBVAL_IGNORE], "mailkit": _meta(cell)}
        cells.append(cell)
        roles.append(role)

    def add_extras(key: int) -> None:
        for cell in extras.pop(key, []):
            add(cell, CellRole("extra", cell.get("id", "")), keep_outputs=False)

    for i, src in enumerate(lab.nb.cells):
        if i == first_check:
            add_extras(-1)
        if src.cell_type != "code":
            cells.append(copy.deepcopy(src))
        elif is_check(src):
            if hidden or not _meta(src).get("hidden"):
                add(src, CellRole("check", str(_meta(src)["check"])), keep_outputs=True)
        elif is_solution(src) and id(src) in mine:
            add(mine[id(src)], CellRole("solution", solution_name(src)), keep_outputs=False)
        elif is_solution(src):
            notes.append(f"the solution cell {solution_name(src)!r} is missing from the notebook")
        else:
            add(src, CellRole("setup", src.get("id", "")), keep_outputs=False)
        add_extras(id(src))
    for key in list(extras):
        add_extras(key)

    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(lab.nb.metadata))
    nb.cells = _unique_ids(cells)
    return nb, roles, notes


def _unique_ids(cells: list) -> list:
    seen = set()
    for cell in cells:
        cid = cell.get("id")
        if not cid or cid in seen or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", str(cid)):
            cell["id"] = uuid.uuid4().hex[:8]
        seen.add(cell["id"])
    return cells


def setup_sources(lab: Lab) -> list[str]:
    """The source's setup cells (code that is neither a check nor a
    solution): what a hidden check's probe runs first, in the grader."""
    return [c.source for c in lab.nb.cells
            if c.get("cell_type") == "code" and not is_check(c) and not is_solution(c)]
