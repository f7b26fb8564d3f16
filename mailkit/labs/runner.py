"""Stage 3 of grading, *run*: one planned job in a process of its own,
the harness (:mod:`mailkit.labs.harness`), which starts the kernel
(sandboxed when grading: :mod:`mailkit.labs.sandbox`) and runs each cell
with a time limit, and each hidden check's probe (the lab source's code)
beside it.

Whatever happens inside (an endless loop, a crash, a kernel that dies or
ignores interrupts, a student who added 100,000 cells), :func:`run_job`
returns within the job's one wall-clock limit with a result per cell that
finished; a cell with no result did not pass.  The job goes to the harness
through a pipe and its report comes back through another, which only the
harness holds; the references stay here, in the grader, which compares the
outputs the harness reports with them (a report cannot say "passed").

A run that failed for the grader's own reasons (the harness crashed, a
probe's own bug, a kernel that never started) says so in
:attr:`RunResult.grader_error`: that is never a grade.
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
from .planning import DEFAULT_CELL_TIMEOUT_S, DEFAULT_RUN_LIMIT_S, Job, plan_trusted_notebook
from .sanitize import sanitize

__all__ = ["CellResult", "RunResult", "ServerRun", "run_server_job", "run_job", "run_notebook", "warm_kernels", "DEFAULT_CELL_TIMEOUT_S",
           "DEFAULT_RUN_LIMIT_S"]

REPORT_READ_S = 10.0            # after the harness ended: the rest of its report
REPORT_MAX_BYTES = 64 * 2**20   # what one run reports: at most 200 kB of output per cell kept


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
    grader_error: str = ""   # the run failed for the grader's own reasons: not a grade
    memory: str = ""         # how the run's memory was bounded


def run_job(job: Job, *, deadline: float | None = None, sandbox: bool = False,
            limits: _sandbox.Limits | None = None, hide: list[str | Path] = (),
            tmp_root: str | Path | None = None) -> RunResult:
    """Run the planned *job* in a new harness process; return what each
    cell did, each check's output compared here with its reference.

    *deadline* (default: the job's run limit) is one wall-clock limit for
    the whole run, however many cells it has.  A kernel that never started
    ran none of the student's code: that is the machine's fault, not the
    student's, so such a run is tried once more, and is a grader error if
    the second start fails too.
    """
    deadline = job.run_limit_s if deadline is None else deadline
    tmp = Path(tmp_root).resolve() if tmp_root else None
    request = {"cells": job.for_harness(), "cell_timeout": job.cell_timeout, "sandbox": bool(sandbox),
               "limits": (limits or _sandbox.Limits()).as_dict(), "probe_setup": list(job.probe_setup),
               "hide": _covering(hide), "tmp": str(tmp) if tmp else None}
    result = _judge_cells(job, _run_once(request, deadline=deadline))
    if _kernel_never_started(result):
        result = _judge_cells(job, _run_once(request, deadline=deadline))
        if _kernel_never_started(result):
            result.grader_error = next(c.message for c in result.cells.values())
    return result


def run_notebook(nb: nbformat.NotebookNode, *, cell_timeout: float = DEFAULT_CELL_TIMEOUT_S,
                 deadline: float | None = None, sandbox: bool = False,
                 limits: _sandbox.Limits | None = None, hide: list[str | Path] = (),
                 tmp_root: str | Path | None = None) -> RunResult:
    """Run a notebook whose metadata is trusted (a lab source, or one a
    test built): each check cell compared with its outputs, each hidden
    check as a probe.  A student's notebook goes through
    :func:`mailkit.labs.planning.plan` instead."""
    return run_job(plan_trusted_notebook(nb, cell_timeout=cell_timeout), deadline=deadline,
                   sandbox=sandbox, limits=limits, hide=hide, tmp_root=tmp_root)


def _judge_cells(job: Job, result: RunResult) -> RunResult:
    """Each check's verdict, here in the grader: its reported output
    against the reference, masked as nbval masks."""
    for index, cell in result.cells.items():
        planned = job.cells[index] if 0 <= index < len(job.cells) else None
        if planned is None or not cell.passed or planned.reference is None:
            continue
        expected, got = sanitize(planned.reference), sanitize(cell.got)
        if expected != got:
            cell.passed, cell.message, cell.expected, cell.got = False, "Cell outputs differ", expected, got
    return result


def _covering(folders) -> list[str]:
    """*folders* without those inside another (covering a folder hides what
    is below it), sorted: the same for every student's notebook of a class
    (each student's folder is inside the submissions'), so one spare kernel
    fits any of them."""
    paths = sorted({Path(f).resolve() for f in folders})
    return [str(p) for p in paths if not any(o in p.parents for o in paths)]


def _kernel_never_started(result: RunResult) -> bool:
    """No student code ran: the kernel did not answer, or exited, before any cell."""
    return not result.killed and any(
        c.message.startswith(("the kernel did not start", "the kernel exited at start"))
        for c in result.cells.values())


_KERNEL_SETTINGS = ("sandbox", "limits", "hide", "tmp")    # what the harness needs to start a kernel


class _Harness:
    """A harness process, started with its kernel's settings: it starts the
    kernel at once and waits for its notebook's job."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.private = Path(tempfile.mkdtemp(prefix="mailkit-run-", dir=settings.get("tmp")))  # 0700, never in a sandbox
        self.log = self.private / "harness.log"
        # The run's memory cgroup is made (and removed) here, in the grader:
        # whatever happens to the harness, it does not outlive the run.
        self.cgroup = (_sandbox.MemoryCgroup.create(settings["limits"]["memory_mb"])
                       if settings.get("sandbox") else None)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        report_r, report_w = os.pipe()       # the report: only the harness holds its write end
        try:
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen([sys.executable, "-m", "mailkit.labs.harness", str(report_w)],
                                             env=env, cwd=self.private, stdin=subprocess.PIPE, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             pass_fds=(report_w,), preexec_fn=_sandbox.child_of_this_process())
        finally:
            os.close(report_w)
        self.report: list[bytes] = []
        self.reader = threading.Thread(target=self._read_report, args=(report_r,), daemon=True)
        self.reader.start()
        try:
            cgroup = self.cgroup.as_list() if self.cgroup else None
            self.proc.stdin.write(json.dumps(dict(settings, cgroup=cgroup)).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def _read_report(self, fd: int) -> None:
        size = 0
        with open(fd, "rb") as f:
            for line in f:
                size += len(line)
                if size <= REPORT_MAX_BYTES:
                    self.report.append(line)

    def discard(self) -> None:
        _kill_group(self.proc)
        self.reader.join(REPORT_READ_S)
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)
        if self.cgroup is not None:
            self.cgroup.remove()


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
    private, log, proc = harness.private, harness.log, harness.proc
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
        harness.reader.join(REPORT_READ_S)
        result.log = log.read_text(errors="replace")[-4000:]
        records = _records(harness.report)
        result.cells = _cells(records)
        ended = next((r for r in records if "processes_seen" in r), None)
        if ended is not None:
            result.processes_seen = ended.get("processes_seen", -1)
            result.processes_left = ended.get("processes_left", -1)
            result.memory = str(ended.get("memory", ""))
        result.grader_error = next((str(r["grader_error"]) for r in records if r.get("grader_error")), "")
        if not result.killed and not result.grader_error:
            if proc.returncode not in (0, None):
                tail = result.log.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
                result.grader_error = f"the grader's harness failed: {tail[0][:300]}"
            elif ended is None:
                result.grader_error = "the grader's harness ended without finishing its report"
    finally:
        harness.cleanup()
        result.seconds = time.perf_counter() - started
    return result


@dataclass
class ServerRun:
    """What the harness reported of one server lab's run (plain data)."""

    checks: dict[str, dict] = field(default_factory=dict)   # check id -> {"status", "message", "expected"}
    seconds: float = 0.0
    build_seconds: float = 0.0
    probes_seconds: float = 0.0
    build_failed: str = ""
    start_failed: str = ""
    killed: bool = False
    sandboxed: bool = True
    grader_error: str = ""
    memory: str = ""
    log: str = ""


def run_server_job(job, *, limits: _sandbox.Limits | None = None, hide: list[str | Path] = (),
                   tmp_root: str | Path | None = None) -> ServerRun:
    """Run a server lab's planned *job* (:class:`mailkit.labs.serverlab.ServerJob`)
    in a new harness: built and started in the sandbox, probed from the
    harness (see :mod:`mailkit.labs.serverrun`), within the job's one
    wall-clock limit.  Only the sandboxed way exists."""
    tmp = Path(tmp_root).resolve() if tmp_root else None
    settings = {"sandbox": True, "limits": (limits or _sandbox.Limits()).as_dict(), "hide": _covering(hide),
                "tmp": str(tmp) if tmp else None, "kind": "server"}
    harness = _Harness(settings)
    started = time.perf_counter()
    run = ServerRun()
    try:
        try:
            request = dict(job.for_harness(), seed=secrets.randbits(62))   # the hidden inputs: only in the pipe
            harness.proc.stdin.write(json.dumps(request).encode() + b"\n")
            harness.proc.stdin.close()
            harness.proc.wait(timeout=job.run_limit_s)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            run.killed = harness.proc.poll() is None
        finally:
            _kill_group(harness.proc)
        harness.reader.join(REPORT_READ_S)
        run.log = harness.log.read_text(errors="replace")[-4000:]
        for rec in _records(harness.report):
            if "build" in rec:
                run.build_seconds = float(rec.get("seconds", 0))
                if rec["build"] != 0:
                    why = "it ran longer than the build limit" if rec["build"] == "timeout" else \
                        f"exit status {rec['build']}"
                    run.build_failed = f"{why}; its output ends:\n{rec.get('log', '')}"
            elif "start_failed" in rec:
                run.start_failed = f"{rec['start_failed']}; its output ends:\n{rec.get('log', '')}"
            elif isinstance(rec.get("check"), str) and rec["check"] not in run.checks:
                run.checks[rec["check"]] = rec
                if rec.get("status") == "error" and not run.grader_error:
                    run.grader_error = f"the conformance suite failed on {rec['check']}: {rec.get('message', '')[:300]}"
            elif "probes_s" in rec:
                run.probes_seconds = float(rec["probes_s"])
            elif rec.get("grader_error"):
                run.grader_error = str(rec["grader_error"])
            elif "memory" in rec:
                run.memory = str(rec["memory"])
        if not run.killed and not run.grader_error and not any("memory" in r for r in _records(harness.report)):
            run.grader_error = "the grader's harness ended without finishing its report"
    finally:
        harness.cleanup()
        run.seconds = time.perf_counter() - started
    return run


def _records(lines: list[bytes]) -> list[dict]:
    records = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue            # the last line of a killed run may be cut short
        if isinstance(rec, dict):
            records.append(rec)
    return records


def _cells(records: list[dict]) -> dict[int, CellResult]:
    """What each cell did, as the harness saw it; passed means it ran to
    the end without an error (the grader then compares its output)."""
    cells: dict[int, CellResult] = {}
    for rec in records:
        if not isinstance(rec.get("cell"), int) or rec["cell"] in cells:
            continue
        cells[rec["cell"]] = CellResult(
            rec["cell"], rec.get("status") == "ok" and not rec.get("grader_error"),
            str(rec.get("message", "")), str(rec.get("traceback", "")), "", str(rec.get("got", "")))
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
