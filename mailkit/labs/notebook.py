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

From a source this module makes the *student version* (:func:`student_version`).
A student's notebook is never read here: :mod:`mailkit.labs.reading` reads
it as plain data (no metadata), and :mod:`mailkit.labs.planning` makes the
job from the source's roles.  The roles above are read from the *source*
only: its metadata is the instructor's.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

__all__ = [
    "BEGIN", "END", "LabError", "NotANotebook", "Check", "Lab", "CellRole",
    "read_notebook", "load_lab", "find_labs", "stub_source", "student_version",
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
    """What one code cell of a planned job is, for mapping results."""

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
    """Every lab in *source* (a folder of source notebooks, or one notebook),
    and every server lab in it (a folder with a ``lab.json``:
    :mod:`mailkit.labs.serverlab`), in the order of their names."""
    from .serverlab import is_server_lab, load_server_lab
    source = Path(source)
    if source.is_file():
        return [load_lab(source)]
    if is_server_lab(source):
        return [load_server_lab(source)]
    paths = sorted([*source.glob("*.ipynb"), *(p for p in source.iterdir() if is_server_lab(p))])
    return [load_server_lab(p) if p.is_dir() else load_lab(p) for p in paths]


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
            from .sanitize import canonical
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
