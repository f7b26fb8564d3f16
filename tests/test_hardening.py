"""Hardening: a class of 300 hammers one server and tries to break it.

The functional tests (test_server, test_crash, test_interop) show that each
feature works; these push the same features hard, on 127.0.0.1 only, with
every loop bounded in count and time and every check a functional outcome
(was it served, is it stored), never a speed figure, except where the issue
asks for one ("a normal client is served within a second").

* slow and idle clients: 100 connections that send nothing or a byte a second
* crash safety: SIGKILL during a stream of 1,000 sends
* abuse: password guessing, guessed and expired session ids, another user's
  mail, oversized frames, where the server listens
* interop under noise: 2017-style clients through a NoisyLink at 5%

The fuzzing of bad inputs lives in test_fuzz.py.
"""

from __future__ import annotations

import collections
import json
import os
import random
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import CHEAP_SCRYPT_N, raw_request, wait_for
from legacy2017 import Client2017
from mailkit import REPLIES, MailClient, MailServer, NoisyLink, ServerError
from mailkit.course import FakeClock
from mailkit.protocol import MAX_REQUEST_BYTES, make_frame
from mailkit.limits import MAX_TRACKED, ClassLimits, LoginThrottle
from mailkit.store import MailStore, SessionExpired

ROOT = Path(__file__).resolve().parent.parent
USERS = {"alice": "wonderland", "bob": "builder", "carol": "lamb"}

pytestmark = pytest.mark.timeout(120)


# -- slow and idle clients ------------------------------------------------------


@pytest.mark.slow
def test_100_silent_and_trickling_clients_do_not_stop_a_normal_client():
    """50 connections send nothing and 50 send one byte a second: a normal
    client is served all along, long before any of them is closed (a server
    that waited on them would answer only after the idle timeout), and they
    hold no threads; the silent ones are closed after the idle timeout, the
    trickling ones once they fall below the minimum byte rate (issue 21; at
    the request deadline before).  The bounds separate "at once"
    from "after the idle timeout" by seconds, not a speed figure."""
    idle, deadline = 6.0, 8.0
    # 100 from one address: more than a class server lets one address open
    # (32: see test_class_server.py), so this one allows 128.
    with MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N, idle_timeout=idle,
                    limits=ClassLimits(per_address=128)) as server:
        server.REQUEST_DEADLINE_S = deadline
        address = server.address
        client = MailClient(*address, timeout=10)
        client.login("alice", USERS["alice"])

        opened = time.monotonic()
        silent = [socket.create_connection(address, timeout=10) for _ in range(50)]
        trickling = [socket.create_connection(address, timeout=10) for _ in range(50)]
        # A frame that never completes: a session id, then text, no checksum.
        drip = b"0123456789:email:bob:slow:" + b"x" * 100
        stop = threading.Event()

        def trickle():
            for i in range(int(deadline) + 3):               # bounded: a byte a second
                for sock in trickling:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if not readable:                           # not answered yet: one more byte
                        try:
                            sock.send(drip[i:i + 1])
                        except OSError:
                            pass
                if stop.wait(1.0):
                    return

        dripper = threading.Thread(target=trickle)
        dripper.start()
        try:
            # A normal client, again and again while the 100 are connected.
            took = []
            for i in range(4):
                t0 = time.monotonic()
                assert client.send("bob", f"while 100 wait {i}", "hello") == REPLIES.EMAIL_SENT
                assert client.count() >= 0
                took.append(time.monotonic() - t0)
                time.sleep(0.4)
            assert max(took) < idle / 2, f"a normal client waited {max(took):.2f} s"
            # A waiting connection costs the event loop a selector entry, not a
            # thread: the loop plus a few workers, however many wait.
            assert server.threads <= 8, f"{server.threads} threads for 100 waiting connections"
            fresh = MailClient(*address, timeout=10)           # a login too
            t0 = time.monotonic()
            fresh.login("bob", USERS["bob"])
            assert time.monotonic() - t0 < idle / 2

            # The silent ones are closed, with no reply, after the idle timeout.
            for sock in silent:
                assert sock.recv(1024) == b""
            silent_closed = time.monotonic() - opened
            assert idle * 0.9 <= silent_closed < idle + 5
            # The trickling ones get a reason once the whole request is too slow.
            for sock in trickling:
                assert sock.recv(1024).decode() == REPLIES.TOO_SLOW
        finally:
            stop.set()
            dripper.join()
            for sock in silent + trickling:
                sock.close()
        assert wait_for(lambda: server.threads == 1, 10), f"{server.threads} threads left"
        assert client.send("bob", "after", "all closed") == REPLIES.EMAIL_SENT


EMFILE_SCRIPT = r"""
import errno, json, logging, os, resource, socket, sys, time
from mailkit import MailServer

class Count(logging.Handler):
    n = 0
    def emit(self, record):
        if "cannot accept" in record.getMessage():
            Count.n += 1

logging.getLogger("mailkit.server").addHandler(Count())
resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
with MailServer({"alice": "wonderland"}) as server:
    clients = [socket.socket() for _ in range(3)]
    filler = []
    try:
        while True:
            filler.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE
    for c in clients:                        # the kernel completes these; accept() cannot
        c.connect(server.address)
        c.sendall(b"alice:wonderland")
        c.shutdown(socket.SHUT_WR)
    time.sleep(1.0)                          # a second with no file descriptor to spare
    warnings, alive = Count.n, server.running
    for fd in filler[:20]:
        os.close(fd)
    replies = []
    for c in clients:
        c.settimeout(5)
        replies.append(c.recv(1024).decode())
    print(json.dumps({"warnings": warnings, "alive": alive, "replies": replies}))
"""


def test_out_of_file_descriptors_pauses_accepting_then_serves_the_waiting_clients():
    """accept() failing with EMFILE leaves the listening socket readable: a
    loop that simply tried again would spin and log as fast as it could. It
    pauses instead, and serves the clients once descriptors are free."""
    out = subprocess.run([sys.executable, "-c", EMFILE_SCRIPT], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["alive"]
    assert 1 <= result["warnings"] <= 30, f"{result['warnings']} warnings in a second"
    assert all(r.startswith("OK:") for r in result["replies"]), result["replies"]


START_SCRIPT = r"""
import errno, json, os, resource, socket, threading
from mailkit import MailServer

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
server = MailServer({"alice": "x"}, scrypt_n=16)
results = []
for spare in (0, 1, 2, 3):                 # socket, selector, wake-up pair: fail at each step
    filler = []
    try:
        while True:
            filler.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    for fd in filler[:spare]:
        os.close(fd)
    try:
        server.start()
        results.append("started")
    except OSError as exc:
        results.append(errno.errorcode.get(exc.errno, str(exc.errno)))
    results.append([server.running, threading.active_count()])
    for fd in filler[spare:]:
        os.close(fd)
    server.stop()
with server:                               # descriptors free again: it starts and serves
    with socket.create_connection(server.address) as c:
        c.sendall(b"alice:x")
        c.shutdown(socket.SHUT_WR)
        results.append(c.recv(1024).decode()[:3])
print(json.dumps(results))
"""


def test_start_raises_when_it_cannot_start_and_leaves_nothing_running():
    """Out of file descriptors at each step of start(): it raises EMFILE
    (it does not return a server whose loop thread died), ``running`` is
    False, no thread is left; with descriptors free again it serves."""
    out = subprocess.run([sys.executable, "-c", START_SCRIPT], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout)
    attempts, states, served = results[0:8:2], results[1:8:2], results[8]
    assert attempts[:3] == ["EMFILE"] * 3, attempts
    assert all(state == [False, 1] for state in states[:3]), states
    assert served == "OK:"


def test_if_the_event_loop_dies_running_turns_false_and_stop_raises_it(caplog):
    """aiosmtpd's Controller contract: a loop thread that dies is logged,
    ``running`` says so, and the owner gets the error from stop()."""
    class Fatal(BaseException):
        """Not an Exception: the loop's per-connection guard lets it through."""

    class Doomed(MailServer):
        def dispatch(self, conn, peer, received):
            raise Fatal("the event loop died here")

    server = Doomed(USERS, scrypt_n=CHEAP_SCRYPT_N).start()
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"alice:wonderland")
        sock.shutdown(socket.SHUT_WR)
        assert wait_for(lambda: not server.running, 5)
        assert "the event loop died" in caplog.text
        with pytest.raises(Fatal, match="the event loop died here"):
            server.stop()
        assert sock.recv(1024) == b""          # its connection was closed, not left hanging
    server.stop()                              # raised once; the second stop() is quiet
    server.close()


# -- crash safety ---------------------------------------------------------------


class Served:
    """``python -m mailkit serve`` in its own process, on a free port."""

    def __init__(self, db: Path):
        # 500 mails from alice to carol: past the per-recipient limit (100 at
        # once), which this test is not about, so it is raised.
        args = [sys.executable, "-m", "mailkit", "serve", "--port", "0", "--db", str(db), "--quiet",
                "--pair-mails-at-once", "1000"]
        for name, password in USERS.items():
            args += ["--user", f"{name}:{password}"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self.proc.stdout.readline()
        assert "listening on" in line, (line, self.proc.stderr.read())
        host, port = line.strip().rpartition(" ")[2].rsplit(":", 1)
        self.address = (host, int(port))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [150, 600])
def test_sigkill_during_1000_sends_loses_no_acknowledged_mail(tmp_path, kill_after):
    """Eight clients stream 1,000 mails (so deliveries share commits); the
    server is SIGKILLed after *kill_after* of them were acknowledged.  After
    a restart, every mail that got ``OK: Email Sent`` is there, once."""
    db = tmp_path / "mail.db"
    served = Served(db)
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    senders, per_sender = 8, 125                       # 1,000 sends planned

    clients = []
    for k in range(senders):                            # every login first, then the stream
        clients.append(MailClient(*served.address, timeout=10, retries=0))
        clients[-1].login(["alice", "bob"][k % 2], USERS[["alice", "bob"][k % 2]])

    def stream(k: int) -> None:
        client = clients[k]
        for i in range(per_sender):
            subject = f"s{k}-{i}"
            try:
                reply = client.send("carol", subject, f"mail {i} of sender {k}")
            except (OSError, ServerError):
                return                                  # the server is gone: the stream ends
            assert reply == REPLIES.EMAIL_SENT
            with lock:
                acked.append(subject)
                if len(acked) >= kill_after:
                    enough.set()

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(senders)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(60), f"only {len(acked)} mails acknowledged"
        served.kill()                                   # SIGKILL, in the middle of the stream
    finally:
        served.kill()
        for t in threads:
            t.join(30)
    with lock:
        acknowledged = list(acked)
    assert kill_after <= len(acknowledged) < senders * per_sender

    restarted = Served(db)                              # the server starts again on the same file
    try:
        carol = MailClient(*restarted.address, timeout=10)
        carol.login("carol", USERS["carol"])
        stored = collections.Counter(m.subject for m in carol.dump())
    finally:
        restarted.kill()
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged mails lost, e.g. {sorted(missing)[:5]}"
    assert max(stored.values()) == 1, "a mail was stored twice"


# -- abuse ------------------------------------------------------------------------


def test_password_guessing_is_slowed_down_as_documented():
    """The policy (mailkit.limits.LoginThrottle): 3 wrong passwords for one
    user from one address are free, then that address waits 1, 2, 4 ... s
    (at most 60) for that user, the right password too, with a reply that
    says so; other users are not affected, nor is the user at another
    address (test_class_server.py, over two addresses)."""
    assert (LoginThrottle.FREE, LoginThrottle.BASE_DELAY_S, LoginThrottle.MAX_DELAY_S) == (3, 1.0, 60.0)
    clock = FakeClock()
    store = MailStore(scrypt_n=CHEAP_SCRYPT_N)
    with MailServer(USERS, store=store, limits=ClassLimits(clock=clock)) as server:
        replies = [raw_request(server.address, f"alice:guess{i}".encode()).decode() for i in range(20)]
        assert replies[:4] == [REPLIES.LOGIN_FAILED] * 4
        assert all(r == "KO: too many wrong passwords for alice from your address; try again in 1 s"
                   for r in replies[4:])                             # refused unchecked: no more delay
        right = raw_request(server.address, b"alice:wonderland").decode()
        assert right.startswith("KO: too many wrong passwords")       # from this address: waits
        assert raw_request(server.address, b"bob:builder").startswith(b"OK:")  # others are not
        clock.now += 1
        assert raw_request(server.address, b"alice:guess").decode() == REPLIES.LOGIN_FAILED
        assert raw_request(server.address, b"alice:wonderland").decode().endswith("try again in 2 s")
        clock.now += 2
        assert raw_request(server.address, b"alice:wonderland").startswith(b"OK:")
        assert raw_request(server.address, b"alice:guess").decode() == REPLIES.LOGIN_FAILED  # forgiven


def test_the_throttle_forgets_what_no_longer_matters():
    """A script trying made-up names does not grow the server's memory."""
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for i in range(50_000):
        throttle.failed(f"made-up-{i}", f"10.0.{i % 250}.1")
        clock.now += 0.02                                  # 50 guesses a second for 1,000 s
    assert throttle.tracked() <= 2 * (MAX_TRACKED + MAX_TRACKED // 2)   # two tables, pruned at 1.5x
    for _ in range(LoginThrottle.FREE + 1):                # and it still slows guessing down
        throttle.failed("alice", "10.0.0.66")
    assert throttle.wait_time("alice", "10.0.0.66") == LoginThrottle.BASE_DELAY_S


def test_session_ids_are_unguessable():
    """Ids come from ``secrets``: all different, every digit equally likely in
    every position, not reproducible by seeding ``random``; and 20,000 guesses
    against 100 live sessions find none."""
    with MailStore(scrypt_n=CHEAP_SCRYPT_N) as store:
        store.add_user("alice", "pw")
        random.seed(7)
        ids = [store.create_session("alice") for _ in range(3_000)]
        random.seed(7)
        again = [store.create_session("alice") for _ in range(3_000)]
    assert len(set(ids + again)) == 6_000
    assert all(len(i) == 10 and i.isdigit() for i in ids)
    for position in range(10):                          # chi-squared, 9 degrees of freedom
        counts = collections.Counter(i[position] for i in ids)
        chi2 = sum((counts[d] - 300) ** 2 / 300 for d in "0123456789")
        assert chi2 < 40, f"digit {position} is not uniform: {counts}"  # p < 1e-5 by chance
    ints = sorted(map(int, ids))
    assert len({b - a for a, b in zip(ints, ints[1:])}) > 2_900        # no arithmetic pattern

    server = MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N)                          # respond() needs no socket
    live = {server.store.create_session("bob") for _ in range(100)}
    rng = random.Random(1)
    hits = 0
    for _ in range(20_000):
        guess = f"{rng.randrange(10**10):010d}"
        if guess in live:
            continue
        _, reply = server.respond(make_frame(guess, "dump"))
        hits += not reply.startswith("ERROR: unknown session id")
    server.close()
    assert hits == 0


def test_sessions_expire_when_idle_and_live_while_used(tmp_path):
    clock = FakeClock()
    with MailStore(tmp_path / "mail.db", session_ttl=60, clock=clock, scrypt_n=CHEAP_SCRYPT_N) as store:
        store.add_user("alice", "pw")
        sid = store.create_session("alice")
        for _ in range(20):                              # used every 50 s: lives 1,000 s
            clock.now += 50
            assert store.session_user(sid) == "alice"
        clock.now += 61
        with pytest.raises(SessionExpired):
            store.session_user(sid)
        stale = [store.create_session("alice") for _ in range(50)]
        clock.now += 61
        fresh = store.create_session("alice")            # a login clears out expired sessions
        with sqlite3.connect(tmp_path / "mail.db") as db:     # the file, as another process sees it
            assert db.execute("SELECT id FROM sessions").fetchall() == [(fresh,)]
        assert stale


def test_a_session_cannot_touch_another_users_mail():
    with MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N) as server:
        alice, bob, carol = (MailClient(*server.address) for _ in range(3))
        alice.login("alice", USERS["alice"])
        bob.login("bob", USERS["bob"])
        carol.login("carol", USERS["carol"])
        for i in range(3):
            bob.send("alice", f"for alice {i}", "private")
        carol.send("bob", "for bob", "hi bob")

        # carol, with every command, sees and changes only her own mailbox
        assert carol.count() == 0
        assert carol.dump() == []
        assert carol.messages_from("bob") == []
        with pytest.raises(ServerError, match="no message from 'bob'"):
            carol.delete("bob", "for alice 0")
        # a sender cannot be forged: the session decides who sent it
        carol.send("alice", "from whom?", "x")
        [forged] = alice.messages_from("carol")
        assert forged.sender == "carol"
        assert alice.count() == 4
        assert bob.count() == 1
        # a session id that ended is refused, even for a command that reads nothing
        old = alice.session_id
        alice.logoff()
        reply = raw_request(server.address, make_frame(old, "count")).decode()
        assert reply == f"ERROR: unknown session id {old} (log in again)"
        assert [m.subject for m in server.store.messages("alice")] == [
            "for alice 0", "for alice 1", "for alice 2", "from whom?"]


@pytest.mark.parametrize("half_close", [True, False], ids=["half-closed", "2017-style"])
@pytest.mark.parametrize("size", [MAX_REQUEST_BYTES + 1, 2 * MAX_REQUEST_BYTES, 8 * MAX_REQUEST_BYTES])
def test_frames_over_the_limit_get_a_clear_error(size, half_close):
    with MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N, idle_timeout=0.3) as server:
        alice = MailClient(*server.address, timeout=15)
        sid = alice.login("alice", USERS["alice"])
        head = f"{sid}:email:bob:big:".encode()
        data = head + b"y" * (size - len(head))
        reply = raw_request(server.address, data, half_close=half_close, timeout=15).decode()
        assert reply == f"ERROR: request is over the limit of {MAX_REQUEST_BYTES} bytes"
        # just under the limit is delivered, and the server serves on
        body = "z" * (MAX_REQUEST_BYTES - 200)
        assert alice.send("bob", "just under", body) == REPLIES.EMAIL_SENT
        with pytest.raises(ServerError, match=f"over the limit of {MAX_REQUEST_BYTES} bytes"):
            alice.send("bob", "just over", body + "z" * 300)


def test_the_client_reports_an_oversized_mail_clearly():
    with MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N) as server:
        alice = MailClient(*server.address, timeout=15)
        alice.login("alice", USERS["alice"])
        with pytest.raises(ServerError, match="over the limit"):
            alice.send("bob", "huge", "x" * (3 * MAX_REQUEST_BYTES))
        assert alice.count() == 0


def test_the_server_binds_loopback_unless_told_otherwise():
    with MailServer() as server:
        assert server.address[0] == "127.0.0.1"
        with NoisyLink(server.address) as link:
            assert link.address[0] == "127.0.0.1"
    with MailServer(host="127.0.0.2") as told:          # told otherwise (still loopback)
        assert told.address[0] == "127.0.0.2"
    cli = subprocess.run([sys.executable, "-m", "mailkit", "serve", "--help"], capture_output=True,
                         text=True, cwd=ROOT, timeout=30)
    assert "default 127.0.0.1" in cli.stdout


# -- interop under noise ---------------------------------------------------------


@pytest.mark.slow
def test_2017_clients_through_5_percent_noise_deliver_every_mail_once():
    """Four 2017 clients (one send, no half-close, ONE resend after KO on the
    same socket), each through its own NoisyLink that corrupts 5% of the
    command frames (a resend too: it is a frame of its own): every one of
    200 mails whose frame or same-socket resend got through arrives exactly
    once; the others (frame AND resend damaged: the 2017 client gives up
    after one resend) are exactly those the client saw fail, and none
    arrives."""
    per_client, seeds = 50, (11, 12, 13, 14)
    # 200 mails from bob to alice: past the per-recipient limit (100 at once),
    # which this test is not about.
    with MailServer(USERS, scrypt_n=CHEAP_SCRYPT_N, idle_timeout=0.3,
                    limits=ClassLimits(pair_mail_burst=1000)) as server:
        links = [NoisyLink(server.address, rate=0.05, seed=s, idle_timeout=0.3).start() for s in seeds]
        try:
            failures = []

            def run(k: int, link: NoisyLink) -> None:
                client = Client2017(*link.address, timeout=10)
                assert client.login("bob", USERS["bob"]).startswith("OK:")
                for i in range(per_client):
                    reply = client.command("email", "alice", f"noisy {k}-{i}", f"body {i} from a 2017 client")
                    if reply != REPLIES.EMAIL_SENT:
                        failures.append((k, i, reply))

            threads = [threading.Thread(target=run, args=(k, link)) for k, link in enumerate(links)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            corrupted = sum(bool(e.request_flips) for link in links for e in link.events)
            # a resend is the event right after a KO, carrying the same frame
            both_damaged = sum(
                1 for link in links for first, again in zip(link.events, link.events[1:])
                if first.reply == b"KO" and again.request == first.request and again.request_flips)
        finally:
            for link in links:
                link.stop()
        assert all(reply == "KO" for *_, reply in failures), failures[:5]
        assert len(failures) == both_damaged
        subjects = collections.Counter(m.subject for m in server.store.messages("alice"))
        expected = {f"noisy {k}-{i}" for k in range(len(seeds)) for i in range(per_client)}
        assert set(subjects) == expected - {f"noisy {k}-{i}" for k, i, _ in failures}
        assert max(subjects.values()) == 1
        assert corrupted >= 4, "the link should have corrupted some frames"
