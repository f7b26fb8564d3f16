"""Stage 3 of grading, *run* (with :mod:`mailkit.labs.runner` and
:mod:`mailkit.labs.sandbox`): one notebook's run, in a process of its own:
``python -m mailkit.labs.harness REPORT_FD`` with the kernel's settings and
then the job on stdin (one JSON line each).

The job is the planner's (:mod:`mailkit.labs.planning`), made from the lab
source: the cells to run in the student's sandboxed kernel (the source's
setup cells, the student's solution cells and extras, the visible check
cells), and the hidden checks, which never go to the kernel: each is a
*probe* (see :mod:`mailkit.labs.probe`) whose code is the lab source's
cell, run here with inputs drawn from a seed the grader chose for this run;
it talks to the student's code through the kernel and over loopback.
Nothing of a submission is ever run in this process: a probe's source is
the instructor's, and what comes back from the kernel is plain data.

This process judges nothing: it reports what each cell printed and how it
ended; the grader (:mod:`mailkit.labs.runner`, :mod:`mailkit.labs.judging`)
compares with references that never leave it.

With ``"sandbox": true`` this process first moves into a network namespace
of its own (the kernel shares it, nothing else does) and starts the kernel
under :func:`mailkit.labs.sandbox.bwrap_command`.

One JSON line per cell is written to REPORT_FD, a pipe to the grader that
no other process holds (the kernel is started with every other descriptor
closed), as soon as the cell is done.  This module imports
jupyter_client, never nbformat or pytest: it starts once per notebook.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import sandbox
from .sanitize import canonical

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_OUTPUT = 200_000          # characters of output kept per cell
KERNEL_STARTUP_S = 30.0
INTERRUPT_GRACE_S = 3.0
PROBE_BUDGET_CELLS = 2        # a hidden check's calls into the kernel take at most 2 cell time limits in all


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text or "")


def start_time(pid: int) -> str:
    """When process *pid* started (clock ticks since boot): with the pid, it
    names one process, even after the pid is reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def _reap() -> None:
    """Reap the sandbox's orphans (this process is their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _note_pid(name: str, pid: int) -> None:
    """Write down a process this run started (in the run's private folder,
    the harness's working directory), so that whoever checks that a run
    left nothing behind looks at these and only these."""
    with open(name, "a") as f:
        f.write(f"{pid} {start_time(pid)}\n")


class Kernel:
    """A kernel this harness started, sandboxed or not, and a client for it."""

    def __init__(self, *, sandboxed: bool, limits: sandbox.Limits, hide: list[str], tmp: str | None = None,
                 cgroup: sandbox.MemoryCgroup | None = None):
        from jupyter_client.blocking import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self.dir = Path(tempfile.mkdtemp(prefix="mailkit-kernel-", dir=tmp))
        os.chmod(self.dir, 0o755)
        conn, info = write_connection_file(str(self.dir / "kernel.json"), ip="127.0.0.1")
        os.chmod(conn, 0o644)     # the key is this kernel's own: only its harness talks to it
        self.log = tempfile.TemporaryFile()
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", None,
                "--HistoryManager.enabled=False", "--IPKernelApp.quiet=True"]
        if sandboxed:
            uid = sandbox.UID_RANGE[0] + secrets.randbelow(sandbox.UID_RANGE[1] - sandbox.UID_RANGE[0])
            argv[4] = f"{sandbox.RUN_DIR}/kernel.json"
            cmd = sandbox.bwrap_command(argv, uid=uid, run_dir=self.dir, limits=limits,
                                        hide=[Path(h) for h in hide])
            # The whole run's memory, every process it starts included: a
            # cgroup where this machine has one we may use, else rlimits.
            self.cgroup = cgroup        # made by the grader for this run (None: none here)
            preexec = sandbox.preexec(limits, cgroup=self.cgroup)
            self.memory_bound = (self.cgroup.describe() if self.cgroup
                                 else sandbox.rlimit_bound(limits))
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            cwd = "/"
            info_r, info_w = os.pipe()
            cmd[1:1] = ["--info-fd", str(info_w)]
        else:
            argv[4] = conn
            self.cgroup, self.memory_bound = None, "none (unsandboxed)"
            cmd, preexec, cwd = argv, sandbox.child_of_this_process(), str(self.dir)
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", JPY_PARENT_PID=str(os.getpid()))
            for name in list(env):
                if name.startswith(("MAILKIT_LABS", "PYTEST", "JPY_")):
                    env.pop(name)
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log,
                                     preexec_fn=preexec, start_new_session=True,
                                     pass_fds=(info_w,) if sandboxed else ())
        self.sandboxed, self.child, self.seen = sandboxed, None, -1
        _note_pid("kernel.pids", self.proc.pid)
        self.procfs = None     # the sandbox's own /proc: every process of its PID namespace, and no other
        if sandboxed:
            os.close(info_w)
            with os.fdopen(info_r, "rb") as status:
                raw = status.read(4096)
            try:
                self.child = int(json.loads(raw[:raw.index(b"}") + 1])["child-pid"])
                _note_pid("kernel.pids", self.child)
            except (ValueError, KeyError, TypeError):
                self.child = None
        self.client = BlockingKernelClient()
        self.client.load_connection_info(info)
        self.client.start_channels()
        self.dead = False

    def wait_ready(self, timeout: float) -> str:
        """``""`` once the kernel answers, else why it did not start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                err = self.log.read()[-4000:].decode(errors="replace").strip().splitlines()
                return f"the kernel exited at start ({err[-1] if err else self.proc.returncode})"
            try:
                self.client.wait_for_ready(timeout=min(0.5, max(0.1, deadline - time.monotonic())))
                if self.sandboxed and self.child:     # set up by now: the sandbox's own /proc
                    try:
                        self.procfs = os.open(f"/proc/{self.child}/root/proc", os.O_RDONLY | os.O_DIRECTORY)
                    except OSError:
                        self.procfs = None
                return ""
            except RuntimeError:
                continue
        return f"the kernel did not start: no answer in {timeout:g} s"

    def execute(self, code: str, timeout: float, *, user_expressions: dict | None = None) -> dict:
        """Run *code*; return ``{"outputs", "status", "timed_out", "expressions"}``."""
        if self.dead:
            return {"outputs": [], "status": "dead", "timed_out": False, "expressions": {}}
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False,
                                     user_expressions=user_expressions or {})
        outputs, size = [], 0
        deadline = time.monotonic() + timeout
        timed_out = False
        idle = False
        while not idle:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if timed_out:           # interrupted, and still busy: give up on this kernel
                    self.kill()
                    return {"outputs": outputs, "status": "unresponsive", "timed_out": True, "expressions": {}}
                timed_out = True
                self.interrupt()
                deadline = time.monotonic() + INTERRUPT_GRACE_S
                continue
            try:
                msg = self.client.get_iopub_msg(timeout=min(remaining, 0.5))
            except Exception:          # queue.Empty
                if self.proc.poll() is not None:
                    self.dead = True
                    return {"outputs": outputs, "status": "dead", "timed_out": timed_out, "expressions": {}}
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind in ("stream", "execute_result", "display_data", "error") and size < MAX_OUTPUT:
                out = {"output_type": kind}
                if kind == "stream":
                    out.update(name=content.get("name"), text=str(content.get("text", ""))[:MAX_OUTPUT])
                    if outputs and outputs[-1]["output_type"] == "stream" and outputs[-1]["name"] == out["name"]:
                        outputs[-1]["text"] += out["text"]
                        size += len(out["text"])
                        continue
                elif kind == "error":
                    out.update(ename=str(content.get("ename")), evalue=str(content.get("evalue"))[:2000],
                               traceback=[strip_ansi(str(t))[:5000] for t in content.get("traceback", [])[-20:]])
                else:
                    out["data"] = {"text/plain": str(content.get("data", {}).get("text/plain", ""))[:MAX_OUTPUT]}
                size += len(json.dumps(out))
                outputs.append(out)
            elif kind == "clear_output":
                outputs.clear()
        expressions, status = {}, "ok"
        try:
            while True:
                reply = self.client.get_shell_msg(timeout=2.0)
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    status = reply["content"].get("status", "ok")
                    expressions = reply["content"].get("user_expressions", {}) or {}
                    break
        except Exception:
            pass
        if any(o["output_type"] == "error" for o in outputs):
            status = "error"
        return {"outputs": outputs, "status": "timeout" if timed_out else status,
                "timed_out": timed_out, "expressions": expressions}

    def interrupt(self) -> None:
        msg = self.client.session.msg("interrupt_request", content={})
        self.client.control_channel.send(msg)

    def kill(self) -> None:
        if not self.dead:
            self.seen = max(self.seen, self.processes())   # what the run had started, just before its end
        self.dead = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def processes(self) -> int:
        """How many live processes the sandbox's PID namespace holds now
        (-1: unknown); a zombie is dead, waiting for its parent to reap it."""
        if self.procfs is None:
            return -1
        try:
            names = [name for name in os.listdir(self.procfs) if name.isdigit()]
        except OSError:
            return 0
        alive = 0
        for name in names:
            try:
                fd = os.open(f"{name}/stat", os.O_RDONLY, dir_fd=self.procfs)
                try:
                    state = os.read(fd, 512).rpartition(b")")[2].split()[0]
                finally:
                    os.close(fd)
            except (OSError, IndexError):
                continue            # gone while we looked
            alive += state not in (b"Z", b"X")
        return alive

    def close(self) -> tuple[int, int]:
        """Stop the kernel and everything the run started; return how many
        processes the sandbox held before, and how many are left after (0)."""
        self.seen = max(self.seen, self.processes())
        try:
            self.client.stop_channels()
        except Exception:
            pass
        self.kill()      # bwrap's end ends its PID namespace: Linux kills every process in it
        left = self.processes()
        deadline = time.monotonic() + 5.0
        while left > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            _reap()
            left = self.processes()
        _reap()
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.procfs is not None:
            os.close(self.procfs)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.seen, left


class RemoteKernel:
    """What a probe (a hidden check) uses to reach the student's code: each
    call runs in the kernel, and only a value comes back (its ``repr``,
    read with ``ast.literal_eval``: plain data, never code)."""

    remote = True

    def __init__(self, kernel: Kernel, timeout: float):
        self._kernel, self._timeout = kernel, timeout
        self.budget_end = float("inf")      # a probe's calls share one budget (set by run_probe)

    def exec(self, code: str) -> None:
        self._run(code + "\n__mk_r = ('ok', 'None')")

    def eval(self, expression: str):
        return self._run(f"__mk_r = ('ok', repr({expression}))")

    def call(self, name: str, *args, **kwargs):
        params = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        return self.eval(f"{name}({params})")

    def _run(self, code: str):
        from .probe import Raised
        wrapped = ("try:\n" + "".join(f"    {line}\n" for line in code.splitlines())
                   + "except BaseException as __mk_e:\n"
                   "    __mk_r = ('raised', type(__mk_e).__name__, str(__mk_e)[:300])\n")
        left = self.budget_end - time.monotonic()
        if left <= 0:
            raise Raised("Timeout", "the hidden check ran out of time")
        timeout = min(self._timeout, left)
        done = self._kernel.execute(wrapped, timeout, user_expressions={"r": "__mk_r"})
        if done["timed_out"]:
            raise Raised("Timeout", f"no answer in {timeout:g} s")
        if done["status"] in ("dead", "unresponsive"):
            raise Raised("KernelDied", "the kernel died or stopped responding")
        text = done["expressions"].get("r", {}).get("data", {}).get("text/plain", "")
        try:
            result = ast.literal_eval(text[:MAX_OUTPUT])
            if result[0] == "raised":
                raise Raised(str(result[1]), str(result[2]))
            return ast.literal_eval(result[1][:MAX_OUTPUT])
        except Raised:
            raise
        except Exception:
            raise Raised("BadValue", "the value is not plain data") from None


# A probe's own bug, not the student's: these come from the probe's code,
# never from a value the kernel returned (that arrives as plain data, or as
# Raised).  Such a run is a grader error, retried, never a grade.
PROBE_BUGS = (NameError, ImportError, SyntaxError)


def run_probe(source: str, setup: list[str], kernel: RemoteKernel, seed: int) -> dict:
    """Run one hidden check's cell (the lab source's) here, with the probe
    machinery pointed at the student's kernel; return
    ``{"outputs": [...], "error": ..., "grader_error": ""}``."""
    from . import probe
    namespace: dict = {"__name__": "__mailkit_probe__"}
    out = io.StringIO()
    probe.use(kernel, seed)
    kernel.budget_end = time.monotonic() + PROBE_BUDGET_CELLS * kernel._timeout
    error, bug = None, ""
    try:
        with contextlib.redirect_stdout(out):
            try:
                for code in setup:
                    exec(compile(code, "<setup>", "exec"), namespace)
            except Exception as exc:
                bug = f"the lab's setup failed in the grader: {type(exc).__name__}: {str(exc)[:200]}"
                raise
            exec(compile(source, "<hidden check>", "exec"), namespace)
    except probe.Raised as exc:
        error = {"ename": exc.name, "evalue": exc.message}
    except Exception as exc:       # the probe's own assertion or a failed connection
        error = {"ename": type(exc).__name__, "evalue": str(exc)[:300]}
        if isinstance(exc, PROBE_BUGS) and not bug:
            bug = f"a hidden check failed in the grader: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        probe.use(None, 0)
    outputs = [{"output_type": "stream", "name": "stdout", "text": out.getvalue()}] if out.getvalue() else []
    if error:
        outputs.append({"output_type": "error", **error, "traceback": [f"{error['ename']}: {error['evalue']}"]})
    return {"outputs": outputs, "error": error, "grader_error": bug}


def main(report_fd: str) -> int:
    # Two JSON lines on stdin: first the kernel's settings (this process
    # starts the kernel at once), then the notebook's job.  So the grader
    # can start a notebook's harness and kernel while the one before is
    # still running (see runner.warm_kernels): the job, the seed and the
    # student's cells arrive only when that notebook's turn comes.
    job = json.loads(sys.stdin.readline())
    sandbox.die_with_parent()
    sandbox.become_subreaper()
    _note_pid("harness.pids", os.getpid())
    if job.get("sandbox"):
        sandbox.enter_network_namespace()
    limits = sandbox.Limits(**job.get("limits", {}))
    out = open(int(report_fd), "w", encoding="utf-8", closefd=True)

    def write(record: dict) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()

    if job.get("kind") == "server":        # a server in any language: no kernel (see serverrun)
        from .serverrun import run_server_job
        try:
            if not job.get("sandbox"):
                raise RuntimeError("a server lab is graded in the sandbox only")
            job.update(json.loads(sys.stdin.readline()))
            run_server_job(job, write, limits=limits, hide=job.get("hide", []),
                           cgroup=sandbox.MemoryCgroup.from_list(job.get("cgroup")))
        except Exception as exc:            # ours, never the student's: the grader retries it
            write({"grader_error": f"the server harness failed: {type(exc).__name__}: {str(exc)[:300]}"})
        finally:
            _reap()
            group = sandbox.MemoryCgroup.from_list(job.get("cgroup"))
            write({"processes_seen": -1, "processes_left": 0,
                   "memory": group.describe() if group else sandbox.rlimit_bound(limits)})
            out.close()
        return 0
    kernel = Kernel(sandboxed=bool(job.get("sandbox")), limits=limits, hide=job.get("hide", []),
                    tmp=job.get("tmp"), cgroup=sandbox.MemoryCgroup.from_list(job.get("cgroup")))
    try:
        began = time.monotonic()
        why = kernel.wait_ready(float(job.get("startup_timeout", KERNEL_STARTUP_S)))
        if why:
            write({"cell": 0, "status": "no kernel", "message": why})
            return 0
        write({"kernel_ready_s": round(time.monotonic() - began, 3)})
        line = sys.stdin.readline()
        if not line.strip():
            return 0            # a spare kernel the grader did not need
        job.update(json.loads(line))
        timeout = float(job["cell_timeout"])
        remote = RemoteKernel(kernel, timeout)
        for index, cell in enumerate(job["cells"]):
            if kernel.dead:
                break
            began = time.monotonic()
            bug = ""
            if cell.get("probe"):
                done = run_probe(cell["source"], job.get("probe_setup", []), remote, int(job["seed"]))
                outputs, bug = done["outputs"], done["grader_error"]
                status = "error" if done["error"] else "ok"
                if done["error"] and done["error"]["ename"] in ("Timeout", "KernelDied"):
                    status = "timeout" if done["error"]["ename"] == "Timeout" else "dead"
            else:
                done = kernel.execute(cell["source"], timeout)
                outputs, status = done["outputs"], done["status"]
            # What happened, not a verdict: the grader compares `got` with
            # the reference, which this process never had.
            record = {"cell": index, "status": status, "seconds": round(time.monotonic() - began, 3)}
            if cell.get("keep"):
                record["got"] = canonical(outputs)
            if bug:
                record["grader_error"] = bug
            if status == "timeout":
                record["message"] = "Timeout: the cell ran longer than the time limit"
            elif status in ("dead", "unresponsive"):
                record["message"] = "Failed to interrupt kernel, or the kernel died (waiting for output)"
            elif status == "error":
                err = next((o for o in outputs if o["output_type"] == "error"), {})
                record["message"] = "Cell execution caused an exception"
                record["traceback"] = "\n".join(err.get("traceback") or [f"{err.get('ename')}: {err.get('evalue')}"])
            write(record)
            if status in ("dead", "unresponsive"):
                break
    finally:
        seen, left = kernel.close()
        write({"processes_seen": seen, "processes_left": left, "memory": kernel.memory_bound})
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
