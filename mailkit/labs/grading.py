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

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from . import sandbox as _sandbox
from .check import CheckResult, LabResult, check_notebook, failed_lab
from .notebook import Lab, find_labs
from .runner import DEFAULT_CELL_TIMEOUT_S, warm_kernels

__all__ = ["Gradebook", "grade", "find_submissions", "SandboxUnavailable", "Journal"]


class SandboxUnavailable(ValueError):
    """grade was asked to sandbox submissions on a machine that cannot."""


@dataclass
class Gradebook:
    labs: list[Lab]
    results: list[LabResult] = field(default_factory=list)
    seconds: float = 0.0
    jobs: int = 1
    ignored: list[str] = field(default_factory=list)   # files outside a student's folder
    sandboxed: bool = True
    resumed: int = 0        # results taken from the journal of an earlier, interrupted run

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
        if not self.sandboxed:
            trouble += "; UNSANDBOXED (--unsafe-no-sandbox)"
        flagged = sum(1 for r in self.results if r.flags)
        if flagged:
            trouble += f"; {flagged} flagged"
        if self.resumed:
            trouble += f"; {self.resumed} taken from the journal"
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


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


class Journal:
    """Results written down as each notebook finishes, outside every
    sandbox: a grader killed half-way (OOM, Ctrl-C, SIGKILL) loses nothing,
    and the next ``grade`` with the same journal takes the results it finds
    there instead of grading those notebooks again.  A result is reused
    only for the same notebook bytes, the same lab source and the same
    settings (the key)."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self.done: dict[str, LabResult] = {}
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                    result = LabResult(**{k: v for k, v in rec["result"].items() if k != "checks"})
                    result.checks = [CheckResult(**c) for c in rec["result"]["checks"]]
                    self.done[rec["key"]] = result
                except (ValueError, KeyError, TypeError):
                    continue        # a line cut short by the kill
        self._file = None

    def add(self, key: str, result: LabResult) -> None:
        if self.path is None:
            return
        line = json.dumps({"key": key, "result": dataclasses.asdict(result)}) + "\n"
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "a", encoding="utf-8")
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def grade(submissions: str | Path, source: str | Path, *, jobs: int = 1,
          cell_timeout: float = DEFAULT_CELL_TIMEOUT_S, labs: list[str] | None = None,
          progress: bool = True, sandbox: bool = True, limits: _sandbox.Limits | None = None,
          journal: str | Path | None = None, private: list[str | Path] = ()) -> Gradebook:
    """Grade every student folder in *submissions* against the labs in
    *source*, hidden checks included.  *labs* (ids or file names) limits
    the labs graded; by default, every lab that someone handed in.

    With *sandbox* (the default) each kernel runs in
    :mod:`mailkit.labs.sandbox`; if this machine cannot, raise
    :class:`SandboxUnavailable` (``sandbox=False`` grades unsandboxed, and
    the gradebook says so).  *journal* is a file where each result is
    written as it comes (see :class:`Journal`); *private* are more folders
    the kernels must not see (the gradebook's)."""
    started = time.perf_counter()
    if sandbox:
        why = _sandbox.available()
        if why:
            raise SandboxUnavailable(f"cannot sandbox submissions: {why}; refusing to grade "
                                     "(--unsafe-no-sandbox runs students' code with your permissions)")
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
    book = Gradebook(chosen, jobs=max(1, jobs), ignored=ignored, sandboxed=bool(sandbox))
    hide = [Path(submissions).resolve(), Path(source).resolve(), *(Path(p).resolve() for p in private)]
    if journal:
        hide.append(Path(journal).resolve().parent)
    log = Journal(journal)
    # The runs' private folders (reports, connection files) live in one
    # folder, so that a killed grader's are removed by the next run.
    if journal:
        tmp_root = Path(journal).with_name(Path(journal).name + ".tmp")
        shutil.rmtree(tmp_root, ignore_errors=True)
        tmp_root.mkdir(mode=0o700, parents=True)
    else:
        tmp_root = Path(tempfile.mkdtemp(prefix="mailkit-grade-"))
    hide.append(tmp_root.resolve())
    settings = json.dumps([cell_timeout, bool(sandbox), (limits or _sandbox.Limits()).as_dict()])

    tasks = []
    for student, per_lab in found.items():
        for lab in chosen:
            paths = per_lab.get(lab.id, [])
            if not paths:
                book.results.append(failed_lab(student, lab, problem="missing",
                                               note=f"no notebook for {lab.id}"))
                continue
            path, note = _pick(paths, lab)
            key = hashlib.sha256("\0".join([student, lab.id, _sha256(path), _sha256(lab.path),
                                             settings]).encode()).hexdigest()
            if key in log.done:
                book.results.append(log.done[key])
                book.resumed += 1
            else:
                tasks.append((student, lab, path, note, key))

    def run(student: str, lab: Lab, path: Path, note: str, key: str) -> LabResult:
        try:
            result = check_notebook(path, lab, student=student, hidden=True, cell_timeout=cell_timeout,
                                    sandbox=sandbox, limits=limits, hide=hide, tmp_root=tmp_root)
        except Exception as exc:   # a bug of ours must cost this notebook, not the class's run
            result = failed_lab(student, lab, problem="grader error",
                                note=f"the grader failed on this notebook: {type(exc).__name__}: {exc}")
        result.notebook = str(path.relative_to(Path(submissions) / student))
        result.sandboxed = bool(sandbox)
        if note:
            result.notes.insert(0, note)
        if result.problem != "grader error":
            log.add(key, result)
        return result

    bar = _progress(len(tasks), progress)
    try:
        # Each job starts its next notebook's kernel while the current one runs
        # (the first notebook of each job starts its own).
        with warm_kernels(max(0, len(tasks) - book.jobs)), ThreadPoolExecutor(max_workers=book.jobs) as pool:
            futures = {pool.submit(run, *task): task for task in tasks}
            for future in as_completed(futures):
                book.results.append(future.result())
                if bar is not None:
                    student, lab = futures[future][:2]
                    bar.set_postfix_str(f"{student} {lab.id}", refresh=False)
                    bar.update()
    finally:
        log.close()
        shutil.rmtree(tmp_root, ignore_errors=True)
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
