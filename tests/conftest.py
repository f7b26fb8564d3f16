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


# The programs the conformance tests run (mailkit.conform fills in the {placeholders}).
CONFORM_ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SERVE = [PY, "-m", "mailkit", "serve", "--port", "{port}", "--db", "{db}", "--users-file", "{users}", "--quiet"]
WRONG_SERVER = [PY, str(CONFORM_ROOT / "tests" / "wrong_servers.py")]
WRONG_CLIENT = [PY, str(CONFORM_ROOT / "tests" / "wrong_clients.py")]
EXAMPLE_CLIENT = [PY, str(CONFORM_ROOT / "examples" / "client.py"), "{host}", "{port}"]
CLIENT_2017 = [PY, "-m", "mailkit.course.client2017", "{host}", "{port}"]


class PerThreadStdout:
    """sys.stdout for probes run in threads: each thread prints into its own buffer."""

    def __init__(self, fallback):
        import threading
        self.local, self.fallback = threading.local(), fallback

    def write(self, text):
        return getattr(self.local, "buffer", self.fallback).write(text)

    def flush(self):
        pass


def failing(suite) -> set[str]:
    """The conformance checks (mailkit.conform) of *suite* that neither passed nor were skipped."""
    return {r.id for r in suite.results if r.status != "pass" and r.status != "skip"}


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


# -- make test: what runs first, and which part it is in -------------------------
#
# `make test` runs on every core with pytest-xdist, one file per work unit
# (--dist loadfile: a notebook's cells run in order on one worker, and a
# module's fixtures are built once).  Units are handed out in the order
# collected, so the costly ones are put first (--no-loadscope-reorder):
# a unit of many slow tests started last would keep one core busy alone.
# The order is the same on every worker (xdist checks that they agree).

def _unit(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


# Seconds of tests the longest files took on their worker (a fresh-clone
# `make test`, 4 workers, load 6-12, 2026-12-08, junit times; the files split
# since then: their share of it); a slow test's count says little (30 wrong
# solutions share one graded batch).  The browser tests, and the graded
# batches of wrong solutions, are split over several files (one JupyterLab,
# Voila or batch each) so that they run side by side.  Other files: a guess
# per item.  The summary at the end names the slowest files.
UNIT_SECONDS = {
    "tests/test_conform_examples.py": 143, "tests/test_labs67.py": 137, "tests/test_labs.py": 112,
    "tests/test_browser_save.py": 107, "tests/test_steer_lab6.py": 100, "tests/test_labs_wrong.py": 95,
    "tests/test_grading_hostile.py": 92, "tests/test_lab8_any_language.py": 92, "tests/test_class_server.py": 92,
    "tests/test_browser_forms_02_04.py": 85, "tests/test_fuzz.py": 80, "tests/test_browser_forms_03_07.py": 80,
    "tests/test_browser.py": 75, "tests/test_grading.py": 72, "tests/test_server.py": 68,
    "tests/test_lab6_wrong_timers.py": 65, "tests/test_guide_commands.py": 61, "tests/test_conform_clients.py": 56,
    "tests/test_conform.py": 52, "tests/test_lab7_wrong.py": 50, "tests/test_interop.py": 42,
    "tests/test_browser_voila.py": 40, "tests/test_steer.py": 40, "tests/test_hardening.py": 38,
    "tests/test_lab6_rto.py": 13,      # measured alone (one graded batch of 11 notebooks), not in the loaded run
    "tests/test_browser_09.py": 25,    # its own JupyterLab, notebook 09 run twice (load average 9)
    "tests/test_browser_10.py": 73,    # measured alone under load (one JupyterLab, the form twice)
}


def _cost(item) -> float:
    """A rough guess of an item's seconds: slow tests, a notebook cell, the rest."""
    if item.get_closest_marker("slow"):
        return 3.0
    if _unit(item.nodeid).endswith(".ipynb"):
        return 0.5                          # a cell under nbval: a kernel runs it
    return 0.05


def pytest_collection_modifyitems(config, items):
    cost: dict[str, float] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        unit = _unit(item.nodeid)
        cost[unit] = cost.get(unit, 0.0) + _cost(item)
        first.setdefault(unit, i)
    cost.update((unit, seconds) for unit, seconds in UNIT_SECONDS.items() if unit in cost)
    items.sort(key=lambda item: (-cost[_unit(item.nodeid)], first[_unit(item.nodeid)]))


def _part(nodeid: str, keywords) -> str:
    """The part of `make test` a test belongs to."""
    top = nodeid.split("/", 1)[0]
    if top != "tests":
        return f"{top}/ (nbval)"
    return "browser tests" if "browser" in keywords else "tests/"


class _Parts:
    """Says when each part of the run starts and ends, and at the end how
    long each took: wall time from its first test's start to its last's end,
    and its tests' seconds added up (more than the wall time when the
    part ran on several workers at once)."""

    def __init__(self, config):
        self.config = config
        self.expected: dict[str, int] | None = None
        self.parts: dict[str, dict] = {}
        self.units: dict[str, float] = {}      # seconds of tests per file
        self.began = time.time()

    def _say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write(f"\n{line}\n")      # between the rows of dots

    def expect(self, nodeids, keywords=lambda nodeid: ()) -> None:
        if self.expected is None:
            self.expected = {}
            for nodeid in nodeids:
                part = _part(nodeid, keywords(nodeid))
                self.expected[part] = self.expected.get(part, 0) + 1

    def pytest_collection_finish(self, session):
        by_id = {item.nodeid: item.keywords for item in session.items}
        self.expect(by_id, lambda nodeid: by_id[nodeid])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        # the controller sees ids only; browser tests are told by their files (tests/test_browser*.py)
        self.expect(ids, lambda nodeid: ("browser",) if nodeid.startswith("tests/test_browser") else ())

    def pytest_runtest_logreport(self, report):
        part = _part(report.nodeid, report.keywords)
        seen = self.parts.get(part)
        if seen is None:
            seen = self.parts[part] = {"start": report.start or time.time(), "stop": 0.0, "seconds": 0.0,
                                       "done": 0, "failed": 0, "skipped": 0}
            self._say(f"-- {part}: started at {self._clock(seen['start'])}")
        seen["start"] = min(seen["start"], report.start or seen["start"])
        seen["stop"] = max(seen["stop"], report.stop or time.time())
        seen["seconds"] += report.duration
        unit = _unit(report.nodeid)
        self.units[unit] = self.units.get(unit, 0.0) + report.duration
        if report.failed:
            seen["failed"] += 1
        elif report.skipped and report.when != "teardown":
            seen["skipped"] += 1
        if report.when == "teardown":
            seen["done"] += 1
            if self.expected and seen["done"] == self.expected.get(part):
                self._say(f"-- {part}: done at {self._clock(seen['stop'])}, {self._tests(seen)}, "
                          f"{self._took(seen)}")

    def _clock(self, when: float) -> str:
        seconds = max(0, int(when - self.began))
        return f"{seconds // 60}:{seconds % 60:02d}"

    @staticmethod
    def _tests(seen: dict) -> str:
        return f"{seen['done']} test{'s' * (seen['done'] != 1)}"

    @staticmethod
    def _took(seen: dict) -> str:
        failed = f", {seen['failed']} FAILED" if seen["failed"] else ""
        return f"{seen['stop'] - seen['start']:.0f} s wall, {seen['seconds']:.0f} s of tests{failed}"

    def pytest_terminal_summary(self, terminalreporter):
        if not self.parts:
            return
        terminalreporter.section("parts of the run")
        for part, seen in sorted(self.parts.items(), key=lambda kv: kv[1]["start"]):
            terminalreporter.write_line(f"{part:<20} {self._tests(seen):>11}  {self._took(seen)}")
        slowest = sorted(self.units.items(), key=lambda kv: -kv[1])[:8]
        terminalreporter.write_line("slowest files (seconds of tests; UNIT_SECONDS in tests/conftest.py "
                                    "starts them first): " + ", ".join(f"{u} {s:.0f}" for u, s in slowest))


# -- nbval's kernels over ipc -----------------------------------------------------
#
# pytest --nbval starts each notebook's kernel with jupyter_client's
# KernelManager, over TCP by default: it picks five free ports, closes them,
# and the kernel binds them a moment later.  With other tests beside it
# opening connections (each takes an ephemeral port), a port can be taken in
# between, and the kernel dies with "Address already in use" (seen in the
# browser tests' JupyterLab, which starts its kernels the same way; see
# tests/browser_support.py).  nbval's KernelManager has no parent to read a
# configuration from, so it is replaced by one whose kernels use ZeroMQ's
# ipc transport: Unix sockets in a private folder, which nobody else can take.

def _nbval_kernels_over_ipc() -> None:
    try:
        from nbval import kernel as nbval_kernel
    except ImportError:                     # nbval not installed: no notebooks to run
        return
    import os
    import shutil
    import tempfile
    import weakref

    from jupyter_client.manager import KernelManager

    class IpcKernelManager(KernelManager):
        """A KernelManager whose kernel listens on Unix sockets in a private
        folder with a short path (a socket's path has at most 107 bytes,
        unix(7)); the folder goes when the manager does."""

        def __init__(self, **kwargs):
            folder = tempfile.mkdtemp(prefix="mk-nbval-")
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("connection_file", os.path.join(folder, "kernel.json"))
            super().__init__(**kwargs)
            self._ipc_folder = folder
            weakref.finalize(self, shutil.rmtree, folder, True)      # if it is never shut down

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart:
                shutil.rmtree(self._ipc_folder, ignore_errors=True)

    if nbval_kernel.KernelManager is KernelManager:
        nbval_kernel.KernelManager = IpcKernelManager


def pytest_configure(config):
    _nbval_kernels_over_ipc()
    if not hasattr(config, "workerinput"):          # the controller (or a run without xdist) reports
        config.pluginmanager.register(_Parts(config), "mailkit-parts")
