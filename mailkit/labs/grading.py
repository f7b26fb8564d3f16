"""Grade a class: every student's notebook for every lab, each in a kernel
of its own, a few at a time.

    submissions/
        alice/01-handshake-client.ipynb
        bob/01-handshake-client.ipynb
        ...

A student's notebook is matched to a lab by the lab id in its metadata
(the released version carries it), else by its file name.  A student with
no notebook for a lab gets no points for it, with a note saying so.
"""

from __future__ import annotations

import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .check import LabResult, check_notebook, failed_lab
from .notebook import Lab, find_labs
from .runner import DEFAULT_CELL_TIMEOUT_S

__all__ = ["Gradebook", "grade", "find_submissions"]


@dataclass
class Gradebook:
    labs: list[Lab]
    results: list[LabResult] = field(default_factory=list)
    seconds: float = 0.0
    jobs: int = 1
    ignored: list[str] = field(default_factory=list)   # files outside a student's folder

    @property
    def students(self) -> list[str]:
        return sorted({r.student for r in self.results})

    def result(self, student: str, lab: str) -> LabResult | None:
        return next((r for r in self.results if r.student == student and r.lab == lab), None)

    def summary(self) -> str:
        """One line: how many, how long, how well, and what went wrong."""
        ran = [r for r in self.results if r.problem != "missing"]
        points = sum(r.points for r in self.results)
        most = sum(r.max_points for r in self.results) or 1
        each = self.seconds / len(ran) if ran else 0.0
        problems = {}
        for r in self.results:
            if r.problem:
                problems[r.problem] = problems.get(r.problem, 0) + 1
        trouble = "; ".join(f"{n} {what}" for what, n in sorted(problems.items())) or "no problems"
        return (f"graded {len(ran)} notebook(s) of {len(self.students)} student(s) for "
                f"{len(self.labs)} lab(s) in {self.seconds:.1f} s with {self.jobs} job(s) "
                f"({each:.1f} s per notebook); mean score {100 * points / most:.0f}% of the points; {trouble}")


def _lab_of_file(path: Path, labs: list[Lab]) -> Lab | None:
    """The lab a student's file is for: by its metadata, else by its name."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("mailkit", {})
        lab_id = meta.get("lab") if isinstance(meta, dict) else None
    except (OSError, ValueError, AttributeError):
        lab_id = None
    for lab in labs:
        if lab_id and lab_id == lab.id:
            return lab
    stem = path.stem.lower()
    for lab in labs:
        if stem.startswith(lab.path.stem.lower()) or stem.startswith(lab.id.lower()):
            return lab
    number = re.match(r"\d+", stem)
    for lab in labs:
        lab_number = re.match(r"\d+", lab.path.stem)
        if number and lab_number and int(number.group()) == int(lab_number.group()):
            return lab
    return None


def find_submissions(root: str | Path, labs: list[Lab]) -> tuple[dict[str, dict[str, list[Path]]], list[str]]:
    """``{student: {lab id: [notebooks]}}`` for every student folder under
    *root*, and the files that are not in one."""
    root = Path(root)
    found: dict[str, dict[str, list[Path]]] = {}
    ignored = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry.name)
            continue
        mine = found.setdefault(entry.name, {})
        for path in sorted(entry.rglob("*.ipynb")):
            inside = path.relative_to(entry).parts
            if any(part.startswith(".") or part == "__MACOSX" for part in inside):
                continue        # .ipynb_checkpoints, macOS zip debris, hidden files
            lab = _lab_of_file(path, labs)
            if lab is not None:
                mine.setdefault(lab.id, []).append(path)
    return found, ignored


def _pick(paths: list[Path], lab: Lab) -> tuple[Path, str]:
    """One notebook for a lab: the one named like the source, else the newest."""
    if len(paths) == 1:
        return paths[0], ""
    exact = [p for p in paths if p.name == lab.path.name]
    chosen = exact[0] if exact else max(paths, key=lambda p: p.stat().st_mtime)
    others = ", ".join(p.name for p in paths if p != chosen)
    return chosen, f"graded {chosen.name}; also found {others}"


def grade(submissions: str | Path, source: str | Path, *, jobs: int = 1,
          cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, labs: list[str] | None = None,
          progress: bool = True) -> Gradebook:
    """Grade every student folder in *submissions* against the labs in
    *source*, hidden checks included.  *labs* (ids or file names) limits
    the labs graded; by default, every lab that someone handed in."""
    started = time.perf_counter()
    all_labs = find_labs(source)
    found, ignored = find_submissions(submissions, all_labs)
    if labs:
        wanted = {Path(x).stem for x in labs}
        chosen = [lab for lab in all_labs if lab.id in wanted or lab.path.stem in wanted]
        missing = wanted - {lab.id for lab in chosen} - {lab.path.stem for lab in chosen}
        if missing:
            raise ValueError(f"no such lab in {source}: {', '.join(sorted(missing))}")
    else:
        handed_in = {lab_id for per in found.values() for lab_id in per}
        chosen = [lab for lab in all_labs if lab.id in handed_in] or all_labs
    book = Gradebook(chosen, jobs=max(1, jobs), ignored=ignored)

    tasks = []
    for student, per_lab in found.items():
        for lab in chosen:
            paths = per_lab.get(lab.id, [])
            if not paths:
                book.results.append(failed_lab(student, lab, problem="missing",
                                               note=f"no notebook for {lab.id}"))
            else:
                tasks.append((student, lab, *_pick(paths, lab)))

    def run(student: str, lab: Lab, path: Path, note: str) -> LabResult:
        try:
            result = check_notebook(path, lab, student=student, hidden=True, cell_timeout=cell_timeout)
        except Exception as exc:   # a bug of ours must cost this notebook, not the class's run
            result = failed_lab(student, lab, problem="grader error",
                                note=f"the grader failed on this notebook: {type(exc).__name__}: {exc}")
        result.notebook = str(path.relative_to(Path(submissions) / student))
        if note:
            result.notes.insert(0, note)
        return result

    bar = _progress(len(tasks), progress)
    with ThreadPoolExecutor(max_workers=book.jobs) as pool:
        futures = {pool.submit(run, *task): task for task in tasks}
        for future in as_completed(futures):
            book.results.append(future.result())
            if bar is not None:
                student, lab = futures[future][:2]
                bar.set_postfix_str(f"{student} {lab.id}", refresh=False)
                bar.update()
    if bar is not None:
        bar.close()
    order = {lab.id: i for i, lab in enumerate(chosen)}
    book.results.sort(key=lambda r: (r.student, order.get(r.lab, 0)))
    book.seconds = time.perf_counter() - started
    return book


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc="grading", unit="notebook", file=sys.stderr, dynamic_ncols=True)
