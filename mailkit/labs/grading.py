"""Grade a class: the five stages for every student's notebook of every
lab, a few at a time, and the gradebook.

    read (reading)  ->  plan (planning)  ->  run (runner, harness, sandbox)  ->  judge (judging)  ->  record (gradebook)

    submissions/
        alice/01-handshake-client.ipynb
        bob/01-handshake-client.ipynb
        ...

Every student folder is read first (:func:`mailkit.labs.reading.student_folders`:
bounded, no link followed, metadata dropped); a notebook is matched to a
lab by the lab id it carries (the released version has it), else by its
file name.  A student with no notebook for a lab gets no points for it,
with a note saying so; a link or a file that is not a notebook costs that
student that lab, never the class's run.
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
from .check import check_server, check_submission
from .judging import GRADER_ERROR, CheckResult, LabResult, failed_lab
from .notebook import Lab, find_labs
from .planning import DEFAULT_CELL_TIMEOUT_S
from .reading import SourceTree, Submission, Unreadable, lab_folder, student_folders
from .serverlab import ServerLab
from .runner import warm_kernels

__all__ = ["Gradebook", "grade", "find_submissions", "SandboxUnavailable", "Journal", "lab_of"]


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
    memory: str = ""        # how each submission's memory was bounded

    @property
    def students(self) -> list[str]:
        return sorted({r.student for r in self.results})

    def result(self, student: str, lab: str) -> LabResult | None:
        return next((r for r in self.results if r.student == student and r.lab == lab), None)

    def summary(self) -> str:
        """One line: how many, how long, how well, and what went wrong."""
        ran = [r for r in self.results if r.problem not in ("missing", GRADER_ERROR)]
        graded = [r for r in self.results if r.problem != GRADER_ERROR]
        points = sum(r.points for r in graded)
        most = sum(r.max_points for r in graded) or 1
        each = self.seconds / len(ran) if ran else 0.0
        problems = {}
        for r in self.results:
            if r.problem and r.problem != GRADER_ERROR:
                problems[r.problem] = problems.get(r.problem, 0) + 1
        trouble = "; ".join(f"{n} {what}" for what, n in sorted(problems.items())) or "no problems"
        errors = sum(1 for r in self.results if r.problem == GRADER_ERROR)
        if errors:
            trouble += f"; {errors} grader error(s): not graded, run grade again to retry them"
        if not self.sandboxed:
            trouble += "; UNSANDBOXED (--unsafe-no-sandbox)"
        elif self.memory.startswith("rlimits"):
            trouble += f"; memory bounded by {self.memory}"
        flagged = sum(1 for r in self.results if r.flags)
        if flagged:
            trouble += f"; {flagged} flagged"
        if self.resumed:
            trouble += f"; {self.resumed} taken from the journal"
        return (f"graded {len(ran)} notebook(s) of {len(self.students)} student(s) for "
                f"{len(self.labs)} lab(s) in {self.seconds:.1f} s with {self.jobs} job(s) "
                f"({each:.1f} s per notebook); mean score {100 * points / most:.0f}% of the points; {trouble}")


def lab_of(name: str, claimed: str | None, labs: list[Lab]) -> Lab | None:
    """The lab a student's file is for: the lab id it claims, else its file name."""
    for lab in labs:
        if claimed and claimed == lab.id:
            return lab
    stem = Path(name).stem.lower()
    for lab in labs:
        if stem.startswith(lab.path.stem.lower()) or stem.startswith(lab.id.lower()):
            return lab
    number = re.match(r"\d+", stem)
    for lab in labs:
        lab_number = re.match(r"\d+", lab.path.stem)
        if number and lab_number and int(number.group()) == int(lab_number.group()):
            return lab
    return None


@dataclass
class Handed:
    """What one student handed in for one lab."""

    notebooks: list[tuple[str, Submission | Unreadable]] = field(default_factory=list)  # (relative path, read)
    skipped: list[str] = field(default_factory=list)
    tree: tuple[str, SourceTree | Unreadable] | None = None    # a server lab's folder (relative path, read)


def find_submissions(root: str | Path, labs: list[Lab]) -> tuple[dict[str, dict[str, Handed]], list[str]]:
    """``{student: {lab id: Handed}}`` for every student folder under
    *root*, read (stage 1), and the entries that are not a student's folder."""
    folders, ignored = student_folders(root)
    servers = [lab for lab in labs if isinstance(lab, ServerLab)]
    labs = [lab for lab in labs if not isinstance(lab, ServerLab)]
    found: dict[str, dict[str, Handed]] = {}
    for folder in folders:
        mine = found.setdefault(folder.name, {})
        for lab in servers:
            tree = lab_folder(root, folder.name, lab.folder_matches)
            if tree is not None:
                mine.setdefault(lab.id, Handed()).tree = tree
        for rel, read in folder.notebooks.items():
            lab = lab_of(rel, read.lab_id if isinstance(read, Submission) else None, labs)
            if lab is not None:
                mine.setdefault(lab.id, Handed()).notebooks.append((rel, read))
        for rel, note in folder.skipped:
            lab = lab_of(rel, None, labs) if rel.endswith(".ipynb") else None
            for each in [lab] if lab else labs:
                mine.setdefault(each.id, Handed()).skipped.append(note)
    return found, ignored


def _pick(root: Path, student: str, notebooks: list, lab: Lab) -> tuple[str, Submission | Unreadable, str]:
    """One notebook for a lab: the one named like the source, else the newest."""
    if len(notebooks) == 1:
        return (*notebooks[0], "")
    exact = [n for n in notebooks if Path(n[0]).name == lab.path.name]

    def mtime(item) -> float:
        try:
            return os.stat(root / student / item[0], follow_symlinks=False).st_mtime
        except OSError:
            return 0.0
    chosen = exact[0] if exact else max(notebooks, key=mtime)
    others = ", ".join(Path(n[0]).name for n in notebooks if n is not chosen)
    return (*chosen, f"graded {Path(chosen[0]).name}; also found {others}")


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
                    if result.problem != GRADER_ERROR:      # never a grade: graded again
                        self.done[rec["key"]] = result
                except (ValueError, KeyError, TypeError):
                    continue        # a line cut short by the kill
        self._file = None

    def add(self, key: str, result: LabResult) -> None:
        if self.path is None or result.problem == GRADER_ERROR:
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
    the kernels must not see (the gradebook's).  Every path is made
    absolute first: nothing below depends on the working directory."""
    started = time.perf_counter()
    submissions, source = Path(submissions).resolve(), Path(source).resolve()
    journal = Path(journal).resolve() if journal else None
    limits = limits or _sandbox.Limits()
    if sandbox:
        why = _sandbox.available()
        if why:
            raise SandboxUnavailable(f"cannot sandbox submissions: {why}; refusing to grade "
                                     "(--unsafe-no-sandbox runs students' code with your permissions)")
    all_labs = find_labs(source)
    found, ignored = find_submissions(submissions, all_labs)           # 1. read
    if labs:
        wanted = {Path(x).stem for x in labs}
        chosen = [lab for lab in all_labs if lab.id in wanted or lab.path.stem in wanted]
        missing = wanted - {lab.id for lab in chosen} - {lab.path.stem for lab in chosen}
        if missing:
            raise ValueError(f"no such lab in {source}: {', '.join(sorted(missing))}")
    else:
        handed_in = {lab_id for per in found.values() for lab_id, h in per.items() if h.notebooks or h.tree}
        chosen = [lab for lab in all_labs if lab.id in handed_in] or all_labs
    book = Gradebook(chosen, jobs=max(1, jobs), ignored=ignored, sandboxed=bool(sandbox),
                     memory=_sandbox.memory_bound(limits) if sandbox else "")
    hide = [submissions, source, *(Path(p).resolve() for p in private)]
    if journal:
        hide.append(journal.parent)
    log = Journal(journal)
    # The runs' private folders (harness logs, connection files) live in one
    # folder, so that a killed grader's are removed by the next run.
    if journal:
        tmp_root = journal.with_name(journal.name + ".tmp")
        shutil.rmtree(tmp_root, ignore_errors=True)
        tmp_root.mkdir(mode=0o700, parents=True)
    else:
        tmp_root = Path(tempfile.mkdtemp(prefix="mailkit-grade-")).resolve()
    hide.append(tmp_root)
    settings = json.dumps([cell_timeout, bool(sandbox), limits.as_dict()])

    tasks = []
    for student, per_lab in found.items():
        for lab in chosen:
            handed = per_lab.get(lab.id, Handed())
            if isinstance(lab, ServerLab):
                if handed.tree is None:
                    book.results.append(failed_lab(student, lab, problem="missing",
                                                   note=f"no folder {lab.id}/ (a run script or a Makefile)"))
                    continue
                rel, read = handed.tree
                key = hashlib.sha256("\0".join([student, lab.id, read.sha256 or read.why, _sha256(lab.path),
                                                 settings]).encode()).hexdigest()
                if key in log.done:
                    book.results.append(log.done[key])
                    book.resumed += 1
                else:
                    tasks.append((student, lab, rel, read, [], key))
                continue
            if not handed.notebooks:
                problem, note = ("skipped", "; ".join(handed.skipped)) if handed.skipped else \
                    ("missing", f"no notebook for {lab.id}")
                book.results.append(failed_lab(student, lab, problem=problem, note=note))
                continue
            rel, read, note = _pick(submissions, student, handed.notebooks, lab)
            notes = [n for n in [note, *handed.skipped] if n]
            key = hashlib.sha256("\0".join([student, lab.id, read.sha256 or read.why, _sha256(lab.path),
                                             settings]).encode()).hexdigest()
            if key in log.done:
                book.results.append(log.done[key])
                book.resumed += 1
            else:
                tasks.append((student, lab, rel, read, notes, key))

    def run(student: str, lab: Lab, rel: str, read, notes: list[str], key: str) -> LabResult:
        try:                                                            # 2. plan, 3. run, 4. judge
            if isinstance(lab, ServerLab):
                result = check_server(read, lab, student=student, sandbox=sandbox, limits=limits, hide=hide,
                                      tmp_root=tmp_root, folder=rel)
            else:
                result = check_submission(read, lab, student=student, hidden=True, cell_timeout=cell_timeout,
                                          sandbox=sandbox, limits=limits, hide=hide, tmp_root=tmp_root,
                                          notebook=rel)
        except Exception as exc:   # a bug of ours must cost this notebook, not the class's run
            result = failed_lab(student, lab, problem=GRADER_ERROR,
                                note=f"not graded: the grader failed ({type(exc).__name__}: {exc}); "
                                     "the next grade retries it")
        result.notebook = rel
        result.sandboxed = bool(sandbox)
        result.notes[:0] = notes
        log.add(key, result)                                            # 5. record (the journal)
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
