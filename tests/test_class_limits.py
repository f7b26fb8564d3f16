"""Issue 21: no student can hurt a classmate on a class server.

Each limit's BEHAVIOUR, over real sockets on loopback (127.0.0.x are all
loopback on Linux: each stands for one machine; 127.0.1.x is a second /24),
with time moved by a fake clock where a policy needs time to pass.  Nothing
here asserts a duration: the benchmark (benchmarks/class_server.py) measures.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailkit import REPLIES, MailServer
from mailkit.client import request_once
from mailkit.course import FakeClock
from mailkit.limits import ClassLimits, FairSlots, LogCap, RefusalLog, ReplyBudget, SenderLimits, prefix
from mailkit.protocol import format_messages, make_frame
from mailkit.store import MailStore, StorageCapReached, message_size
from tests.legacy2017 import Client2017

ROOT = Path(__file__).resolve().parent.parent
USERS = {"alice": "wonderland", "bob": "builder", "eve": "apple"}
HONEST, ATTACKER = "127.0.0.2", "127.0.0.3"
CHEAP_N = 16

pytestmark = pytest.mark.timeout(180)


def request(address, data: bytes, source: str = HONEST, timeout: float = 20.0) -> str:
    return request_once(address, data, timeout=timeout, source_address=(source, 0)).decode("utf-8", "replace")


def login(address, user: str = "alice", source: str = HONEST) -> str:
    reply = request(address, f"{user}:{USERS[user]}".encode(), source)
    assert reply.startswith("OK:"), reply
    return reply[3:]


def server(clock=None, idle_timeout=None, **limits) -> MailServer:
    kw = {"clock": clock} if clock is not None else {}
    return MailServer(USERS, store=MailStore(scrypt_n=CHEAP_N), limits=ClassLimits(**kw, **limits),
                      idle_timeout=idle_timeout)


def mail(address, sid, to, subject="s", body="hello", source=HONEST) -> str:
    return request(address, make_frame(sid, "email", to, subject, body), source)


# -- 1. per-sender limits ----------------------------------------------------------------------


def test_a_sender_filling_one_mailbox_is_refused_with_their_own_limit_and_others_still_reach_it():
    clock = FakeClock(1_000.0)
    with server(clock, pair_mail_burst=5, pair_mail_every_s=60) as s:
        eve, bob = login(s.address, "eve", ATTACKER), login(s.address, "bob")
        replies = [mail(s.address, eve, "alice", f"spam {i}", "x", ATTACKER) for i in range(8)]
        assert replies[:5] == [REPLIES.EMAIL_SENT] * 5
        refusal = replies[5]
        assert refusal.startswith("ERROR: sending limit: you have sent alice 5 mails in a short time "
                                  "(your limit per recipient: 5 at once, then one every 60 s)"), refusal
        assert "message" not in refusal and "MB" not in refusal     # nothing of alice's mailbox
        assert mail(s.address, eve, "bob", "to bob", source=ATTACKER) == REPLIES.EMAIL_SENT   # another pair
        assert mail(s.address, bob, "alice", "hi") == REPLIES.EMAIL_SENT        # a classmate still reaches her
        clock.advance(60)
        assert mail(s.address, eve, "alice", "a minute later", source=ATTACKER) == REPLIES.EMAIL_SENT
        assert s.store.count("alice") == 7


def test_a_sender_has_a_mail_rate_and_a_daily_byte_budget_over_all_recipients():
    clock = FakeClock(1_000.0)
    with server(clock, sender_mail_burst=3, sender_mail_every_s=10, sender_bytes_per_day=10_000) as s:
        eve = login(s.address, "eve", ATTACKER)
        got = [mail(s.address, eve, to, source=ATTACKER) for to in ("alice", "bob", "alice", "bob")]
        assert got[:3] == [REPLIES.EMAIL_SENT] * 3
        assert got[3].startswith("ERROR: sending limit: you have sent 3 mails in a short time "
                                 "(your limit: 3 at once, then one every 10 s); try again in 10 s"), got[3]
        clock.advance(30)
        assert mail(s.address, eve, "bob", "big", "x" * 9_000, ATTACKER) == REPLIES.EMAIL_SENT
        over = mail(s.address, eve, "alice", "big", "x" * 2_000, ATTACKER)
        assert over.startswith("ERROR: sending limit: you have sent your 9.76562 KB of mail for today"), over
        bob = login(s.address, "bob")                   # the budget is eve's, not the server's
        assert mail(s.address, bob, "alice", "big", "x" * 2_000) == REPLIES.EMAIL_SENT


def test_sender_limits_count_utf8_bytes_and_a_refused_mail_costs_nothing():
    clock = FakeClock(1_000.0)
    limits = SenderLimits(mail_burst=10, mail_rate=1, bytes_per_day=100, pair_burst=10, pair_rate=1,
                          pair_bytes_per_day=30, clock=clock)
    assert limits.check("eve", "bob", 101).startswith(     # the first mail, bigger than the day's budget
        "ERROR: sending limit: this mail is bigger than your 0.0976562 KB a day")
    assert limits.check("eve", "bob", 20) is None
    assert "your limit per recipient and day" in limits.check("eve", "bob", 20)   # bob's 30 B: refused
    # ... and that refusal took nothing from eve's own 100 B: 20 + 30 + 30 + 20 fit
    assert [limits.check("eve", to, n) for to, n in (("alice", 30), ("carol", 30), ("dave", 20))] == [None] * 3
    assert limits.check("eve", "fred", 1).startswith("ERROR: sending limit: you have sent your")
    # what a mail counts: its subject and body in UTF-8 bytes (a lone surrogate as 3)
    assert message_size("é", "€") == 5 and message_size("ascii", "x" * 10) == 15
    assert message_size("a", "\udc80") == 4


def test_mail_to_oneself_counts_against_the_sender_only():
    with server(pair_mail_burst=2) as s:
        alice = login(s.address)
        assert [mail(s.address, alice, "alice", f"note {i}") for i in range(4)] == [REPLIES.EMAIL_SENT] * 4


def test_a_full_mailbox_tells_the_sender_nothing_about_its_contents():
    with MailServer(USERS, store=MailStore(scrypt_n=CHEAP_N, quota_messages=2)) as s:
        eve = login(s.address, "eve", ATTACKER)
        replies = [mail(s.address, eve, "alice", f"s{i}", source=ATTACKER) for i in range(3)]
        assert replies[2] == "ERROR: mailbox full: alice cannot receive mail until they delete some"


@pytest.mark.parametrize("sender, subject, left", [("*", "*", 0), ("eve", "*", 3), ("*", "same", 17)])
def test_delmsg_with_a_star_clears_a_mailbox_in_one_command(sender, subject, left):
    with server() as s:
        eve, bob = login(s.address, "eve", ATTACKER), login(s.address, "bob")
        for i in range(30):
            mail(s.address, eve, "alice", "same" if i % 2 else f"spam {i}", source=ATTACKER)
        mail(s.address, bob, "alice", "from bob 1")
        mail(s.address, bob, "alice", "from bob 2")
        mail(s.address, bob, "alice", "same")
        alice = login(s.address)
        reply = request(s.address, make_frame(alice, "delmsg", sender, subject))
        assert reply == f"OK: {33 - left} messages deleted", reply
        assert s.store.count("alice") == left
        again = request(s.address, make_frame(alice, "delmsg", sender, subject))
        assert again.startswith("ERROR: no message matches"), again


def test_a_2017_client_clears_its_mailbox_with_the_star():
    """The 2017 client sends what its user types: ``*`` travels as is."""
    with server() as s:
        bob = login(s.address, "bob")
        for i in range(5):
            mail(s.address, bob, "alice", f"s{i}")
        client = Client2017(*s.address, timeout=10)
        assert client.login("alice", USERS["alice"]).startswith("OK:")
        assert client.command("delmsg", "*", "*") == "OK: 5 messages deleted"
        assert client.command("count") == "OK: 0 messages"


# -- 2. the mail cap ---------------------------------------------------------------------------


def test_the_mail_cap_refuses_new_mail_clearly_while_logins_and_deletions_go_on(tmp_path):
    store = MailStore(tmp_path / "capped.db", scrypt_n=CHEAP_N, max_mail_bytes=300_000,
                      max_db_bytes=300_000 + 2**20)
    with MailServer(USERS, store=store) as s:
        bob = login(s.address, "bob")
        replies = [mail(s.address, bob, "alice", f"s{i}", "x" * 20_000) for i in range(40)]
        sent = replies.count(REPLIES.EMAIL_SENT)
        assert 3 < sent < 40
        assert all(r.startswith("ERROR: storage full: the server's mail storage is at its cap (0.3 MB)")
                   for r in replies[sent:]), replies[sent]
        for _ in range(5):                          # sessions are written past the cap
            login(s.address, "eve", ATTACKER)
        alice = login(s.address)
        assert request(s.address, make_frame(alice, "delmsg", "*", "*")) == f"OK: {sent} messages deleted"
        assert mail(s.address, bob, "alice", "room again", "x" * 20_000) == REPLIES.EMAIL_SENT
    with pytest.raises(StorageCapReached):
        with MailStore(tmp_path / "capped.db", max_mail_bytes=1) as again:
            again.deliver("bob", "alice", "one more", "x")


def test_serve_caps_the_mail_by_default_and_says_so_at_start(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "mailkit", "serve", "--port", "0", "--db",
                             str(tmp_path / "m.db"), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert "listening on" in proc.stdout.readline()
        line = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert line.startswith("mailkit: mail storage cap "), line
    cap = float(line.split("cap ")[1].split(" MB")[0])
    assert 0 < cap <= 1024


# -- 3. refusals cost less than honest work -----------------------------------------------------


def test_password_checks_are_budgeted_per_address_over_every_user_name():
    clock = FakeClock(1_000.0)
    with server(clock, hashes_burst=5, hashes_per_s=1) as s:
        replies = [request(s.address, f"nobody{i}:x".encode(), ATTACKER) for i in range(8)]
        assert replies[:5] == [REPLIES.LOGIN_FAILED] * 5          # unknown names: checked (hashed) ...
        assert replies[5] == REPLIES.TOO_MANY_LOGINS.format(1)    # ... and counted against the address
        assert request(s.address, b"alice:wonderland", ATTACKER).startswith("KO: too many logins")
        login(s.address)                                           # another address is not affected
        clock.advance(1)
        assert request(s.address, b"alice:wonderland", ATTACKER).startswith("OK:")


def test_alice_logs_in_from_her_own_address_while_many_addresses_guess_her_password():
    clock = FakeClock(1_000.0)
    with server(clock) as s:
        login(s.address)                                           # her address, from now on known
        outcomes = {"checked": 0, "refused": 0}
        for a in range(60):                                        # 60 addresses in two /24s
            reply = request(s.address, b"alice:guess", f"127.0.{1 + a // 30}.{1 + a % 30}")
            outcomes["checked" if reply == REPLIES.LOGIN_FAILED else "refused"] += 1
        assert outcomes["checked"] <= 12, outcomes                 # NEW_ADDRESS_BURST (+ one in a slot)
        login(s.address)                                           # never refused
        assert s.throttle.wait_time("alice", HONEST) == 0


def test_fair_slots_serve_waiting_addresses_in_turn():
    slots = FairSlots(1)
    slots.acquire("first")
    order, threads = [], []

    def wait_for(key, i):
        slots.acquire(key)
        order.append((key, i))
        slots.release()

    # the attacker queues 5 before the student queues 1
    for i in range(5):
        threads.append(threading.Thread(target=wait_for, args=("attacker", i)))
        threads[-1].start()
        while slots.waiting() < i + 1:
            threading.Event().wait(0.001)
    threads.append(threading.Thread(target=wait_for, args=("student", 0)))
    threads[-1].start()
    while slots.waiting() < 6:
        threading.Event().wait(0.001)
    slots.release()
    for t in threads:
        t.join(10)
    assert order.index(("student", 0)) == 1, order                # second, not sixth


def test_a_server_wide_ceiling_on_bad_session_ids_spares_the_honest_client():
    clock = FakeClock(1_000.0)
    with server(clock, guess_ceiling_per_s=1, guess_ceiling_burst=10) as s:
        alice = login(s.address)
        replies = []
        for i in range(30):                                        # 3 addresses, 10 guesses each
            replies.append(request(s.address, make_frame(f"{i:010d}", "count"), f"127.0.0.{10 + i % 3}"))
        checked = sum(r.startswith("ERROR: unknown session id") for r in replies)
        assert checked == 10, replies
        assert all(r == REPLIES.GUESS_CEILING.format(1) for r in replies if not r.startswith("ERROR: unknown"))
        assert request(s.address, make_frame(alice, "count")) == "OK: 0 messages"   # never hits it
        # a fresh address is checked once (it has not guessed yet)
        assert request(s.address, make_frame("0000000001", "count"), "127.0.0.20").startswith("ERROR: unknown")
        assert request(s.address, make_frame("0000000002", "count"), "127.0.0.20").startswith(
            "ERROR: too many bad session ids on this server")


def test_bind_sessions_makes_a_session_id_useless_from_another_address():
    with server(bind_sessions=True) as s:
        alice = login(s.address)
        assert request(s.address, make_frame(alice, "count")) == "OK: 0 messages"
        stolen = request(s.address, make_frame(alice, "count"), ATTACKER)
        assert stolen == f"ERROR: unknown session id {alice} (log in again)"
        assert request(s.address, make_frame(alice, "count")) == "OK: 0 messages"
    with server() as s:                                            # off by default
        alice = login(s.address)
        assert request(s.address, make_frame(alice, "count"), ATTACKER) == "OK: 0 messages"


# -- 4. slow connections ---------------------------------------------------------------------


def test_a_drip_below_the_minimum_byte_rate_is_cut_before_the_deadline():
    with server(idle_timeout=1_000.0) as s:
        s.REQUEST_DEADLINE_S = 1_000.0                       # only the byte rate can end it
        s.SLOW_GRACE_S = 0.3
        s.MIN_REQUEST_RATE = 100
        drip = b"0123456789:email:bob:slow:" + b"x" * 200
        sock = socket.socket()
        sock.settimeout(20)
        sock.bind((ATTACKER, 0))
        sock.connect(s.address)
        reply = b""
        with sock:
            for i in range(len(drip)):                     # bounded; a byte every 50 ms
                try:
                    sock.send(drip[i:i + 1])
                except OSError:
                    break
                if not threading.Event().wait(0.05) and select_readable(sock):
                    break
            reply = sock.recv(1024)
        assert reply.decode() == REPLIES.TOO_SLOW


def select_readable(sock) -> bool:
    import select  # noqa: PLC0415
    return bool(select.select([sock], [], [], 0)[0])


def test_the_per_prefix_cap_counts_a_slash_24_and_spares_other_networks():
    assert prefix("127.0.1.77") == "127.0.1.0/24" and prefix("2001:db8::1") == "2001:db8::/64"
    with server(per_prefix=4, per_address=32, idle_after=1_000.0, idle_timeout=1_000.0) as s:
        s.REQUEST_DEADLINE_S = 1_000.0                       # the held ones stay in progress
        held = []
        try:
            for a in range(4):
                sock = socket.socket()
                sock.bind((f"127.0.1.{a + 1}", 0))
                sock.connect(s.address)
                sock.send(b"0123456789:co")                   # a request in progress: not idle
                held.append(sock)
            while s.slots.count_prefix("127.0.1.1") < 4:
                threading.Event().wait(0.01)
            fifth = request(s.address, b"alice:wonderland", "127.0.1.9")
            assert fifth == s.PER_PREFIX_REPLY.format(4, "127.0.1.0/24"), fifth
            login(s.address)                                  # 127.0.0.2: another /24
        finally:
            for sock in held:
                sock.close()


def test_a_full_server_answers_server_busy_not_a_reset():
    with server(max_connections=4, reserve=0, idle_after=1_000.0, per_prefix=100,
                idle_timeout=1_000.0) as s:
        s.REQUEST_DEADLINE_S = 1_000.0
        held = []
        try:
            for a in range(4):
                sock = socket.socket()
                sock.bind((f"127.0.{10 + a}.1", 0))             # four networks: no prefix cap
                sock.connect(s.address)
                sock.send(b"0123456789:co")
                held.append(sock)
            while s.slots.count() < 4:
                threading.Event().wait(0.01)
            replies = [request(s.address, b"alice:wonderland") for _ in range(5)]   # no ConnectionResetError
            assert replies == [s.BUSY_REPLY.decode()] * 5
        finally:
            for sock in held:
                sock.close()


# -- 5. memory for replies ---------------------------------------------------------------------


def test_a_listing_in_pieces_is_byte_for_byte_the_whole_listing():
    with server() as s:
        for i in range(40):
            s.store.deliver("bob", "alice", f"s{i}: #{i}", f"body {i}\n" * (i * 300))   # pieces of 64 KB
        alice = login(s.address)
        reply = request(s.address, make_frame(alice, "dump"))
        assert reply == format_messages(s.store.messages("alice"))
        assert request(s.address, make_frame(alice, "getmsg", "bob")) == format_messages(
            s.store.messages("alice", "bob"), title=" from bob")


def test_unread_dumps_hold_at_most_the_reply_budget_and_a_reader_is_still_served():
    """24 dumps of 20 x 100 KB that nobody reads, from 4 addresses: the big
    pieces wait for room in the reply budget (it never holds more), and bob,
    reading his own mailbox meanwhile, gets all of it."""
    budget = 600_000
    with server(reply_bytes=budget, reply_bytes_per_address=300_000, per_address=64) as s:
        s.SEND_TIMEOUT_S = 3.0
        for i in range(20):
            s.store.deliver("bob", "alice", f"big {i}", "y" * 100_000)
        for i in range(30):
            s.store.deliver("alice", "bob", f"small {i}", "z" * 3_000)
        alice = login(s.address)
        unread = []
        for k in range(24):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind((f"127.0.0.{30 + k % 4}", 0))
            sock.connect(s.address)
            sock.sendall(make_frame(alice, "dump"))
            sock.shutdown(socket.SHUT_WR)
            unread.append(sock)
        try:
            while s.limits.replies.peak == 0:              # unread pieces have been held
                threading.Event().wait(0.01)
            bob = login(s.address, "bob")
            reply = request(s.address, make_frame(bob, "dump"))
            assert reply == format_messages(s.store.messages("bob"))
            assert 0 < s.limits.replies.peak <= budget
        finally:
            for sock in unread:
                sock.close()


def test_unread_listings_holding_every_slot_make_room_for_a_classmate():
    """Every connection of a full server is a dump nobody reads: a listing
    counts as active only while its client reads, so the next student's
    login closes one of them instead of getting "server busy"."""
    with server(max_connections=6, reserve=1, idle_after=0.0, per_prefix=100, per_address=100) as s:
        for i in range(20):
            s.store.deliver("bob", "alice", f"big {i}", "y" * 100_000)
        alice = login(s.address)
        unread = []
        try:
            for k in range(6):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.bind((f"127.0.{40 + k}.1", 0))
                sock.connect(s.address)
                sock.sendall(make_frame(alice, "dump"))
                sock.shutdown(socket.SHUT_WR)
                unread.append(sock)
            for _ in range(1_000):                          # they hold the slots (bounded wait)
                if s.slots.count() >= 5:
                    break
                threading.Event().wait(0.01)
            assert login(s.address, "bob")                  # served, not "server busy"
        finally:
            for sock in unread:
                sock.close()


def test_the_reply_budget_waits_for_room_and_gives_up_after_its_timeout():
    b = ReplyBudget(total=100, per_address=60)
    assert b.acquire("a", 60, 0) and not b.acquire("a", 1, 0)       # the address's share
    assert b.acquire("b", 40, 0) and not b.acquire("c", 1, 0)       # the total
    b.release("a", 60)
    assert b.acquire("c", 50, 0) and b.held() == 90


# -- 6. logs ---------------------------------------------------------------------------------


def test_refusals_are_logged_once_per_address_per_minute_then_counted():
    clock = FakeClock(0.0)
    log = RefusalLog(60, clock=clock)
    assert log.note("10.0.0.1") == (True, [])
    assert [log.note("10.0.0.1")[0] for _ in range(500)] == [False] * 500
    assert log.note("10.0.0.2") == (True, [])                      # another address: its own line
    clock.advance(61)
    now, due = log.note("10.0.0.1")
    assert now and due == ["10.0.0.1: 500 more refused requests in the 60 s after the one logged"]


def test_the_fast_server_logs_a_flood_of_refusals_in_two_lines(caplog):
    caplog.set_level(logging.INFO, logger="mailkit")
    with server() as s:
        for i in range(50):
            request(s.address, make_frame(f"{i:010d}", "count"), ATTACKER)
    lines = [r.getMessage() for r in caplog.records if ATTACKER in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[1].startswith(f"{ATTACKER}: 49 more refused requests")


def test_the_log_cap_drops_lines_past_its_bytes_an_hour_and_says_so():
    clock = FakeClock(0.0)
    cap = LogCap(10_000, clock=clock)

    def rec(i):
        return logging.LogRecord("mailkit", logging.INFO, __file__, 1, "line %d " + "x" * 60, (i,), None)

    passed = [cap.filter(rec(i)) for i in range(1_000)]
    assert 50 < sum(passed) < 120
    clock.advance(3_600)
    r = rec(0)
    assert cap.filter(r) and r.getMessage().startswith("(log cap: ")
