"""Tests for mailkit.store, on real SQLite files under tmp_path (no mocks)."""
from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from conftest import CHEAP_SCRYPT_N
from mailkit.course import FakeClock
from mailkit.protocol import Message
from mailkit.store import (
    SESSION_TTL_S, MailStore, SessionError, SessionExpired, StoreError,
    UnknownSession, UnknownUser, UserExists, hash_password, verify_password,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "mail.db"


@pytest.fixture
def store(db_path):
    """A file store with users alice and bob (password PASSWORD)."""
    with MailStore(db_path, scrypt_n=CHEAP_SCRYPT_N) as s:
        s.add_user("alice", PASSWORD)
        s.add_user("bob", PASSWORD)
        yield s


# -- passwords --------------------------------------------------------------
def test_hash_password_format_and_roundtrip():
    stored = hash_password("s3cret", salt=bytes(16))
    kind, n, r, p, salt, digest = stored.split("$")
    assert (kind, n, r, p, salt) == ("scrypt", "16384", "8", "1", "00" * 16)
    assert stored == hash_password("s3cret", salt=bytes(16))  # deterministic given salt
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)


def test_verify_password_reads_cost_from_the_string():
    # A hash made with other (cheap) parameters still verifies.
    digest = hashlib.scrypt(b"pw", salt=b"salt", n=2, r=1, p=1, dklen=32)
    stored = f"scrypt$2$1$1${b'salt'.hex()}${digest.hex()}"
    assert verify_password("pw", stored)
    assert not verify_password("PW", stored)


@pytest.mark.parametrize("bad", ["", "plain", "bcrypt$1$2$3$00$00", "scrypt$x$8$1$00$00",
                                 "scrypt$16384$8$1$zz$00"])
def test_verify_password_rejects_malformed_hash(bad):
    with pytest.raises(ValueError, match="bad password hash"):
        verify_password("pw", bad)


# -- users ------------------------------------------------------------------
def test_add_has_users(store):
    assert store.has_user("alice")
    assert not store.has_user("carol")
    store.add_user("carol", "pw")
    assert store.users() == ["alice", "bob", "carol"]


def test_add_existing_user_raises_unless_replace(store):
    with pytest.raises(UserExists, match="'alice' already exists"):
        store.add_user("alice", "other")
    assert store.check_password("alice", PASSWORD)
    store.add_user("alice", "other", replace=True)
    assert store.check_password("alice", "other")
    assert not store.check_password("alice", PASSWORD)
    assert store.users() == ["alice", "bob"]


@pytest.mark.parametrize("bad", ["", "1abc", "has space", "a#b", "x" * 33, "ab:c"])
def test_bad_username_rejected(store, bad):
    with pytest.raises(ValueError, match="bad username"):
        store.add_user(bad, "pw")
    assert bad not in store.users()


def test_passwords_are_salted_and_never_stored_in_clear(db_path):
    """The one test at the real cost (every other store here uses a cheap
    one): the stored hashes name N=2**14."""
    with MailStore(db_path) as s:
        s.add_user("alice", PASSWORD)
        s.add_user("bob", PASSWORD)
    conn = sqlite3.connect(db_path)  # read the file directly, not through the store
    rows = dict(conn.execute("SELECT name, password_hash FROM users"))
    conn.close()
    assert rows["alice"] != rows["bob"]
    assert all(h.startswith("scrypt$16384$8$1$") for h in rows.values())
    files = list(db_path.parent.glob(db_path.name + "*"))  # db, and any -wal / -shm
    raw = b"".join(f.read_bytes() for f in files)
    assert b"alice" in raw  # sanity check: we are reading the right bytes
    assert PASSWORD.encode() not in raw


def test_check_password(store):
    assert store.check_password("alice", PASSWORD)
    assert not store.check_password("alice", "wrong")
    assert not store.check_password("carol", PASSWORD)  # unknown user
    assert not store.check_password("", "")


# -- sessions ---------------------------------------------------------------
def test_session_ids_are_ten_digits_and_differ(store):
    ids = {store.create_session("alice") for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 10 and i.isdigit() for i in ids)
    assert {store.session_user(i) for i in ids} == {"alice"}


def test_create_session_for_unknown_user(store):
    with pytest.raises(UnknownUser, match="no user named 'carol'"):
        store.create_session("carol")


def test_unknown_session(store):
    with pytest.raises(UnknownSession, match=r"unknown session id 1234567890 \(log in again\)"):
        store.session_user("1234567890")


def test_end_session_is_idempotent(store):
    sid = store.create_session("bob")
    assert store.session_user(sid) == "bob"
    store.end_session(sid)
    store.end_session(sid)
    store.end_session("0000000000")
    with pytest.raises(UnknownSession):
        store.session_user(sid)


def test_session_expiry_is_sliding(db_path):
    clock = FakeClock()
    with MailStore(db_path, clock=clock, scrypt_n=CHEAP_SCRYPT_N) as s:
        s.add_user("alice", "pw")
        sid = s.create_session("alice")
        for _ in range(5):  # used every 29 minutes: lives well past 30 minutes
            clock.now += SESSION_TTL_S - 60
            assert s.session_user(sid) == "alice"
        clock.now += SESSION_TTL_S + 1
        with pytest.raises(SessionExpired,
                           match=rf"session {sid} expired after 30 minutes idle \(log in again\)"):
            s.session_user(sid)
        # The expired session is gone, and both errors share a base class.
        with pytest.raises(UnknownSession):
            s.session_user(sid)
        assert issubclass(SessionExpired, SessionError)
        assert issubclass(UnknownSession, SessionError)
        assert issubclass(SessionError, StoreError)


def test_custom_session_ttl(tmp_path):
    clock = FakeClock()
    with MailStore(tmp_path / "t.db", session_ttl=90, clock=clock, scrypt_n=CHEAP_SCRYPT_N) as s:
        s.add_user("alice", "pw")
        sid = s.create_session("alice")
        clock.now += 91
        with pytest.raises(SessionExpired, match="after 1.5 minutes idle"):
            s.session_user(sid)


# -- messages ---------------------------------------------------------------
AWKWARD_TEXTS = [
    "plain",
    "hash # and colon : and percent % and 100%% and %s",
    "line one\nline two\r\nline three\n",
    "emoji \U0001F4E8\U0001F600 and accents éàü and CJK 郵便",
    "quotes ' \" ; DROP TABLE messages; --",
    "",
]


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_deliver_roundtrip_awkward_text(store, text):
    sent = store.deliver("bob", "alice", text, text + "\n" + text)
    assert isinstance(sent, Message)
    assert store.messages("alice") == [sent]
    assert store.count("alice") == 1
    assert store.delete("alice", "bob", text) == 1
    assert store.messages("alice") == []


def test_big_body(store):
    body = ("0123456789abcdef#:%\n" * 5200)[:100_000] + "\U0001F4E8"
    store.deliver("bob", "alice", "big", body)
    [m] = store.messages("alice")
    assert m.body == body


def test_messages_order_filter_count_and_delete(store, db_path):
    store.add_user("carol", "pw")
    store.deliver("bob", "alice", "s1", "b1")
    store.deliver("carol", "alice", "s2", "b2")
    store.deliver("bob", "alice", "s1", "b3")
    store.deliver("alice", "bob", "s1", "for bob")
    assert [m.body for m in store.messages("alice")] == ["b1", "b2", "b3"]
    assert [m.body for m in store.messages("alice", "bob")] == ["b1", "b3"]
    assert store.messages("alice", "nobody") == []
    assert store.count("alice") == 3
    assert store.count("carol") == 0
    assert store.delete("alice", "bob", "s1") == 2
    assert store.delete("alice", "bob", "s1") == 0
    assert [m.body for m in store.messages("alice")] == ["b2"]
    assert [m.body for m in store.messages("bob")] == ["for bob"]


def test_user_sees_only_own_messages(store):
    store.deliver("bob", "alice", "to alice", "x")
    store.deliver("alice", "bob", "to bob", "y")
    assert [m.subject for m in store.messages("alice")] == ["to alice"]
    assert [m.subject for m in store.messages("bob")] == ["to bob"]
    assert all(m.recipient == "alice" for m in store.messages("alice"))


def test_deliver_to_unknown_recipient(store):
    with pytest.raises(UnknownUser, match="no user named 'carol'"):
        store.deliver("alice", "carol", "hi", "there")
    assert store.count("carol") == 0


def test_sent_at_comes_from_the_clock(tmp_path):
    clock = FakeClock(1234.5)
    with MailStore(tmp_path / "c.db", clock=clock, scrypt_n=CHEAP_SCRYPT_N) as s:
        s.add_user("alice", "pw")
        assert s.deliver("alice", "alice", "s", "b").sent_at == 1234.5
        assert s.messages("alice")[0].sent_at == 1234.5


@settings(max_examples=60, deadline=None)
@given(subject=st.text(), body=st.text())
def test_any_text_roundtrips(memory_store, subject, body):
    sent = memory_store.deliver("bob", "alice", subject, body)
    assert memory_store.messages("alice")[-1] == sent


@pytest.fixture(scope="module")
def memory_store():
    with MailStore(scrypt_n=CHEAP_SCRYPT_N) as s:
        s.add_user("alice", "pw")
        yield s


# -- durability and lifetime -------------------------------------------------
def test_data_survives_reopen(store, db_path):
    store.deliver("bob", "alice", "kept", "body")
    sid = store.create_session("alice")
    store.close()
    with MailStore(db_path, scrypt_n=CHEAP_SCRYPT_N) as again:
        assert again.users() == ["alice", "bob"]
        assert again.check_password("bob", PASSWORD)
        assert again.session_user(sid) == "alice"
        assert [m.subject for m in again.messages("alice")] == ["kept"]


def test_message_on_disk_when_deliver_returns(store, db_path):
    store.close()
    code = (
        "import os, signal, sys\n"
        "from mailkit.store import MailStore\n"
        "s = MailStore(sys.argv[1])\n"
        "s.deliver('bob', 'alice', 'last words', 'sent just before SIGKILL')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code, str(db_path)],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == -signal.SIGKILL, result.stderr
    with MailStore(db_path, scrypt_n=CHEAP_SCRYPT_N) as fresh:
        [m] = fresh.messages("alice")
        assert (m.sender, m.subject, m.body) == ("bob", "last words", "sent just before SIGKILL")


def test_file_store_is_durable_by_configuration(store, db_path):
    settings = store.durability()
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == 2  # FULL: fsync on every commit
    assert settings["schema_version"] >= 1
    # WAL is a property of the file: a fresh connection sees it too
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_close_is_idempotent_and_use_after_close_is_readable(db_path):
    s = MailStore(db_path, scrypt_n=CHEAP_SCRYPT_N)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="is closed"):
        s.users()


def test_newer_schema_is_refused(db_path):
    MailStore(db_path, scrypt_n=CHEAP_SCRYPT_N).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        MailStore(db_path, scrypt_n=CHEAP_SCRYPT_N)


# -- threads ----------------------------------------------------------------
def _hammer(store, n_threads, per_thread):
    errors = []

    def work(t):
        try:
            for i in range(per_thread):
                store.deliver(f"t{t}", "alice", f"{t}:{i}", "x")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors


def test_many_threads_deliver_into_one_file(store, db_path):
    assert _hammer(store, 20, 50) == []
    assert store.count("alice") == 1000
    store.close()
    with MailStore(db_path, scrypt_n=CHEAP_SCRYPT_N) as fresh:
        subjects = [m.subject for m in fresh.messages("alice")]
    assert sorted(subjects) == sorted(f"{t}:{i}" for t in range(20) for i in range(50))


def test_memory_store_works_from_threads():
    with MailStore(":memory:", scrypt_n=CHEAP_SCRYPT_N) as s:
        s.add_user("alice", "pw")
        assert _hammer(s, 8, 25) == []
        assert s.count("alice") == 200
        # Sessions and password checks from threads too (scrypt outside the lock).
        sid = s.create_session("alice")
        results = []
        threads = [threading.Thread(target=lambda: results.append(
            (s.session_user(sid), s.check_password("alice", "pw")))) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert results == [("alice", True)] * 4
