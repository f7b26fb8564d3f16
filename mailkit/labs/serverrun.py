"""Stage 3 for a server lab, in the harness process (see
:mod:`mailkit.labs.harness`): build the student's server and run it in the
sandbox, and probe it from here.

This process is the grader's: root, outside the sandbox's PID namespace,
mount namespace and uid.  It moved into a network namespace of its own
before anything started (the sandbox shares it, nothing else does), so
the conformance client (:mod:`mailkit.conform`) runs *here*, on sockets of
this process, and reaches the student's server over that namespace's
loopback.  The student's code can send bytes on the connections the
probes open, and nothing else: it cannot see, signal or trace this
process, nor write to the report pipe; the verdict of each probe is
computed here from those bytes and goes to the grader down the pipe.

The files arrive as data in the job; they are written (by this process,
into its private folder) under ``src/`` with plain modes, which the sandbox
sees read-only and copies into its scratch ``/home/student``: a tmpfs of
this process's own mount namespace, capped at ``--disk``, owned by the run's
throwaway uid, that outlives one start of the server (the durability check
restarts it) and vanishes with this process.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import string
import subprocess
import time
from pathlib import Path, PurePosixPath

from ..conform import CommandTarget, run_suite
from . import sandbox

__all__ = ["run_server_job", "SandboxedTarget", "BUILD_FAILED", "LOG_TAIL"]

BUILD_FAILED = 91          # the sandbox's build script exits with this when the build failed
LOG_TAIL = 1500            # characters of the build's output in the feedback
MESSAGE_CHARS = 2000       # one probe's message and expectation in the report


class SandboxedTarget(CommandTarget):
    """The student's start command, each start in its own bwrap under the
    run's uid, cgroup and rlimits, sharing this process's network namespace."""

    def __init__(self, words, users, *, run_dir: Path, scratch: Path, uid: int, limits: sandbox.Limits,
                 hide: list[Path], cgroup, log: Path):
        super().__init__(words, users, workdir=str(run_dir))
        self.scratch, self.uid, self.limits, self.hide, self.cgroup = scratch, uid, limits, hide, cgroup
        self.log = log
        fd = os.open(self.users_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)   # the server reads it
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{name}:{pw}\n" for name, pw in self.users.items())

    def placeholders(self, port: int) -> dict:
        return {"port": port, "users": f"{sandbox.RUN_DIR}/users.txt", "db": f"{sandbox.HOME}/mail.db",
                "dir": sandbox.HOME, "host": "127.0.0.1"}

    def launch(self, argv, log) -> subprocess.Popen:
        return _sandboxed(argv, self, stdout=log)


def _sandboxed(argv, t: SandboxedTarget, *, stdout) -> subprocess.Popen:
    cmd = sandbox.bwrap_command(list(argv), uid=t.uid, run_dir=t.dir, limits=t.limits, hide=t.hide,
                                home=t.scratch)
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
                            cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                            preexec_fn=sandbox.preexec(t.limits, cgroup=t.cgroup), start_new_session=True)


def _write_files(src: Path, files) -> None:
    """The student's files, as data: each path checked to stay inside *src*."""
    src.mkdir(mode=0o755)
    for rel, data, executable in files:
        parts = PurePosixPath(rel).parts
        if not parts or any(p in ("", ".", "..") or "/" in p for p in parts):
            continue
        path = src.joinpath(*parts)
        for parent in reversed(path.relative_to(src).parents):
            folder = src / parent
            if not folder.exists():
                folder.mkdir(mode=0o755)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if executable else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(data))
        os.chmod(path, 0o755 if executable else 0o644)


def _user_name() -> str:
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def run_server_job(job: dict, write, *, limits: sandbox.Limits, hide: list[str], cgroup) -> None:
    """Build, start and probe; each finding goes to *write* (the report)."""
    private = Path.cwd()                 # the harness's private folder (0700, never in a sandbox)
    run_dir, scratch = private / "run", private / "scratch"
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    scratch.mkdir(mode=0o700)
    uid = sandbox.UID_RANGE[0] + secrets.randbelow(sandbox.UID_RANGE[1] - sandbox.UID_RANGE[0])
    sandbox.private_scratch(scratch, uid=uid, size_mb=limits.disk_mb)
    _write_files(run_dir / "src", job["files"])
    users = {}
    while len(users) < 2:                # this run's accounts: drawn here, never seen before
        users[_user_name()] = secrets.token_urlsafe(9)
    target = SandboxedTarget(job["start"], users, run_dir=run_dir, scratch=scratch, uid=uid, limits=limits,
                             hide=[Path(h) for h in hide], cgroup=cgroup, log=private / "server.log")

    build = job["build"] or ["true"]
    script = f'cp -R {sandbox.RUN_DIR}/src/. . || exit 90; "$@" || exit {BUILD_FAILED}'
    log_path = private / "build.log"
    began = time.monotonic()
    with open(log_path, "wb") as log:
        proc = _sandboxed(["/bin/sh", "-c", script, "sh", *build], target, stdout=log)
        try:
            status = proc.wait(timeout=float(job["build_s"]))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = "timeout"
    tail = log_path.read_bytes()[-LOG_TAIL:].decode("utf-8", "replace")
    write({"build": status, "seconds": round(time.monotonic() - began, 3), "log": tail})
    if status != 0:
        return

    seed = int(job["seed"])
    wanted = list(job["checks"])
    names = sorted({c.partition("@")[0] for c in wanted})
    try:
        suite = run_suite(target, seed=seed, noise=any(c.endswith("@noise") for c in wanted), only=names,
                          budget=float(job["budget_s"]))
    except Exception as exc:          # StartFailed: the student's server never listened
        out = target.output()[-LOG_TAIL:]
        write({"start_failed": f"{str(exc).splitlines()[0][:300]}", "log": out})
        target.close()
        return
    for result in suite.results:
        if result.id in wanted:
            write({"check": result.id, "status": result.status, "message": result.message[:MESSAGE_CHARS],
                   "expected": result.expected[:MESSAGE_CHARS], "seconds": round(result.seconds, 3)})
    write({"probes_s": round(suite.seconds, 3), "starts": target.starts})
