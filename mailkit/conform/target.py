"""The program under test: a server at HOST:PORT, or a command the suite starts.

A command is a list of words with placeholders, filled in by the suite:

``{port}``
    a free TCP port on 127.0.0.1 the server must listen on;
``{users}``
    a file of ``NAME:PASSWORD`` lines (mode 0600) with the accounts the
    suite logs in with (the server must accept exactly these);
``{db}``
    a path in the suite's private folder for anything the server keeps:
    it is the same path when the suite restarts the server;
``{dir}``
    that private folder itself.

Accounts: with HOST:PORT the suite uses the ``--user NAME:PASSWORD`` given
(at least two; default ``alice:wonderland`` and ``bob:builder``); with a
command it makes two accounts with random passwords and writes them to
``{users}`` (or uses the ``--user`` ones).  Readiness: the suite connects
(and closes at once, sending nothing) every 50 ms until the port accepts,
so a server must survive an empty connection.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["AddressTarget", "CommandTarget", "DEFAULT_USERS", "free_port", "parse_address",
           "StartFailed", "fill"]

DEFAULT_USERS = {"alice": "wonderland", "bob": "builder"}
START_TIMEOUT_S = 15.0     # a compiled server starts in ms, `python -m mailkit serve` in ~0.5 s
POLL_S = 0.05
PORT_TRIES = 3             # another program may take the free port before the server binds it


class StartFailed(RuntimeError):
    """The command under test did not start listening (its output says why)."""


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel picks it: port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fill(words: list[str], values: dict[str, str]) -> list[str]:
    """*words* with each ``{name}`` replaced (only the names in *values*)."""
    out = []
    for word in words:
        for name, value in values.items():
            word = word.replace("{" + name + "}", str(value))
        out.append(word)
    return out


class AddressTarget:
    """A server someone else runs; the suite cannot restart it."""

    can_restart = False

    def __init__(self, address: tuple[str, int], users: dict[str, str] | None = None):
        self.address = tuple(address)
        self.users = dict(users or DEFAULT_USERS)
        self.label = "%s:%d" % self.address

    def start(self) -> "AddressTarget":
        return self

    def stop(self) -> None:
        pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class CommandTarget:
    """A server the suite starts (``words`` with placeholders), stops, and
    restarts (SIGKILL, then the same command on a new port, same ``{db}``)."""

    can_restart = True

    def __init__(self, words: list[str], users: dict[str, str] | None = None, *,
                 host: str = "127.0.0.1", workdir: str | None = None):
        if not words:
            raise ValueError("no command given after --")
        self.words = list(words)
        self.host = host
        self.users = dict(users) if users else {"alice": secrets.token_hex(6), "bob": secrets.token_hex(6)}
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="mailkit-conform-")
        self.dir = Path(workdir or self._tmp.name)
        self.users_file = self.dir / "users.txt"
        self.db = self.dir / "server.db"
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None
        self.label = shlex.join(self.words)
        self.starts = 0

    def _write_users(self) -> None:
        fd = os.open(self.users_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{name}:{pw}\n" for name, pw in self.users.items())

    def start(self) -> "CommandTarget":
        if self.proc is not None:
            return self
        if not self.users_file.exists():
            self._write_users()
        why = ""
        for _ in range(PORT_TRIES):
            port = free_port(self.host)
            argv = fill(self.words, self.placeholders(port))
            with open(self.log, "ab") as log:
                self.proc = self.launch(argv, log)
            self.starts += 1
            why = self._wait_ready((self.host, port))
            if not why:
                self.address = (self.host, port)
                return self
            self.stop()
        raise StartFailed(f"{self.label}: {why}; its output:\n{self.output()[-2000:]}")

    def placeholders(self, port: int) -> dict:
        """What ``{port}``, ``{users}``, ``{db}``, ``{dir}`` and ``{host}`` become."""
        return {"port": port, "users": self.users_file, "db": self.db, "dir": self.dir, "host": self.host}

    def launch(self, argv: list[str], log) -> subprocess.Popen:
        """Start *argv* with its output to *log* (a grader starts it in its sandbox instead)."""
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                cwd=os.getcwd(), start_new_session=True)

    def _wait_ready(self, address) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"it exited with status {self.proc.returncode} before listening on port {address[1]}"
            try:
                socket.create_connection(address, timeout=0.5).close()
                return ""
            except OSError:
                time.sleep(POLL_S)
        return f"nothing listened on port {address[1]} within {START_TIMEOUT_S:g} s"

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, seconds: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                pass

    def exit_status(self):
        return None if self.proc is None else self.proc.poll()

    def restart(self) -> tuple[str, int]:
        """Kill the server at once (SIGKILL: nothing flushed after the fact),
        start it again; return its new address."""
        self.stop(kill=True)
        self.start()
        return self.address

    def stop(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
