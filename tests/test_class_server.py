"""A class server that one student cannot take from the others (issue 12, B1-B7).

Over real sockets on loopback, from distinct source addresses: the attacker
binds 127.0.0.3 (and up), the honest student 127.0.0.2, before connecting.
Policies that need time to pass use a fake clock (ClassLimits(clock=...));
memory is measured in a ``python -m mailkit serve`` subprocess (its own
/proc/PID/status, nothing system-wide).  Every loop is bounded.
"""

from __future__ import annotations

import logging
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mailkit import REPLIES, MailServer, SimpleMailServer
from mailkit.client import request_once
from mailkit.course import FakeClock
from mailkit.limits import ClassLimits, LoginThrottle
from mailkit.protocol import make_frame
from mailkit.store import MailStore

ROOT = Path(__file__).resolve().parent.parent
USERS = {"alice": "wonderland", "bob": "builder"}
HONEST, ATTACKER = "127.0.0.2", "127.0.0.3"
CHEAP_N = 16

pytestmark = pytest.mark.timeout(180)


def connect(address, source: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(address)
    return sock


def request(address, data: bytes, source: str = HONEST, timeout: float = 10.0) -> str:
    """One request from *source*, half-closed; the reply until the server closes."""
    reply = request_once(address, data, timeout=timeout, source_address=(source, 0))
    return reply.decode("utf-8", "replace")


def login(address, user: str = "alice", source: str = HONEST) -> str:
    reply = request(address, f"{user}:{USERS[user]}".encode(), source)
    assert reply.startswith("OK:"), reply
    return reply[3:]


def store(**kw) -> MailStore:
    return MailStore(scrypt_n=CHEAP_N, **kw)


BOTH = pytest.mark.parametrize("kind", [MailServer, SimpleMailServer], ids=["fast", "simple"])


# -- B1: connections ------------------------------------------------------------------


class Served:
    """``python -m mailkit serve`` in a subprocess, on a free port."""

    def __init__(self, tmp: Path, *extra: str):
        users = tmp / "users.txt"
        users.write_text("".join(f"{n}:{p}\n" for n, p in USERS.items()))
        users.chmod(0o600)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailkit", "serve", "--port", "0", "--db", str(tmp / "class.db"),
             "--users-file", str(users), "--quiet", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.proc.stdout.readline()
        assert "listening on" in line, (line, self.proc.stderr.read())
        host, port = line.strip().rpartition(" ")[2].rsplit(":", 1)
        self.address = (host, int(port))

    def mb(self, key: str) -> float:
        """VmHWM (peak) or VmRSS (now) of the server process, in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {key} in /proc/{self.proc.pid}/status")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.communicate(timeout=20)


@pytest.fixture
def served(tmp_path):
    started = []

    def start(*extra):
        started.append(Served(tmp_path, *extra))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.mark.slow
def test_600_held_connections_from_one_address_do_not_stop_another(served):
    """One student holds 600 connections (re-opening each one the server
    closes); another student, from another address, is served every time
    (how fast is measured by benchmarks/class_server.py, not asserted here).
    The first gets at most 32 at once."""
    server = served()
    sid = login(server.address)
    stop = threading.Event()
    stats = {"opened": 0, "refused": 0, "most_held": 0}

    def attacker():
        socks: list[socket.socket] = []
        end = time.monotonic() + 30                      # bounded, whatever happens
        while not stop.is_set() and time.monotonic() < end:
            while len(socks) < 600:
                try:
                    socks.append(connect(server.address, ATTACKER, 2))
                    stats["opened"] += 1
                except OSError:
                    break
            readable, _, _ = select.select(socks, [], [], 0.05)
            for s in readable:                           # refused or closed: open another
                try:
                    if s.recv(200).startswith(b"ERROR: too many connections from your address"):
                        stats["refused"] += 1
                except OSError:
                    pass
                s.close()
                socks.remove(s)
            if not readable:                             # settled: what the server holds open
                stats["most_held"] = max(stats["most_held"], len(socks) - len(
                    select.select(socks, [], [], 0.2)[0]))
        for s in socks:
            s.close()

    thread = threading.Thread(target=attacker)
    thread.start()
    try:
        time.sleep(1.0)                                  # the flood is on
        replies = []
        for _ in range(20):
            replies.append(request(server.address, make_frame(sid, "count"), timeout=5))
            time.sleep(0.05)
        replies.append(request(server.address, b"bob:builder"))   # a login too
    finally:
        stop.set()
        thread.join(60)
    assert all(r.startswith("OK") for r in replies), replies[:3]
    assert stats["refused"] > 100, stats
    assert stats["most_held"] <= 32, stats


def test_when_slots_run_low_the_longest_idle_connections_make_room():
    """Silent connections from 8 addresses (32 each, 256 in all) against a
    server with 64 slots: the longest idle are closed, without a reply, so
    that the honest student is served; none was refused as 'busy'."""
    limits = ClassLimits(per_address=32, max_connections=64, reserve=8, idle_after=0.2)
    with MailServer(USERS, store=store(), limits=limits, idle_timeout=30) as server:
        sid = login(server.address)
        silent = []
        for k in range(8):
            for _ in range(32):
                silent.append(connect(server.address, f"127.0.0.{10 + k}"))
            time.sleep(0.25)                             # each wave idles past idle_after
        assert request(server.address, make_frame(sid, "count")).startswith("OK")
        closed = busy = 0
        for s in silent:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                data = s.recv(100)
                closed += data == b""
                busy += data.startswith(b"ERROR: server busy")
            s.close()
        assert closed >= 256 - 64, (closed, busy)
        assert busy == 0
        # the oldest went first: every connection of the first wave is closed
        assert server.stats()["connections"] <= 64


# -- B2: wrong passwords -----------------------------------------------------------------


@BOTH
def test_wrong_passwords_from_one_address_never_keep_alice_out_from_another(kind):
    """15 wrong passwords every 65 s from the attacker, for 10 rounds (of a
    fake clock): alice logs in from her own address every time."""
    clock = FakeClock(1_000.0)
    with kind(store=store(), limits=ClassLimits(clock=clock)) as server:
        for name, pw in USERS.items():
            server.store.add_user(name, pw)
        refused = alice_ok = 0
        for _ in range(10):
            for i in range(15):
                reply = request(server.address, f"alice:guess{i}".encode(), ATTACKER)
                refused += reply.startswith("KO: too many wrong passwords for alice from your address")
                clock.now += 65 / 15
            alice_ok += request(server.address, b"alice:wonderland", HONEST).startswith("OK:")
        assert alice_ok == 10
        assert refused > 100                            # the attacker was slowed down
        # and the attacker's own right password waits too: the delay is per address
        assert request(server.address, b"alice:wonderland", ATTACKER).startswith("KO: too many")


def test_guesses_spread_over_many_addresses_are_bounded_per_user():
    """40 addresses guess alice's password, 5 times each: only the first
    NEW_ADDRESS_BURST checks from addresses that never logged in as alice
    are made (issue 21: was 40 + 20); alice, from the address she logged in
    from before, is checked at once; a new address waits its turn."""
    clock = FakeClock(1_000.0)
    with MailServer(USERS, store=store(), limits=ClassLimits(clock=clock)) as server:
        login(server.address, "alice", HONEST)              # alice's own address, known from now on
        checked, refused = 0, 0
        for round_ in range(5):
            for a in range(40):
                reply = request(server.address, b"alice:guess", f"127.0.1.{a + 1}")
                checked += reply == REPLIES.LOGIN_FAILED
                refused += reply.startswith("KO: too many password guesses for alice lately")
            clock.now += 1
        assert checked <= LoginThrottle.NEW_ADDRESS_BURST + 1, checked      # 5 s of refill: one more
        assert refused > 150
        assert request(server.address, b"alice:wonderland", HONEST).startswith("OK:")
        assert request(server.address, b"alice:wonderland", "127.0.2.9").startswith(
            "KO: too many password guesses for alice lately")            # a new address waits
        clock.now += LoginThrottle.NEW_ADDRESS_EVERY_S
        assert request(server.address, b"alice:wonderland", "127.0.2.9").startswith("OK:")
        # ... and that address is hers from now on: the right password gave its token back
        assert request(server.address, b"alice:wonderland", "127.0.2.9").startswith("OK:")


# -- B3: session ids ----------------------------------------------------------------------


@BOTH
def test_no_session_id_in_the_log(kind, caplog):
    caplog.set_level(logging.INFO, logger="mailkit")
    with kind(USERS, store=store()) as server:
        sid = login(server.address)
        for frame in (make_frame(sid, "count"), make_frame(sid, "email", "bob", "s", "b"),
                      make_frame(sid, "dump"), make_frame(sid, "logoff"), make_frame(sid, "count")):
            request(server.address, frame)
        deadline = time.monotonic() + 5
        while sum("->" in r.getMessage() for r in caplog.records) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert sum("->" in r.getMessage() for r in caplog.records) >= 6, text
    assert sid not in text
    assert re.search(r"login 'alice' -> OK:s:[0-9a-f]{6}", text), text
    assert not re.search(r"(?<!\d)\d{10}(?!\d)", text), text


@BOTH
def test_bad_session_ids_are_limited_per_address(kind):
    """The attacker's guesses: a burst of 40 are checked, then 20 a second;
    the honest student, with a live session, is served all along."""
    clock = FakeClock(1_000.0)
    with kind(USERS, store=store(), limits=ClassLimits(clock=clock)) as server:
        sid = login(server.address)
        replies = [request(server.address, make_frame(f"{i:010d}", "dump"), ATTACKER) for i in range(100)]
        checked = sum(r.startswith("ERROR: unknown session id") for r in replies)
        limited = sum(r.startswith("ERROR: too many bad session ids from your address") for r in replies)
        assert (checked, limited) == (40, 60)
        assert request(server.address, make_frame(sid, "count")).startswith("OK")   # honest: served
        for second in range(5):                          # sustained: 20 a second
            clock.now += 1
            replies = [request(server.address, make_frame(f"{second:02d}{i:08d}", "count"), ATTACKER)
                       for i in range(30)]
            assert sum(r.startswith("ERROR: unknown session id") for r in replies) == 20
        assert request(server.address, make_frame(sid, "count")).startswith("OK")


# -- B4: over-long user names ---------------------------------------------------------------


@BOTH
def test_a_1mb_user_name_is_refused_before_the_throttle_or_the_log(kind, caplog):
    caplog.set_level(logging.INFO, logger="mailkit")
    with kind(USERS, store=store()) as server:
        for i in range(20):
            name = (f"u{i}" + "x" * 1_000_000).encode()
            reply = request(server.address, name + b":pw", ATTACKER, timeout=30)
            assert reply == REPLIES.NAME_TOO_LONG == "KO: user name too long (at most 32 characters)"
        assert request(server.address, b"x" * 33 + b":pw", ATTACKER) == REPLIES.NAME_TOO_LONG
        assert request(server.address, b"a" * 32 + b":pw", ATTACKER) == REPLIES.LOGIN_FAILED
        assert server.responder.throttle.tracked() == 2   # only the 32-character name (pair and user)
        login(server.address)
        deadline = time.monotonic() + 5
        # The fast server logs refusals once per address per minute (issue 21):
        # the first line, then a count when it stops.
        want = 2 if kind is MailServer else 23
        while sum("->" in r.getMessage() for r in caplog.records) < want and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records]
    assert max(map(len, lines)) < 300                   # no name in the log
    if kind is MailServer:
        assert sum("user name over 32 characters" in line for line in lines) == 1
        assert f"{ATTACKER}: 21 more refused requests in the 60 s after the one logged" in lines
    else:
        assert sum("user name over 32 characters" in line for line in lines) == 21


@pytest.mark.slow
def test_300_long_user_names_do_not_grow_the_server(served):
    """Issue 12 measured +373 MB: 300 logins with 1 MB user names."""
    server = served()
    login(server.address)
    before = server.mb("VmRSS")
    for i in range(300):
        assert request(server.address, (f"u{i}" + "x" * 1_000_000).encode() + b":pw", ATTACKER,
                       timeout=30) == REPLIES.NAME_TOO_LONG
    assert server.mb("VmRSS") - before < 30


# -- B5: quotas and bounded listings ---------------------------------------------------------


@BOTH
def test_a_full_mailbox_says_so_and_stores_nothing_more(kind):
    with kind(USERS, store=store(quota_messages=3)) as server:
        sid = login(server.address, "bob")
        replies = [request(server.address, make_frame(sid, "email", "alice", f"s{i}", "hello"))
                   for i in range(5)]
        assert replies[:3] == [REPLIES.EMAIL_SENT] * 3
        for reply in replies[3:]:   # no figure of alice's mailbox reaches bob
            assert reply == "ERROR: mailbox full: alice cannot receive mail until they delete some"
        assert server.store.count("alice") == 3


def test_a_listing_stops_at_its_bound_and_says_how_many_more():
    with MailServer(USERS, store=store()) as server:
        for i in range(5):
            server.store.deliver("bob", "alice", f"big {i}", "x" * 900_000)
        sid = login(server.address)
        reply = request(server.address, make_frame(sid, "dump"))
        assert reply.startswith("OK: 2 messages (the oldest 2 of 5: delete some to see the others)")
        assert len(reply) < 2 * 1024 * 1024 + 1_000
        assert request(server.address, make_frame(sid, "getmsg", "bob")).startswith(
            "OK: 2 messages from bob (the oldest 2 of 5")
        request(server.address, make_frame(sid, "delmsg", "bob", "big 0"))
        assert request(server.address, make_frame(sid, "dump")).startswith("OK: 2 messages (the oldest 2 of 4")


@pytest.mark.slow
def test_reading_a_full_mailbox_four_times_at_once_keeps_the_server_small(served):
    """Issue 12 measured a 2.4 GB peak: 200 mails of 1 MB to oneself, then 4
    dumps at once.  Now the quota stops the mail at 10 MB, and each dump
    holds at most 2 MB of it."""
    server = served()
    sid = login(server.address)
    body = "m" * 1_000_000
    replies = [request(server.address, make_frame(sid, "email", "alice", f"big {i}", body), timeout=30)
               for i in range(15)]
    assert replies.count(REPLIES.EMAIL_SENT) == 10
    assert all(r.startswith("ERROR: mailbox full") for r in replies[10:])
    with ThreadPoolExecutor(4) as pool:
        dumps = list(pool.map(lambda _: request(server.address, make_frame(sid, "dump"), timeout=60),
                              range(4)))
    assert all(d.startswith("OK: 2 messages (the oldest 2 of 10") for d in dumps)
    assert server.mb("VmHWM") < 300


# -- B6: a login storm ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_login_storm_at_the_real_hash_cost_leaves_no_lasting_memory(served):
    """200 students log in at once (from 200 addresses), at the real scrypt
    cost: the server peaks under 200 MB and keeps nothing after (issue 12:
    2,000 logins kept 441 MB)."""
    server = served()
    login(server.address)
    before = server.mb("VmRSS")
    start = threading.Barrier(50)

    def one(i: int) -> bool:
        if i < 50:
            start.wait(30)
        return request(server.address, b"alice:wonderland", f"127.0.2.{i + 1}", timeout=120).startswith("OK:")

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(200)))
    assert all(results)
    assert server.mb("VmHWM") < 200
    end = time.monotonic() + 10                         # workers linger 1 s, then end
    while server.mb("VmRSS") - before > 20 and time.monotonic() < end:
        time.sleep(0.2)
    assert server.mb("VmRSS") - before <= 20


# -- B7: a full disk ----------------------------------------------------------------------------


@BOTH
def test_a_full_disk_is_said_so_and_nothing_acknowledged_is_lost(kind, tmp_path):
    """SQLite's max_page_count makes the database "full" exactly as a full
    disk does (SQLITE_FULL), portably and without root."""
    db = tmp_path / "small.db"
    with kind(USERS, store=MailStore(db, scrypt_n=CHEAP_N, max_db_bytes=150_000)) as server:
        sid = login(server.address)
        acked, full = [], []
        for i in range(60):
            reply = request(server.address, make_frame(sid, "email", "bob", f"s{i}", "x" * 5_000))
            (acked if reply == REPLIES.EMAIL_SENT else full).append((f"s{i}", reply))
        assert 5 < len(acked) < 60
        assert all(r == "ERROR: storage full: the server's disk is full, nothing was stored "
                        "(tell whoever runs the server)" for _, r in full), full[:2]
        assert request(server.address, make_frame(sid, "count")).startswith("OK")   # still serving
    with MailStore(db) as s:
        assert [m.subject for m in s.messages("bob")] == [subject for subject, _ in acked]
