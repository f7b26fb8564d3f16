"""Shared fixtures: a running server on 127.0.0.1 port 0, and the accounts.

``server`` is parametrized: every test that takes it runs against BOTH
servers, the fast :class:`MailServer` and the teaching
:class:`SimpleMailServer` (ids ``fast`` and ``simple``).  A test of
something only the fast one does (its event loop, worker threads, limits)
takes ``fast_server`` instead and says so.  Accounts are hashed at a cheap
scrypt cost (``CHEAP_SCRYPT_N``); test_store keeps one test at the real cost.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))   # tests/legacy2017.py

from mailkit import MailClient, MailServer, SimpleMailServer  # noqa: E402
from mailkit.client import request_once  # noqa: E402

USERS = {"alice": "wonderland", "bob": "builder", "carol": "lamb"}
# scrypt N for test accounts: the hash string names its cost, so the servers
# verify these as usual, in microseconds instead of ~50 ms per login.
CHEAP_SCRYPT_N = 16
SERVERS = {"fast": MailServer, "simple": SimpleMailServer}


def wait_for(predicate, timeout: float = 5.0, step: float = 0.01) -> bool:
    """Poll *predicate* until it is true or *timeout* seconds passed; return
    its last value (tests assert it, so a timeout fails with their message)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


@pytest.fixture(params=sorted(SERVERS))
def server_class(request):
    """MailServer, then SimpleMailServer: the same test against both."""
    return SERVERS[request.param]


@pytest.fixture
def server(server_class):
    """A server (each kind in turn) with alice, bob and carol; a short idle
    timeout keeps the tests that wait for it quick."""
    with server_class(users=USERS, idle_timeout=0.3, scrypt_n=CHEAP_SCRYPT_N) as srv:
        yield srv


@pytest.fixture
def fast_server():
    """The fast MailServer only, for tests of what only it does."""
    with MailServer(users=USERS, idle_timeout=0.3, scrypt_n=CHEAP_SCRYPT_N) as srv:
        yield srv


@pytest.fixture
def alice(server) -> MailClient:
    client = MailClient(*server.address)
    client.login("alice", USERS["alice"])
    return client


@pytest.fixture
def bob(server) -> MailClient:
    client = MailClient(*server.address)
    client.login("bob", USERS["bob"])
    return client


# Send data on a fresh connection and read the reply until the server closes.
raw_request = request_once


def thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


class ServeProcess:
    """``python -m mailkit serve`` in a subprocess, on a free port."""

    def __init__(self, db, *extra: str, users=USERS):
        import subprocess

        args = [sys.executable, "-m", "mailkit", "serve", "--port", "0", "--db", str(db), *extra]
        for name, password in users.items():
            args += ["--user", f"{name}:{password}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.first_line = self.proc.stdout.readline()
        host, port = self.first_line.strip().rpartition(" ")[2].rsplit(":", 1)
        self.address = (host, int(port))

    def stop(self, sig=None) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGINT)
        if self.proc.returncode is None or not hasattr(self, "stdout_rest"):
            self.stdout_rest, self.stderr = self.proc.communicate(timeout=10)
        return self.proc.returncode


@pytest.fixture
def serve_process(tmp_path):
    """Start ``python -m mailkit serve`` with the test accounts; stopped at the end."""
    started = []

    def start(*extra: str, db=None, users=USERS) -> ServeProcess:
        proc = ServeProcess(db or tmp_path / "mail.db", *extra, users=users)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
