"""The store's limits for a class server: mailbox quotas, bounded listings,
a full disk, files only their owner reads, a path that cannot be opened."""

from __future__ import annotations

import os
import stat

import pytest

from mailkit.store import (
    LISTING_BYTES, QUOTA_BYTES, QUOTA_MESSAGES, MailboxFull, MailStore, StorageFull, StoreOpenError,
    UnknownUser,
)


@pytest.fixture
def store():
    with MailStore(quota_messages=5, quota_bytes=1_000) as s:
        for name in ("alice", "bob"):
            s.add_user(name, "pw")
        yield s


def test_the_defaults_fit_a_class_of_300():
    assert (QUOTA_MESSAGES, QUOTA_BYTES) == (1_000, 10 * 1024 * 1024)
    assert 300 * QUOTA_BYTES <= 4 * 1024**3          # every mailbox full: a few GB of disk


def test_a_mailbox_takes_messages_up_to_its_quota(store):
    for i in range(5):
        store.deliver("bob", "alice", f"s{i}", "x")
    # The text reaches the sender: it says the mailbox is full, never how
    # many messages or bytes are in it (issue 21).
    with pytest.raises(MailboxFull, match=r"^mailbox full: alice cannot receive mail until they delete some$"):
        store.deliver("bob", "alice", "one more", "x")
    assert store.count("alice") == 5
    assert store.deliver("alice", "bob", "bob has room", "x")     # another mailbox is not affected
    assert store.delete("alice", "bob", "s0") == 1                # deleting makes room again
    store.deliver("bob", "alice", "now it fits", "x")
    assert store.count("alice") == 5
    assert store.usage("alice") == (5, sum(len(f"s{i}") + 1 for i in range(1, 5)) + len("now it fits") + 1)


def test_the_byte_quota_counts_subjects_and_bodies_in_utf8(store):
    store.deliver("bob", "alice", "big", "é" * 450)               # 3 + 900 bytes
    assert store.usage("alice") == (1, 903)
    with pytest.raises(MailboxFull, match="^mailbox full: alice cannot"):
        store.deliver("bob", "alice", "too", "y" * 100)           # 903 + 103 > 1,000
    store.deliver("bob", "alice", "fits", "y" * 93)               # 903 + 97 = 1,000
    assert store.usage("alice") == (2, 1_000)


def test_mails_committed_together_are_checked_one_by_one(store):
    futures = [store.submit("bob", "alice", f"b{i}", "z") for i in range(8)]
    futures.append(store.submit("bob", "carol", "nobody", "z"))
    outcomes = [type(f.exception(timeout=10)).__name__ for f in futures]
    assert outcomes == ["NoneType"] * 5 + ["MailboxFull"] * 3 + ["UnknownUser"]
    assert store.count("alice") == 5
    assert isinstance(futures[-1].exception(), UnknownUser)


def test_the_quota_is_counted_from_the_file_after_a_restart(tmp_path):
    path = tmp_path / "mail.db"
    with MailStore(path, quota_messages=3) as s:
        s.add_user("alice", "pw")
        for i in range(3):
            s.deliver("alice", "alice", f"s{i}", "x")
    with MailStore(path, quota_messages=3) as s:
        with pytest.raises(MailboxFull):
            s.deliver("alice", "alice", "fourth", "x")
    with MailStore(path, quota_messages=None, quota_bytes=None) as s:   # no quota at all
        s.deliver("alice", "alice", "fourth", "x")
        assert s.count("alice") == 4


def test_listings_stop_early_and_count_says_how_many_in_all():
    with MailStore(quota_messages=None, quota_bytes=None) as s:
        s.add_user("alice", "pw")
        s.add_user("bob", "pw")
        for i in range(50):
            s.deliver("bob" if i % 2 else "alice", "alice", f"s{i:02d}", "b" * 1_000)
        assert len(s.messages("alice")) == 50                      # no bound: all
        first = s.messages("alice", limit=10)
        assert [m.subject for m in first] == [f"s{i:02d}" for i in range(10)]   # the oldest first
        by_bytes = s.messages("alice", max_bytes=5_500)            # 1,003 bytes each: 5 fit
        assert [m.subject for m in by_bytes] == [f"s{i:02d}" for i in range(5)]
        assert len(s.messages("alice", max_bytes=10)) == 1         # at least one, however big
        from_bob = s.messages("alice", "bob", limit=3)
        assert [m.subject for m in from_bob] == ["s01", "s03", "s05"]
        assert s.count("alice", "bob") == 25 and s.count("alice") == 50
    assert LISTING_BYTES <= 4 * 1024 * 1024


def test_a_full_database_raises_storage_full_and_stores_nothing_it_acknowledged(tmp_path):
    """SQLite's max_page_count makes the file "full" exactly as a full disk
    does (SQLITE_FULL): every deliver() that returned is stored; the first
    that does not fit raises StorageFull, and so does the rest of its batch."""
    path = tmp_path / "small.db"
    with MailStore(path, max_db_bytes=120_000) as s:
        s.add_user("alice", "pw")
        acknowledged = []
        with pytest.raises(StorageFull, match="storage full"):
            for i in range(100):
                s.deliver("alice", "alice", f"s{i}", "x" * 4_000)
                acknowledged.append(f"s{i}")
        assert 5 < len(acknowledged) < 100
        futures = [s.submit("alice", "alice", f"batch{i}", "y" * 4_000) for i in range(5)]
        errors = [f.exception(timeout=10) for f in futures]
        assert all(isinstance(e, StorageFull) for e in errors), errors
        assert str(path) not in str(errors[0])                     # the reply names no path
    with MailStore(path) as s:                                     # reopened, without the cap
        assert [m.subject for m in s.messages("alice")] == acknowledged
        s.deliver("alice", "alice", "room again", "x")


def test_a_new_database_and_its_wal_files_are_readable_by_the_owner_only(tmp_path):
    path = tmp_path / "private.db"
    with MailStore(path) as s:
        s.add_user("alice", "pw")
        s.deliver("alice", "alice", "hi", "x")
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["private.db", "private.db-shm", "private.db-wal"]
        for p in tmp_path.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_an_existing_database_keeps_its_mode(tmp_path):
    path = tmp_path / "shared.db"
    MailStore(path).close()
    os.chmod(path, 0o640)                                          # the owner chose this
    MailStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("kind", ["no such folder", "a folder", "not a database"])
def test_a_path_that_cannot_be_opened_is_named(tmp_path, kind):
    path = {"no such folder": tmp_path / "nope" / "mail.db", "a folder": tmp_path,
            "not a database": tmp_path / "junk.db"}[kind]
    if kind == "not a database":
        path.write_bytes(b"this is not SQLite " * 100)
    with pytest.raises(StoreOpenError, match="cannot open the mail database " + str(path)):
        MailStore(path)


def test_a_mail_that_cannot_be_stored_fails_alone_and_the_rest_keep_their_order():
    """Mails to known recipients go in with multi-row INSERTs; if one of
    them cannot be stored (text SQLite cannot encode), only it fails and the
    others are stored, in the order they were submitted."""
    with MailStore(scrypt_n=16, quota_messages=None, quota_bytes=None) as s:
        s.add_user("ann", "pw")
        s.add_user("bob", "pw")
        s.deliver("ann", "bob", "first", "x")          # bob is a known recipient from now on
        futures = [s.submit("ann", "bob", f"m{i}", "bad \ud800" if i == 6 else "ok") for i in range(13)]
        failed = [i for i, f in enumerate(futures) if f.exception(timeout=10) is not None]
        assert failed == [6]
        assert [m.subject for m in s.messages("bob")] == ["first"] + [f"m{i}" for i in range(13) if i != 6]
