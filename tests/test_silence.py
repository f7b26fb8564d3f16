"""Silent loss, delay with jitter (NoisyLink) and the client's timer
(MailClient's per-attempt timeout, ``resend_after_timeout``), with real
sockets on 127.0.0.1 port 0.  No timed assertions: every test asserts on the
link's events, the transcript and the inbox, never on durations."""
from __future__ import annotations

import socket
import struct
import threading

import pytest

from conftest import CHEAP_SCRYPT_N, USERS, wait_for
from mailkit import protocol as P
from mailkit.client import MailClient, NoReply, RetriesExhausted
from mailkit.noise import NoisyLink
from mailkit.server import REPLIES, MailServer


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    before = set(threading.enumerate())
    yield
    # Threads this test started are gone (a thread of an earlier test may end meanwhile).
    assert wait_for(lambda: not set(threading.enumerate()) - before), \
        [t.name for t in set(threading.enumerate()) - before]


@pytest.fixture
def server():
    with MailServer(users=USERS, idle_timeout=0.3, scrypt_n=CHEAP_SCRYPT_N) as s:
        yield s


@pytest.fixture
def link(server):
    with NoisyLink(server.address) as relay:
        yield relay


def subjects(server) -> list[str]:
    """bob's mail, read straight from the server (not through the link)."""
    bob = MailClient(*server.address)
    bob.login("bob", USERS["bob"])
    return sorted(m.subject for m in bob.dump())


def alice_via(link, **kw) -> MailClient:
    client = MailClient(*link.address, **kw)
    client.login("alice", USERS["alice"])
    return client


# -- a silently lost request ------------------------------------------------------

def test_a_lost_request_makes_the_safe_client_time_out_and_not_resend(server, link):
    alice = alice_via(link, timeout=0.2, retries=1)
    link.plan_next(lose_request=True)
    with pytest.raises(NoReply, match="no reply within 0.4 s; not sent again"):
        alice.send("bob", "Hello", "lost on the way")
    last = alice.transcript[-1]
    # It timed out, so no FIN came (a FIN would have ended the wait with "no reply").
    assert last.timed_out and last.error == "timed out after 0.4 s"
    assert (last.command, last.attempt, last.reply) == ("email", 1, b"")
    event = link.events[-1]
    assert event.lost_request and not event.lost_reply and event.reply == b""
    assert "REQUEST LOST (silently)" in event.summary() and "reply ''" not in event.summary()
    assert len(link.events) == 2                      # login, and the lost email: no resend
    assert subjects(server) == []                     # the server never heard of it


def test_a_timer_that_resends_recovers_a_lost_request(server, link):
    alice = alice_via(link, timeout=0.2, resend_after_timeout=True)
    link.plan_next(lose_request=True)
    assert alice.send("bob", "Hello", "second time lucky") == REPLIES.EMAIL_SENT
    lost, resent = alice.transcript[-2:]
    assert (lost.attempt, lost.error, lost.timed_out) == (1, "timed out after 0.2 s", True)
    assert (resent.attempt, resent.outcome) == (2, "OK")
    assert "(timed out after 0.2 s)" in lost.summary()
    assert "(timed out after 0.2 s)" in alice.transcript.sequence()
    assert subjects(server) == ["Hello"]              # exactly once


# -- a silently lost reply ---------------------------------------------------------

def test_a_lost_reply_and_a_resending_timer_deliver_a_duplicate(server, link):
    alice = alice_via(link, timeout=0.2, resend_after_timeout=True)
    link.plan_next(lose_reply=True)
    assert alice.send("bob", "Hello", "twice?") == REPLIES.EMAIL_SENT
    assert alice.transcript[-2].timed_out
    event = link.events[1]
    assert event.lost_reply and event.reply == REPLIES.EMAIL_SENT.encode()
    assert "REPLY LOST (silently)" in event.summary()
    assert subjects(server) == ["Hello", "Hello"]


def test_a_lost_reply_and_the_safe_client_deliver_once(server, link):
    alice = alice_via(link, timeout=0.2, retries=1)
    link.plan_next(lose_reply=True)
    with pytest.raises(NoReply):
        alice.send("bob", "Hello", "once")
    assert [e.attempt for e in alice.transcript if e.command == "email"] == [1]
    assert subjects(server) == ["Hello"]


def test_a_timeout_shorter_than_the_delay_makes_a_duplicate(server, link):
    alice = alice_via(link, timeout=0.2, retries=2, resend_after_timeout=True)
    link.plan_next(delay=1.0)                         # the reply comes, but too late
    assert alice.send("bob", "Hello", "slow") == REPLIES.EMAIL_SENT
    emails = [e for e in alice.transcript if e.command == "email"]
    assert emails[0].timed_out and emails[-1].outcome == "OK"
    assert link.events[1].delay == 1.0 and link.events[1].reply == REPLIES.EMAIL_SENT.encode()
    # Every copy that reached the server was delivered: the first (late) and each resend.
    assert len(link.events) - 1 == len(emails) >= 2
    assert subjects(server) == ["Hello"] * len(emails)


def test_the_safe_client_waits_out_a_delay_and_delivers_once(server, link):
    alice = alice_via(link, timeout=0.2)              # patience 0.2 s x 4 > the 0.3 s delay
    link.plan_next(delay=0.3)
    assert alice.send("bob", "Hello", "slow") == REPLIES.EMAIL_SENT
    assert [e.attempt for e in alice.transcript if e.command == "email"] == [1]
    assert subjects(server) == ["Hello"]


def test_a_read_only_command_timing_out_says_so_in_the_transcript(server, link):
    alice = alice_via(link, timeout=0.2)
    link.plan_next(lose_request=True)
    assert alice.count() == 0                        # count is resent after one timeout
    lost, resent = alice.transcript[-2:]
    assert lost.error == "timed out after 0.2 s" and resent.outcome == "OK"


# -- the connection is held in silence, then released -------------------------------

def _frame(server) -> bytes:
    alice = MailClient(*server.address)
    sid = alice.login("alice", USERS["alice"])
    return P.make_frame(sid, "email", "bob", "raw", "body")


def test_a_held_connection_sends_nothing_and_is_released_on_a_reset(server, link):
    frame = _frame(server)
    link.plan_next(lose_request=True)
    sock = socket.create_connection(link.address, timeout=0.3)
    try:
        sock.sendall(frame)                          # like a 2017 client: no half-close
        with pytest.raises(TimeoutError):
            sock.recv(1024)                          # no reply, no FIN (b""), no RST (an error)
        assert wait_for(lambda: link.stats()["connections"] == 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()                                 # with linger 0: a reset
    assert wait_for(lambda: link.stats()["connections"] == 0)   # released at once
    assert link.events[-1].lost_request
    assert subjects(server) == []


def test_stop_releases_a_held_half_closed_connection(server):
    frame = _frame(server)
    link = NoisyLink(server.address).start()
    link.plan_next(lose_reply=True)
    with socket.create_connection(link.address, timeout=5) as sock:
        sock.sendall(frame)
        sock.shutdown(socket.SHUT_WR)                # its FIN is gone: the link holds it to the end
        assert wait_for(lambda: bool(link.events) and link.events[-1].reply != b"")
        with pytest.raises(TimeoutError):
            sock.settimeout(0.2)
            sock.recv(1024)
        link.stop()                                   # returns, and lets the connection go
        sock.settimeout(5)
        assert sock.recv(1024) == b""
    assert link.events[-1].lost_reply
    assert subjects(server) == ["raw"]               # the server did its part
    link.stop()                                       # safe twice


def test_hold_bounds_the_silence(server):
    frame = _frame(server)
    with NoisyLink(server.address, hold=0.2) as link:
        link.plan_next(lose_request=True)
        with socket.create_connection(link.address, timeout=5) as sock:
            sock.sendall(frame)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(1024) == b""            # let go after hold: a close, no reply
        assert link.events[-1].lost_request


# -- rates, jitter, seeds ----------------------------------------------------------------

def _lossy_run(server, seed: int, **rates) -> tuple[list, MailClient]:
    with NoisyLink(server.address, seed=seed, **rates) as link:
        link.plan_next()                              # a clean login
        alice = alice_via(link, timeout=0.2, retries=6, resend_after_timeout=True)
        for i in range(8):
            alice.send("bob", f"mail {i}", "body")
        events = [(e.number, e.lost_request, e.lost_reply, e.delay) for e in link.events]
    return events, alice


def test_loss_rate_loses_requests_and_every_mail_still_arrives_once(server):
    events, alice = _lossy_run(server, seed=3, loss_rate=0.3)
    lost = [e for e in events if e[1]]
    assert lost and not any(e[2] for e in events)
    timeouts = [e for e in alice.transcript if e.timed_out]
    assert len(timeouts) == len(lost)                 # each loss cost one timeout
    assert subjects(server) == sorted(f"mail {i}" for i in range(8))


def test_reply_loss_rate_makes_one_duplicate_per_lost_reply(server):
    events, alice = _lossy_run(server, seed=3, reply_loss_rate=0.3)
    lost = [e for e in events if e[2]]
    assert lost and not any(e[1] for e in events)
    got = subjects(server)
    assert set(got) == {f"mail {i}" for i in range(8)}
    assert len(got) == 8 + len(lost)


def test_the_same_seed_gives_the_same_losses_and_delays(server):
    rates = dict(loss_rate=0.2, reply_loss_rate=0.2, delay=0.02, jitter=0.01)
    first, _ = _lossy_run(server, seed=11, **rates)
    again, _ = _lossy_run(server, seed=11, **rates)
    # The n-th connection's fate depends on the seed alone.  On a busy machine
    # the client's 0.2 s timer may also expire on a reply that was only slow:
    # its resend is one connection more, so one run may be longer than the other.
    n = min(len(first), len(again))
    assert n >= 9 and [e[1:] for e in first[:n]] == [e[1:] for e in again[:n]]
    delays = [e[3] for e in first[1:]]
    assert all(0.01 <= d <= 0.03 for d in delays) and len(set(delays)) > 1
    assert first[0][3] == 0.0                         # the planned login: exactly no delay
    other, _ = _lossy_run(server, seed=12, **rates)
    n = min(len(first), len(other))
    assert [e[1:] for e in other[:n]] != [e[1:] for e in first[:n]]


def test_no_loss_or_jitter_draws_nothing_extra():
    # A link without them keeps the random sequence it had before they existed.
    plain = NoisyLink(("127.0.0.1", 9), rate=0.3, seed=4)
    silent = NoisyLink(("127.0.0.1", 9), rate=0.3, seed=4, loss_rate=0.0, jitter=0.0)
    frame = P.make_frame("0123456789", "count")
    a = [plain._faults(frame)[1] for _ in range(20)]
    b = [silent._faults(frame)[1] for _ in range(20)]
    assert a == b and any(f.request_flips for f in a)


def test_repr_names_only_what_is_switched_on():
    assert repr(NoisyLink(("127.0.0.1", 9), seed=5)).endswith("drop_rate=0.0, seed=5>")
    text = repr(NoisyLink(("127.0.0.1", 9), loss_rate=0.1, delay=0.02, jitter=0.01))
    assert "loss_rate=0.1, delay=0.02, jitter=0.01, seed=0>" in text


@pytest.mark.parametrize("kw, fragment", [
    (dict(loss_rate=1.5), "loss_rate is a probability"),
    (dict(reply_loss_rate=-0.1), "reply_loss_rate is a probability"),
    (dict(jitter=-1), "delay and jitter are seconds"),
])
def test_bad_settings_are_refused(kw, fragment):
    with pytest.raises(ValueError, match=fragment):
        NoisyLink(("127.0.0.1", 9), **kw)


def test_one_fate_per_planned_connection():
    with pytest.raises(ValueError, match="not several"):
        NoisyLink(("127.0.0.1", 9)).plan_next(lose_request=True, drop_reply=True)


def test_retries_exhausted_when_every_request_is_lost(server, link):
    alice = alice_via(link, timeout=0.2, retries=2, resend_after_timeout=True)
    for _ in range(3):
        link.plan_next(lose_request=True)
    with pytest.raises(RetriesExhausted, match="timed out after 0.2 s"):
        alice.send("bob", "Hello", "never")
    assert subjects(server) == []


def test_a_delay_is_in_the_summary(server, link):
    alice = alice_via(link)
    link.plan_next(delay=0.05)
    alice.count()
    assert "reply held 50 ms" in link.events[-1].summary()
