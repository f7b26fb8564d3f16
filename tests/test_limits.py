"""mailkit.limits with a fake clock: the policies, their bounds in memory,
and their thread safety.  The same limits over real sockets, from distinct
loopback addresses, are in test_class_server.py."""

from __future__ import annotations

import re
import threading

import pytest

from mailkit.course import FakeClock
from mailkit.limits import MAX_TRACKED, ConnectionSlots, LoginThrottle, RateLimiter, session_tag


# -- RateLimiter ----------------------------------------------------------------------


def test_a_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock(1_000.0)
    limiter = RateLimiter(rate=20, burst=40, clock=clock)
    assert sum(limiter.allow("a") for _ in range(100)) == 40          # the burst
    assert limiter.wait_time("a") == pytest.approx(1 / 20)
    allowed = 0
    for _ in range(10 * 100):                                          # 10 s, 100 tries a second
        clock.now += 0.01
        allowed += limiter.allow("a")
    assert allowed == pytest.approx(200, abs=2)                        # 20 a second sustained
    assert limiter.allow("b")                                          # another key is not affected


def test_hits_below_zero_make_the_key_wait_longer():
    clock = FakeClock(1_000.0)
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    for _ in range(10):
        limiter.hit("a")
    assert limiter.wait_time("a") == pytest.approx(0.6)               # 5 below zero, then one more
    clock.now += 0.6
    assert limiter.wait_time("a") == 0


def test_a_flood_of_keys_stays_bounded():
    clock = FakeClock(1_000.0)
    limiter = RateLimiter(rate=1, burst=2, clock=clock, max_keys=1_000)
    for i in range(50_000):
        limiter.hit(f"127.0.{i // 250}.{i % 250}")
        clock.now += 0.001
    assert len(limiter) <= 1_000 + 500
    for _ in range(3):
        limiter.hit("attacker")
    assert limiter.wait_time("attacker") > 0                          # and it still limits


# -- LoginThrottle --------------------------------------------------------------------


def test_wrong_passwords_slow_the_pair_down_progressively():
    clock = FakeClock(1_000.0)
    t = LoginThrottle(clock=clock)
    waits = []
    for _ in range(10):
        t.failed("alice", "10.0.0.66")
        waits.append(t.wait_time("alice", "10.0.0.66"))
    assert waits[:3] == [0, 0, 0]                                      # mistyping is free
    assert waits[3:] == [1, 2, 4, 8, 16, 32, 60]                       # then doubling, capped
    assert t.wait_time("alice", "10.0.0.7") == 0                       # alice's own laptop: no wait
    clock.now += 60
    assert t.wait_time("alice", "10.0.0.66") == 0
    t.succeeded("alice", "10.0.0.66")                                  # a right password clears it
    t.failed("alice", "10.0.0.66")
    assert t.wait_time("alice", "10.0.0.66") == 0


def test_the_right_password_from_another_address_is_never_refused():
    """15 wrong passwords in 65 s from one address (issue 12's figure), and
    ten times that: alice's address never waits."""
    clock = FakeClock(1_000.0)
    t = LoginThrottle(clock=clock)
    for i in range(150):
        if t.wait_time("alice", "attacker") == 0:
            t.failed("alice", "attacker")
        assert t.wait_time("alice", "alice-laptop") == 0
        clock.now += 65 / 15
    assert t.wait_time("alice", "attacker") > 0


def test_many_addresses_get_the_per_user_delay_after_their_first_guess():
    clock = FakeClock(1_000.0)
    t = LoginThrottle(clock=clock)
    checked = 0
    for round_ in range(20):                                           # 20 s
        for a in range(100):                                           # 100 addresses, 1 try/s each
            addr = f"127.0.0.{a + 3}"
            if t.wait_time("alice", addr) == 0:
                checked += 1
                t.failed("alice", addr)
        clock.now += 1
    # each address's first (and a few more before the user delay builds up),
    # then about one per user delay: far below the 2,000 tried
    assert checked < 100 + LoginThrottle.USER_FREE + 40, checked
    assert t.wait_time("alice", "127.0.0.2") == 0                      # a fresh address: alice


def test_the_throttle_forgets_and_stays_bounded():
    clock = FakeClock(1_000.0)
    t = LoginThrottle(clock=clock, max_keys=2_000)
    for i in range(50_000):                                            # made-up names, many addresses
        t.failed(f"made-up-{i}", f"10.{i % 200}.0.1")
        clock.now += 0.02
    assert t.tracked() <= 2 * (2_000 + 1_000)
    for _ in range(5):                                                 # and it still slows guessing
        t.failed("alice", "x")
    assert t.wait_time("alice", "x") == 2


def test_the_defaults_are_bounded():
    assert MAX_TRACKED == 10_000
    assert LoginThrottle.MAX_DELAY_S <= 60                             # a delay, never a lock-out


# -- ConnectionSlots ------------------------------------------------------------------


def test_per_address_limit():
    slots = ConnectionSlots(total=512, per_address=32, clock=FakeClock())
    admitted = [slots.open(("a", i), "127.0.0.3")[0] for i in range(600)]
    assert sum(admitted) == 32
    assert slots.open("honest", "127.0.0.2") == (True, [])
    slots.close(("a", 0))
    assert slots.open(("a", "again"), "127.0.0.3")[0]
    assert slots.count("127.0.0.3") == 32 and slots.count() == 33
    slots.close("never admitted")                                      # harmless


def test_when_slots_run_low_the_oldest_idle_are_dropped_first():
    clock = FakeClock(1_000.0)
    slots = ConnectionSlots(total=100, per_address=32, reserve=10, idle_after=0.5, clock=clock)
    for i in range(90):                                                # fills up to the reserve
        assert slots.open(i, f"10.0.0.{i // 30}") == (True, [])
        clock.now += 0.01
    slots.active(0)                                                    # 0 spoke: not the oldest idle now
    slots.active(1, busy=True)                                         # 1 is being answered: never dropped
    clock.now += 1.0
    admitted, to_close = slots.open("new", "10.0.1.1")
    assert admitted and to_close == [2]                                # oldest idle first
    assert slots.count() == 90
    clock.now += 1.0
    for k in range(20):
        admitted, to_close = slots.open(("n", k), "10.0.1.2")
        assert admitted and len(to_close) == 1
        assert to_close[0] not in (0, 1)


def test_no_idle_connection_means_refused_at_the_total():
    clock = FakeClock(1_000.0)
    slots = ConnectionSlots(total=10, per_address=10, reserve=2, idle_after=0.5, clock=clock)
    assert all(slots.open(i, "a")[0] for i in range(8))
    assert slots.open(8, "b") == (True, [])         # within the reserve, nothing idle yet
    assert slots.open(9, "b") == (True, [])
    assert slots.open(10, "b") == (False, [])       # full, and everything is active


def test_slots_are_thread_safe():
    slots = ConnectionSlots(total=10_000, per_address=1_000)

    def worker(k):
        for i in range(500):
            assert slots.open((k, i), f"a{k % 4}")[0]
            slots.active((k, i))
        for i in range(500):
            slots.close((k, i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert slots.count() == 0


# -- session tags ---------------------------------------------------------------------


def test_session_tags_are_short_stable_and_not_the_id():
    tag = session_tag("0123456789")
    assert re.fullmatch(r"s:[0-9a-f]{6}", tag)
    assert session_tag("0123456789") == tag
    assert session_tag("0123456780") != tag
    assert "0123456789" not in tag
    assert session_tag("0123456789", b"another secret") != tag


# -- user names that cannot be valid ------------------------------------------------


def test_login_names_over_the_limit_are_spotted_from_the_first_bytes():
    from mailkit.limits import MAX_USERNAME, login_name_too_long
    from mailkit.protocol import USERNAME_RE, make_frame

    assert USERNAME_RE.fullmatch("a" * MAX_USERNAME) and not USERNAME_RE.fullmatch("a" * (MAX_USERNAME + 1))
    assert not login_name_too_long(b"a" * 32 + b":pw")
    assert login_name_too_long(b"a" * 33 + b":pw")
    assert login_name_too_long(b"u" * 1_000_000 + b":pw")
    assert login_name_too_long(b"u" * 1_000_000)                      # no ':' at all
    assert not login_name_too_long(b"short")                          # bad, but the parser says why
    assert not login_name_too_long(b"\xff" * 100 + b":pw")             # not a name: the parser says why
    assert not login_name_too_long("é".encode() * 100 + b":pw")
    frame = make_frame("0123456789", "email", "bob", "s", "b" * 1_000)
    assert not login_name_too_long(frame)
    assert not login_name_too_long(b"01234X6789" + frame[10:])        # a flipped bit: still a frame (KO)


def test_class_limits_hold_the_defaults_for_a_class_of_300():
    from mailkit.limits import ClassLimits

    limits = ClassLimits()
    assert (limits.per_address, limits.max_connections, limits.guesses_per_s) == (32, 512, 20.0)
    assert limits.slots.per_address == 32 and limits.throttle.free == LoginThrottle.FREE
    clock = FakeClock(1_000.0)
    small = ClassLimits(per_address=2, guesses_per_s=1, guess_burst=1, clock=clock)
    assert small.guesses.allow("a") and not small.guesses.allow("a")
    clock.now += 1
    assert small.guesses.allow("a")
