"""Run one notebook under ``pytest --nbval`` (strict) in a process of its own.

Each run gets a fresh temporary folder (the kernel's working directory), a
kernel of its own, a timeout per cell (nbval's) and a deadline for the
whole run (ours).  Whatever happens inside (an infinite loop, a crash, a
kernel that dies), :func:`run_notebook` returns within the deadline with a
result per cell that finished; a cell with no result did not pass.

Kernels start in a session of their own, so killing pytest's process group
does not reach them: every process of a run carries a marker in its
environment, and whatever still carries it at the end is killed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .sanitize import write_sanitize_file

__all__ = ["CellResult", "RunResult", "run_notebook", "DEFAULT_CELL_TIMEOUT_S"]

DEFAULT_CELL_TIMEOUT_S = 10.0   # a lab's slowest check takes about a second
KERNEL_STARTUP_S = 30.0         # a cold kernel on a busy laptop; usually ~1 s
# nbval waits up to 5 s more for a cell's output after interrupting it.
NBVAL_GRACE_S = 10.0
MARKER = "MAILKIT_LABS_RUN"
KILL_WAIT_S = 2.0               # for killed processes to be gone


@dataclass
class CellResult:
    cell: int
    passed: bool
    message: str = ""        # nbval's: "Cell outputs differ", "Cell execution caused an exception"...
    traceback: str = ""
    expected: str = ""       # sanitized reference text, when the outputs differ
    got: str = ""


@dataclass
class RunResult:
    cells: dict[int, CellResult] = field(default_factory=dict)
    seconds: float = 0.0
    killed: bool = False     # the deadline was reached
    log: str = ""            # the end of pytest's own output


def deadline_for(nb: nbformat.NotebookNode, cell_timeout: float) -> float:
    """Seconds a run may take: start a kernel, then every code cell at its timeout."""
    code = sum(c.cell_type == "code" for c in nb.cells)
    return KERNEL_STARTUP_S + code * (cell_timeout + NBVAL_GRACE_S)


def run_notebook(nb: nbformat.NotebookNode, *, cell_timeout: float = DEFAULT_CELL_TIMEOUT_S,
                 deadline: float | None = None, name: str = "submission.ipynb") -> RunResult:
    """Check *nb* with nbval in a new process; return what each cell did.

    A kernel that never started ran none of the student's code: that is the
    machine's fault, not the student's (jupyter_client can pick ports that a
    kernel starting at the same moment also picked), so such a run is tried
    once more.  Its cells still count as failed if the second start fails too.
    """
    deadline = deadline_for(nb, cell_timeout) if deadline is None else deadline
    result = _run_once(nb, cell_timeout=cell_timeout, deadline=deadline, name=name)
    if _kernel_never_started(result):
        result = _run_once(nb, cell_timeout=cell_timeout, deadline=deadline, name=name)
    return result


def _kernel_never_started(result: RunResult) -> bool:
    return not result.killed and any(
        c.message.startswith("the kernel did not start") for c in result.cells.values())


def _run_once(nb: nbformat.NotebookNode, *, cell_timeout: float, deadline: float,
              name: str) -> RunResult:
    workdir = Path(tempfile.mkdtemp(prefix="mailkit-labs-"))
    token = uuid.uuid4().hex
    started = time.perf_counter()
    result = RunResult()
    try:
        nbformat.write(nb, workdir / name)
        (workdir / "pytest.ini").write_text("[pytest]\n")
        sanitize = write_sanitize_file(workdir / "sanitize.cfg")
        report = workdir / "report.jsonl"
        cmd = [
            sys.executable, "-m", "mailkit.labs._nbval_run", str(report),
            "-p", "nbval.plugin", "-p", "no:cacheprovider", "-q", "--color=no",
            "--rootdir", str(workdir), "-c", str(workdir / "pytest.ini"),
            "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(sanitize),
            "--nbval-cell-timeout", str(cell_timeout),
            "--nbval-kernel-startup-timeout", str(KERNEL_STARTUP_S),
            name,
        ]
        env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1",
                   **{MARKER: token})
        env.pop("PYTEST_ADDOPTS", None)
        log = workdir / "pytest.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout=deadline)
            except subprocess.TimeoutExpired:
                result.killed = True
            finally:
                _kill_group(proc)
                _kill_marked(token)
        result.log = log.read_text(errors="replace")[-4000:]
        result.cells = _read_report(report)
    finally:
        _kill_marked(token)
        shutil.rmtree(workdir, ignore_errors=True)
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
        cells[rec["cell"]] = CellResult(
            rec["cell"], bool(rec["passed"]), rec.get("message", ""), rec.get("traceback", ""),
            rec.get("expected", ""), rec.get("got", ""))
    return cells


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            proc.kill()
    proc.wait()


def _marked(token: str) -> list[int]:
    needle = f"{MARKER}={token}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def _kill_marked(token: str, *, wait: float = KILL_WAIT_S) -> None:
    """Kill every process whose environment carries this run's marker (the
    kernel, and anything the student's code started), and wait until they
    are gone.  Linux only: elsewhere a kernel exits on its own within a
    second of losing its parent."""
    if not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + wait
    while pids := _marked(token):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
