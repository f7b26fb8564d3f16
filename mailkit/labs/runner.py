"""Run one assembled notebook in a process of its own: the harness
(:mod:`mailkit.labs.harness`), which starts the kernel (sandboxed when
grading) and runs each cell with a time limit, comparing a check's output
with its reference and judging hidden checks itself.

Whatever happens inside (an endless loop, a crash, a kernel that dies or
ignores interrupts), :func:`run_notebook` returns within its deadline with a
result per cell that finished; a cell with no result did not pass.  The
report the harness writes and the job it reads (the student's cells, the
hidden checks, this run's seed) live where the kernel cannot see them: a
private folder and a pipe.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import sandbox as _sandbox
from .harness import KERNEL_STARTUP_S, canonical

__all__ = ["CellResult", "RunResult", "run_notebook", "warm_kernels", "DEFAULT_CELL_TIMEOUT_S", "job_cells"]

DEFAULT_CELL_TIMEOUT_S = 10.0   # a lab's slowest check takes about a second
GRACE_S = 5.0                   # per cell: interrupting, and the harness's own work


@dataclass
class CellResult:
    cell: int
    passed: bool
    message: str = ""        # "Cell outputs differ", "Cell execution caused an exception", "Timeout..."
    traceback: str = ""
    expected: str = ""       # sanitized reference text, when the outputs differ
    got: str = ""


@dataclass
class RunResult:
    cells: dict[int, CellResult] = field(default_factory=dict)
    seconds: float = 0.0
    killed: bool = False     # the deadline was reached
    log: str = ""            # the end of the harness's own output
    sandboxed: bool = False
    processes_seen: int = -1  # processes in the sandbox's PID namespace just before it ended
    processes_left: int = -1  # ... and after (always 0: the namespace's end kills them)


def deadline_for(nb: nbformat.NotebookNode, cell_timeout: float) -> float:
    """Seconds a run may take: start a kernel, then every code cell at its timeout."""
    code = sum(c.cell_type == "code" for c in nb.cells)
    return KERNEL_STARTUP_S + code * (cell_timeout + GRACE_S)


def job_cells(nb: nbformat.NotebookNode) -> list[dict]:
    """The code cells of an assembled notebook as the harness takes them: a
    check cell carries its reference output; a hidden check is a probe."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.get("metadata", {}).get("mailkit", {})
        meta = meta if isinstance(meta, dict) else {}
        item = {"source": cell.source}
        if "check" in meta:
            # A released notebook carries each check's reference in its
            # metadata too: running the notebook replaces the outputs, not that.
            reference = meta.get("reference")
            item["reference"] = reference if isinstance(reference, str) else canonical(cell.get("outputs", []))
            if meta.get("hidden"):
                item["probe"] = True
        cells.append(item)
    return cells


def run_notebook(nb: nbformat.NotebookNode, *, cell_timeout: float = DEFAULT_CELL_TIMEOUT_S,
                 deadline: float | None = None, sandbox: bool = False,
                 limits: _sandbox.Limits | None = None, probe_setup: list[str] = (),
                 hide: list[str | Path] = (), tmp_root: str | Path | None = None) -> RunResult:
    """Check *nb* in a new harness process; return what each cell did.

    A kernel that never started ran none of the student's code: that is the
    machine's fault, not the student's, so such a run is tried once more.
    Its cells still count as failed if the second start fails too.
    """
    deadline = deadline_for(nb, cell_timeout) if deadline is None else deadline
    job = {"cells": job_cells(nb), "cell_timeout": cell_timeout, "sandbox": bool(sandbox),
           "limits": (limits or _sandbox.Limits()).as_dict(), "probe_setup": list(probe_setup),
           "hide": _covering(hide), "tmp": str(tmp_root) if tmp_root else None}
    result = _run_once(job, deadline=deadline)
    if _kernel_never_started(result):
        result = _run_once(job, deadline=deadline)
    return result


def _covering(folders) -> list[str]:
    """*folders* without those inside another (covering a folder hides what
    is below it), sorted: the same for every student's notebook of a class
    (each student's folder is inside the submissions'), so one spare kernel
    fits any of them."""
    paths = sorted({Path(f).resolve() for f in folders})
    return [str(p) for p in paths if not any(o in p.parents for o in paths)]


def _kernel_never_started(result: RunResult) -> bool:
    return not result.killed and any(
        c.message.startswith("the kernel did not start") for c in result.cells.values())


_KERNEL_SETTINGS = ("sandbox", "limits", "hide", "tmp")    # what the harness needs to start a kernel


class _Harness:
    """A harness process, started with its kernel's settings: it starts the
    kernel at once and waits for its notebook's job."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.private = Path(tempfile.mkdtemp(prefix="mailkit-run-", dir=settings.get("tmp")))  # 0700, never in a sandbox
        self.report, self.log = self.private / "report.jsonl", self.private / "harness.log"
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "mailkit.labs.harness", str(self.report)],
                                         env=env, cwd=self.private, stdin=subprocess.PIPE, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_sandbox.child_of_this_process())
        try:
            self.proc.stdin.write(json.dumps(settings).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def discard(self) -> None:
        _kill_group(self.proc)
        shutil.rmtree(self.private, ignore_errors=True)


class _Warm:
    """Spare harnesses (see :func:`warm_kernels`): at most one per grading
    thread, each started by that thread (a harness dies with the thread that
    started it), and no more than *budget* in all."""

    def __init__(self, budget: int):
        self.budget = budget
        self.lock = threading.Lock()
        self.spares: dict[int, _Harness] = {}       # thread id -> its spare

    def take(self, settings: dict) -> _Harness | None:
        with self.lock:
            spare = self.spares.pop(threading.get_ident(), None)
        if spare is not None and (spare.settings != settings or spare.proc.poll() is not None):
            spare.discard()
            spare = None
        return spare

    def start_next(self, settings: dict) -> None:
        with self.lock:
            if self.budget <= 0:
                return
            self.budget -= 1
        spare = _Harness(settings)
        with self.lock:
            self.spares[threading.get_ident()] = spare

    def close(self) -> None:
        with self.lock:
            spares, self.spares = list(self.spares.values()), {}
        for spare in spares:
            spare.discard()


_warm: _Warm | None = None


@contextlib.contextmanager
def warm_kernels(count: int):
    """While grading *count* more notebooks: when a notebook's cells start
    running, start the next notebook's harness and kernel beside it (a
    kernel takes ~1 s to start, mostly waiting on imports, while a lab's
    checks mostly wait on sockets), so the next notebook finds its kernel
    ready.  A spare kernel is as fresh and as sandboxed as any: it runs no
    student code until its own notebook's job arrives.  Spares left at the
    end are stopped."""
    global _warm
    previous, _warm = _warm, _Warm(count)
    try:
        yield
    finally:
        warm, _warm = _warm, previous
        warm.close()


def _run_once(job: dict, *, deadline: float) -> RunResult:
    job = dict(job, seed=secrets.randbits(62))    # this run's hidden inputs: only in the pipe
    settings = {k: job[k] for k in _KERNEL_SETTINGS}
    warm = _warm
    harness = (warm.take(settings) if warm else None) or _Harness(settings)
    private, report, log, proc = harness.private, harness.report, harness.log, harness.proc
    started = time.perf_counter()
    result = RunResult(sandboxed=bool(job["sandbox"]))
    try:
        try:
            try:
                proc.stdin.write(json.dumps({k: v for k, v in job.items() if k not in settings}).encode() + b"\n")
                proc.stdin.close()
            finally:
                if warm is not None:
                    warm.start_next(settings)
            proc.wait(timeout=deadline)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            result.killed = proc.poll() is None
        finally:
            _kill_group(proc)
        result.log = log.read_text(errors="replace")[-4000:]
        result.cells = _read_report(report)
        for line in report.read_text(errors="replace").splitlines() if report.exists() else ():
            if '"processes_seen"' in line:
                with_counts = json.loads(line)
                result.processes_seen = with_counts["processes_seen"]
                result.processes_left = with_counts["processes_left"]
    finally:
        shutil.rmtree(private, ignore_errors=True)
        result.seconds = time.perf_counter() - started
    return result


def _read_report(path: Path) -> dict[int, CellResult]:
    cells: dict[int, CellResult] = {}
    if not path.exists():
        return cells
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue            # the last line of a killed run may be cut short
        if "cell" not in rec:
            continue
        cells[rec["cell"]] = CellResult(
            rec["cell"], bool(rec["passed"]), rec.get("message", ""), rec.get("traceback", ""),
            rec.get("expected", ""), rec.get("got", ""))
    return cells


def _kill_group(proc: subprocess.Popen) -> None:
    """The harness and, through --die-with-parent and PR_SET_PDEATHSIG, its
    sandbox: bwrap's end ends the PID namespace and every process in it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()
