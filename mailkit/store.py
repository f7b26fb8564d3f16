"""Users, login sessions and stored mail, kept in one SQLite database.

Durability: the server replies OK as soon as ``deliver()`` returns, so the
message must be on disk by then. The connection runs in autocommit mode (each
statement is its own committed transaction); a file database uses
``journal_mode=WAL`` (a commit appends to one log, readers never block the
writer) with ``synchronous=FULL`` (that log is fsynced on every commit).

Group commit: an fsync costs as much as the rest of a delivery, so every
delivery joins ONE queue, and ONE writer thread commits whatever has queued
up in one transaction (one fsync) while the next deliveries queue behind it.
``submit()`` queues a mail and returns a ``concurrent.futures.Future`` that
the writer completes after the commit that holds it (a server can reply from
the future's callback without a thread waiting per mail); ``deliver()`` is
``submit()`` and wait.  Either way the result is known only once the mail
is on disk. Touching a session's idle timer is the one write that skips the
fsync (see ``session_user``): losing it to a power cut only ends a session
a little early, and the next mail's fsync makes it durable anyway.

Sessions: every command checks its session id, so the store keeps the
sessions it created or looked up in memory (id -> user, last used) and
checks them there; the writer writes a restarted idle timer in its next
transaction.  Sessions are created, ended and expired through the store
(one server per database file), which keeps memory and table in step.

Threads: ONE connection (``check_same_thread=False``) for every write,
guarded by one ``threading.Lock`` taken around every piece of SQL on it.
A file store has a second connection, with a lock of its own, for reads
(WAL lets them run while a commit waits for its fsync, so checking a session
id never waits for someone else's mail to reach the disk).  ``":memory:"``
has only the one connection: a second would see a different, empty database. Password hashing (~50 ms of
scrypt) runs outside the lock so one login never stalls every other thread.
Nothing is ever pickled, and every query is parameterised.

A class server is shared, so the store sets limits: a mailbox holds at most
``quota_messages`` messages and ``quota_bytes`` bytes of subjects and bodies
(:class:`MailboxFull` past that; the usage is counted in memory, loaded once
per user from the database); a listing (``messages()`` with ``limit`` and
``max_bytes``) stops early, so a full mailbox read four times at once does
not take the server's memory; a full disk raises :class:`StorageFull` (the
message is not stored, and says so); a new database file is created
readable by its owner only (0600; SQLite gives its ``-wal`` and ``-shm``
files the same mode).
"""
from __future__ import annotations

import copy
import hashlib
from concurrent.futures import Future
import hmac
import os
import secrets
import sqlite3
import sys
import threading
import time

from mailkit.protocol import Message, validate_username

__all__ = [
    "SESSION_TTL_S", "SCRYPT_N", "SCRYPT_R", "SCRYPT_P",
    "QUOTA_MESSAGES", "QUOTA_BYTES", "LISTING_MESSAGES", "LISTING_BYTES",
    "StoreError", "StoreOpenError", "UserExists", "UnknownUser", "MailboxFull", "StorageFull",
    "StorageCapReached", "ANY", "MAIL_OVERHEAD_BYTES", "message_size",
    "SessionError", "UnknownSession", "SessionExpired",
    "hash_password", "verify_password", "MailStore",
]

# Sliding expiry: a session dies 30 minutes after its LAST use, long enough for
# a lab with pauses, short enough that a forgotten session id goes stale.
SESSION_TTL_S = 30 * 60
# A session's idle timer is written at most this often (and never more coarsely
# than 1% of the TTL): a student sending ten mails a second costs one write a
# second, not ten, and a session lives at most 1 s less than its TTL says.
TOUCH_RESOLUTION_S = 1.0
# OWASP's recommended scrypt cost: ~50 ms and 16 MiB per hash, which makes
# guessing passwords from a stolen database file expensive.  A MailStore takes
# another N (``scrypt_n=``) for tests and benchmarks that log in thousands of
# times; every hash string names its own cost, so either store verifies both.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# Each scrypt hash needs 16 MiB (128 * N * r bytes) for its ~50 ms: a class of
# 300 logging in at once would make the server take 5 GB (measured: 200 at
# once took 1.4 GB).  At most HASH_SLOTS hashes run at a time; the others wait
# their turn, which costs no time overall, since hashing keeps every core busy.
HASH_SLOTS = max(2, os.cpu_count() or 2)


class _HashSlots:
    """At most HASH_SLOTS hashes at a time (a context manager), and their
    16 MiB buffers given back to the system after each hash.

    glibc's malloc raises its mmap threshold when a big block is freed, so
    from the second hash on, each thread's 16 MiB buffer comes from that
    thread's heap arena and stays there: a login storm on 200 worker threads
    kept 270 MB after it was over (measured; 460 MB at its peak).  Fixing
    the threshold at 1 MiB (``mallopt(M_MMAP_THRESHOLD)``, once, on glibc
    only) makes every such buffer an mmap that is unmapped when freed: the
    same storm peaked at 59 MB and kept 2 MB."""

    M_MMAP_THRESHOLD = -3

    def __init__(self, slots: int):
        self._sem = threading.BoundedSemaphore(slots)
        self._tuned = False

    def _tune(self) -> None:
        self._tuned = True
        if not sys.platform.startswith("linux"):
            return
        try:
            import ctypes  # noqa: PLC0415 - only where glibc may be
            ctypes.CDLL(None).mallopt(self.M_MMAP_THRESHOLD, 1 << 20)
        except (OSError, AttributeError, TypeError):   # not glibc (musl has no mallopt): as is
            pass

    def __enter__(self):
        if not self._tuned:
            self._tune()
        self._sem.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self._sem.release()


_hash_slots = _HashSlots(HASH_SLOTS)
SALT_BYTES = 16          # 128 random bits: no two users ever share a salt
HASH_BYTES = 32          # 256-bit derived key, far beyond brute force
SESSION_DIGITS = 10      # session ids are 10 decimal digits, easy to type in a lab
SESSION_ID_ATTEMPTS = 20  # a collision is ~1 in 10**10; 20 in a row means a bug
# The writer thread waits this long for the next mail before it ends (a new
# one starts with the next mail): under load it never ends, idle it costs nothing.
WRITER_LINGER_S = 1.0
BUSY_TIMEOUT_MS = 5000   # wait up to 5 s when another process holds the write lock
SCHEMA_VERSION = 1       # kept in PRAGMA user_version; bump when the tables change
# A mailbox's quota, for a class of 300 on one server: 300 full mailboxes
# are 3 GB of disk at most, and a student who keeps everything from a whole
# course (a few hundred short mails) never meets it.
QUOTA_MESSAGES = 1_000
QUOTA_BYTES = 10 * 1024 * 1024        # subjects and bodies, UTF-8
# One listing (the reply to getmsg or dump) holds at most this much: the
# oldest messages first, and the reply says how many more there are.  The
# bytes bound the server's memory (a full mailbox read four times at once);
# the count is the quota's, so only big mail makes a listing stop early.
LISTING_MESSAGES = QUOTA_MESSAGES
LISTING_BYTES = 2 * 1024 * 1024
_SQLITE_FULL = 13
# ``delmsg`` with this as SENDER or SUBJECT matches any (docs/protocol.md):
# ``*`` is never a user name, and a 2017 client can send it as typed.
ANY = "*"
# What one stored mail costs the database beyond its subject and body (its
# row's other columns, the index entry), counted against ``max_mail_bytes``.
MAIL_OVERHEAD_BYTES = 200
# Mails inserted by one statement at most (5 values each: under SQLite's
# oldest limit of 999 values per statement).  A group goes in as statements
# of 128, 64, ... 2, 1 rows (its size in binary), so that at most 8
# different statements are prepared and cached (one per size of group kept
# 8 MB more in the 200x20 benchmark).
INSERT_ROWS = 128
_INSERT_MANY: dict[int, str] = {}     # rows (a power of two) -> "INSERT ... VALUES (?, ...), ..."

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, recipient TEXT NOT NULL, sender TEXT NOT NULL,
    subject TEXT NOT NULL, body TEXT NOT NULL, sent_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_recipient_sender ON messages (recipient, sender);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, created_at REAL NOT NULL, last_used REAL NOT NULL);
PRAGMA user_version = {SCHEMA_VERSION};
"""


class StoreError(Exception):
    """Base of every error raised by the store."""


class UserExists(StoreError):
    """add_user() was asked for a name that is already taken."""


class StoreOpenError(StoreError):
    """The database file cannot be opened or created (the message names the path)."""


class UnknownUser(StoreError):
    """The named user does not exist."""


class MailboxFull(StoreError):
    """The recipient's mailbox is at its quota: the message was not stored."""


class StorageFull(StoreError):
    """The disk (or the database's size limit) is full: nothing was stored."""


class StorageCapReached(StorageFull):
    """The mail in the database has reached ``max_mail_bytes``: this mail
    was not stored (logins, sessions and deletions still work)."""


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "is full" in str(exc))


def _storage_full(path: str) -> StorageFull:
    # The text reaches clients: it names no path (the log has the cause).
    return StorageFull("storage full: the server's disk is full, nothing was stored "
                       "(tell whoever runs the server)")


class SessionError(StoreError):
    """Base of the errors meaning "this session id cannot be used"."""


class UnknownSession(SessionError):
    """No session has this id (never created, ended, or expired and removed)."""


class SessionExpired(SessionError):
    """The session was idle for longer than the store's session TTL."""


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # scrypt needs about 128*r*(n + p) bytes; allow twice that, since
    # OpenSSL's default limit (32 MiB) is barely above what N=2**14 needs.
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=2 * 128 * r * (n + p), dklen=HASH_BYTES)


def hash_password(password: str, *, salt: bytes | None = None, n: int = SCRYPT_N) -> str:
    """Hash ``password`` with salted scrypt (a fresh 16-byte salt unless given),
    as ``"scrypt$N$r$p$<salt hex>$<hash hex>"``: the string names its own cost,
    so old hashes still verify if the defaults change.  *n* is scrypt's cost
    (a power of two; the default is the real one)."""
    if not isinstance(password, str):
        raise TypeError(f"password must be a str, got {type(password).__name__}")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored`` (a ``hash_password()`` result),
    compared in constant time; ValueError if ``stored`` is malformed."""
    parts = stored.split("$")
    try:
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError:
        raise ValueError(f"bad password hash {stored[:40]!r}: expected "
                         "'scrypt$N$r$p$<salt hex>$<hash hex>'") from None
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def _dummy_hash(n: int) -> str:
    """Checked for an unknown user, so that "no such user" costs the same
    scrypt as "wrong password" and the timing does not reveal which names exist."""
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${'00' * SALT_BYTES}${'00' * HASH_BYTES}"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _create_private(path: str) -> None:
    """Create the database file readable and writable by its owner only
    (0600), if it does not exist yet; SQLite creates its -wal and -shm files
    with the same mode.  StoreOpenError, naming the path, if it cannot."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreOpenError(f"cannot open the mail database {path}: {exc.strerror or exc}") from None
    os.close(fd)


def _own_copy(exc: BaseException) -> BaseException:
    try:
        return copy.copy(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot be copied is raised as is
        return exc


class _Delivery:
    """One message waiting for the commit that holds it."""

    __slots__ = ("message", "params", "inserted", "error", "future", "size", "then")

    def __init__(self, message: Message, then=None):
        m = self.message = message
        self.then = then
        self.size = message_size(m.subject, m.body)
        # INSERT ... SELECT ?, ?, ?, ?, ? WHERE EXISTS (user ?): see _commit
        self.params = (m.recipient, m.sender, m.subject, m.body, m.sent_at, m.recipient)
        self.inserted, self.error = 0, None
        self.future: Future = Future()

    def outcome(self) -> Message | Exception:
        """After its commit: the message stored, or the exception that kept it out."""
        if self.error is not None:
            return self.error
        if not self.inserted:
            return UnknownUser(f"no user named {self.message.recipient!r}")
        return self.message


def message_size(subject: str, body: str) -> int:
    """What a message counts against its recipient's quota (and the sender's
    budget): its subject and body in UTF-8 bytes.  Asked for every mail: an
    ASCII text (most mail) is as many bytes as characters, which ``isascii``
    tells without encoding a copy (a 16 KB body cost 2 us to encode)."""
    return ((len(subject) if subject.isascii() else len(subject.encode("utf-8", "surrogatepass")))
            + (len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))))


class MailStore:
    """Users, login sessions and mailboxes in one SQLite database.

    ``path`` is a file name, or ``":memory:"`` for a throw-away store;
    ``session_ttl`` is the idle time (seconds) after which a session expires;
    ``clock`` returns the time in seconds (tests pass a fake one to move time);
    ``scrypt_n`` is the password-hash cost of new hashes (the default is the
    real one; tests pass a cheap one such as 16);
    ``quota_messages`` and ``quota_bytes`` bound each mailbox (None: no bound);
    ``max_db_bytes`` caps the whole database file (SQLite's ``max_page_count``:
    past it, StorageFull, as on a full disk); ``max_mail_bytes`` is the lower
    cap a class server sets: past it new mail gets StorageCapReached, while
    the room left below ``max_db_bytes`` keeps logins and deletions working.
    Safe to share between threads. Use it in ``with`` or call ``close()``.
    StoreOpenError if the file cannot be opened or created.
    """

    def __init__(self, path: str | os.PathLike = ":memory:", *,
                 session_ttl: float = SESSION_TTL_S, clock=time.time, scrypt_n: int = SCRYPT_N,
                 quota_messages: int | None = QUOTA_MESSAGES, quota_bytes: int | None = QUOTA_BYTES,
                 max_db_bytes: int | None = None, max_mail_bytes: int | None = None):
        self.path = os.fspath(path)
        self.session_ttl = session_ttl
        self.scrypt_n = scrypt_n
        self._dummy_hash = _dummy_hash(scrypt_n)
        self.quota_messages, self.quota_bytes = quota_messages, quota_bytes
        self.max_mail_bytes = max_mail_bytes
        self._usage: dict[str, list[int]] = {}   # user -> [messages, bytes], under _lock
        # Users known to exist (mailkit never deletes one), under _lock: their
        # mail needs no look-up of the user (see _commit).
        self._known_users: set[str] = set()
        self._touch_every = min(TOUCH_RESOLUTION_S, session_ttl / 100)
        # The sessions this store has created or looked up: id -> [user,
        # last used], so that checking a session id (every command) needs no
        # SQL; under _sessions_lock.  Sessions are created, ended and expired
        # only through the store, which keeps this and the table in step.
        self._sessions: dict[str, list] = {}
        self._sessions_lock = threading.Lock()
        # Idle timers restarted but not written yet: id -> when; under
        # _group.  The writer writes them in its next transaction.
        self._touches: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()
        # Group commit (see submit): the queue and its writer thread, under _group.
        self._group = threading.Condition(threading.Lock())
        self._queue: list[_Delivery] = []
        self._writer: threading.Thread | None = None
        self._closing = False
        self._in_commit = 0             # mails in the commit under way
        self._commits = 0               # group commits so far (see stats)
        self._durable = self.path != ":memory:"
        if self._durable:
            _create_private(self.path)
        # isolation_level=None is autocommit: a statement is committed (and,
        # with synchronous=FULL, fsynced) before execute() returns.
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreOpenError(f"cannot open the mail database {self.path}: {exc}") from None
        try:
            if self.path != ":memory:":
                self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")
            version = self._one("PRAGMA user_version")[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {version}, but this "
                                 f"mailkit knows only version {SCHEMA_VERSION} (upgrade mailkit)")
            self._conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            if max_db_bytes is not None:    # per connection: the writer's is the one that counts
                page = self._conn.execute("PRAGMA page_size").fetchone()[0]
                self._conn.execute(f"PRAGMA max_page_count = {max(1, int(max_db_bytes) // page)}")
            self._read_conn, self._read_lock = self._conn, self._lock
            if self._durable:
                self._read_conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                self._read_lock = threading.Lock()
                self._read_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._read_conn.execute("PRAGMA query_only = 1")
        except BaseException as exc:
            self._conn.close()
            self._conn = None
            if isinstance(exc, sqlite3.DatabaseError):    # not a database, unreadable, read-only...
                raise StoreOpenError(f"cannot open the mail database {self.path}: {exc}") from None
            raise

    # All SQL goes through these: _run needs self._lock held; _one and _all take it.
    def _run(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        if self._conn is None:
            raise StoreError(f"the store {self.path!r} is closed")
        try:
            return self._conn.execute(sql, params)
        except sqlite3.OperationalError as exc:
            if _is_full(exc):
                raise _storage_full(self.path) from exc
            raise

    def _one(self, sql: str, params: tuple = ()) -> tuple | None:
        with self._lock:
            return self._run(sql, params).fetchone()

    def _all(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._run(sql, params).fetchall()

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A query on the read connection.  fetchall() ends the statement, and
        with it the read transaction, so the next read sees every commit."""
        with self._read_lock:
            if self._read_conn is None:
                raise StoreError(f"the store {self.path!r} is closed")
            return self._read_conn.execute(sql, params).fetchall()

    # -- users -----------------------------------------------------------
    def add_user(self, name: str, password: str, *, replace: bool = False) -> None:
        """Create user ``name`` (ValueError if the name is bad). If it exists:
        UserExists, or with ``replace=True`` its password is reset."""
        validate_username(name)
        with _hash_slots:  # slow, so outside the lock
            password_hash = hash_password(password, n=self.scrypt_n)
        with self._lock:
            try:
                self._run("INSERT INTO users VALUES (?, ?, ?)",
                          (name, password_hash, self._clock()))
            except sqlite3.IntegrityError:
                if not replace:
                    raise UserExists(f"a user named {name!r} already exists") from None
                self._run("UPDATE users SET password_hash = ? WHERE name = ?",
                          (password_hash, name))

    def has_user(self, name: str) -> bool:
        """True if a user called ``name`` exists."""
        return bool(self._read("SELECT 1 FROM users WHERE name = ?", (name,)))

    def users(self) -> list[str]:
        """All user names, sorted."""
        return sorted(name for (name,) in self._read("SELECT name FROM users"))

    def check_password(self, name: str, password: str) -> bool:
        """True if ``password`` is right for ``name``; False if wrong or no such user."""
        rows = self._read("SELECT password_hash FROM users WHERE name = ?", (name,))
        row = rows[0] if rows else None
        # Outside the lock, and spent even for an unknown user (see _dummy_hash).
        with _hash_slots:
            matches = verify_password(password, row[0] if row else self._dummy_hash)
        return matches and row is not None

    # -- sessions --------------------------------------------------------
    def create_session(self, user: str) -> str:
        """Log ``user`` in: return a new 10-digit session id. UnknownUser if no such user."""
        now = self._clock()
        with self._group:
            touches, self._touches = self._touches, {}
        with self._lock:
            if self._run("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is None:
                with self._group:                   # not written: the writer will
                    self._touches = {**touches, **self._touches}
                raise UnknownUser(f"no user named {user!r}")
            # Housekeeping: forget sessions that have already expired (after
            # writing the idle timers restarted since the last commit).
            self._write_touches(touches)
            self._run("DELETE FROM sessions WHERE last_used < ?", (now - self.session_ttl,))
            for _ in range(SESSION_ID_ATTEMPTS):
                session_id = f"{secrets.randbelow(10**SESSION_DIGITS):0{SESSION_DIGITS}d}"
                try:
                    self._run("INSERT INTO sessions VALUES (?, ?, ?, ?)",
                              (session_id, user, now, now))
                    break
                except sqlite3.IntegrityError:
                    continue  # that id is taken: draw another
            else:
                raise StoreError(f"no free session id after {SESSION_ID_ATTEMPTS} attempts")
        with self._sessions_lock:
            for sid in [sid for sid, (_, used) in self._sessions.items() if used < now - self.session_ttl]:
                del self._sessions[sid]
            self._sessions.setdefault(session_id, [user, now])
        return session_id

    def session_user(self, session_id: str) -> str:
        """The user of ``session_id``; each call restarts its idle timer (to within
        TOUCH_RESOLUTION_S, see there). Raises
        UnknownSession, or SessionExpired (and then forgets the session).

        A session this store has seen is checked in memory; its idle timer
        is written by the writer thread in its next transaction, without
        anyone waiting for it (a crash that loses it makes the session
        expire a little early, nothing worse)."""
        now = self._clock()
        with self._sessions_lock:
            entry = self._sessions.get(session_id)
            if entry is None:       # not seen yet (e.g. after a restart), or a bad id
                rows = self._read("SELECT user, last_used FROM sessions WHERE id = ?", (session_id,))
                if not rows:
                    raise UnknownSession(f"unknown session id {session_id} (log in again)")
                entry = self._sessions[session_id] = list(rows[0])
            user, last_used = entry
            expired = now - last_used > self.session_ttl
            if expired:
                del self._sessions[session_id]
            touch = not expired and now - last_used >= self._touch_every
            if touch:
                entry[1] = now
        if expired:
            # (Outside _sessions_lock: a look-up meanwhile finds the row
            # expired too, since the table is never ahead of the memory.)
            with self._lock:
                self._run("DELETE FROM sessions WHERE id = ?", (session_id,))
            raise SessionExpired(f"session {session_id} expired after "
                                 f"{self.session_ttl / 60:g} minutes idle (log in again)")
        if touch:
            with self._group:
                self._touches[session_id] = now
                writer = self._wake_writer()
            if writer is not None:
                self._start(writer)
        return user

    def _write_touches(self, touches: dict[str, float] | None, *, in_transaction: bool = False) -> None:
        """Write restarted idle timers (self._lock held).  A touch that cannot
        be written is dropped (its session expires a little early), unless
        its failure ended the transaction it was part of: then it raises."""
        if not touches:
            return
        try:
            self._conn.executemany("UPDATE sessions SET last_used = max(last_used, ?) WHERE id = ?",
                                   [(when, sid) for sid, when in touches.items()])
        except sqlite3.Error:
            if in_transaction and not self._conn.in_transaction:
                raise

    def end_session(self, session_id: str) -> None:
        """Log out: forget ``session_id``. Ending an unknown session is not an error."""
        with self._sessions_lock:
            self._sessions.pop(session_id, None)
            with self._lock:
                self._run("DELETE FROM sessions WHERE id = ?", (session_id,))

    # -- messages --------------------------------------------------------
    def deliver(self, sender: str, recipient: str, subject: str, body: str) -> Message:
        """Store a message; it is on disk when this returns. UnknownUser if no such recipient.

        Deliveries from several threads share commits (group commit, see the
        module docstring)."""
        return self.submit(sender, recipient, subject, body).result()

    def submit(self, sender: str, recipient: str, subject: str, body: str, *, then=None) -> Future:
        """Queue a message for the next group commit and return at once.

        The future's result is the :class:`Message` once its commit is on
        disk, or its exception is what kept the mail out (UnknownUser for no
        such recipient).  With *then*, a function, the future's result is
        ``then(outcome)`` instead, where *outcome* is that Message or
        exception (if ``then`` raises, that is the future's exception): a
        caller that turns the outcome into a reply needs no second future.
        Callbacks added to it (and *then*) run in the writer thread: they
        must be quick and must not block."""
        mine = _Delivery(Message(sender, recipient, subject, body, self._clock()), then)
        with self._group:
            if self._closing or self._conn is None:
                mine.future.set_exception(StoreError(f"the store {self.path!r} is closed"))
                return mine.future
            self._queue.append(mine)
            writer = self._wake_writer()
        if writer is not None:
            self._start(writer)
        return mine.future

    def _wake_writer(self) -> threading.Thread | None:
        """Wake the writer for what was just queued (self._group held); if
        there is none, return a new one for the caller to start (outside
        the lock, with _start)."""
        if self._writer is not None:
            self._group.notify()
            return None
        self._writer = threading.Thread(
            target=self._write, daemon=True, name=f"MailStore-writer-{os.path.basename(self.path)}")
        return self._writer

    def _start(self, writer: threading.Thread) -> None:
        try:
            writer.start()
        except BaseException as exc:    # no thread: fail this queue, let the next mail try again
            with self._group:
                group, self._queue, self._writer = self._queue, [], None
            for d in group:
                d.future.set_exception(StoreError(f"the mail was not stored: {exc}"))

    def _write(self) -> None:
        """The writer thread: commit what has queued up, again and again;
        end after WRITER_LINGER_S with nothing to do (or when closed)."""
        group: list[_Delivery] = []
        try:
            while True:
                with self._group:
                    if not self._queue and not self._touches and not self._closing:
                        self._group.wait(WRITER_LINGER_S)
                    group, self._queue = self._queue, []
                    touches, self._touches = self._touches, {}
                    if not group and not touches:   # decided under the lock: submit() starts a new writer
                        self._writer = None
                        self._group.notify_all()    # close() waits for this
                        return
                    self._in_commit, self._commits = len(group), self._commits + bool(group)
                if group:
                    self._commit(group, touches)
                else:
                    self._commit_touches(touches)
                with self._group:
                    self._in_commit = 0
                self._settle(group)
                group = []
        finally:
            self._settle(group)         # interrupted: no future is left waiting
            with self._group:
                if self._writer is threading.current_thread():
                    self._writer = None
                    self._group.notify_all()

    def stats(self) -> dict:
        """The group commit at a glance (for tests and the curious):
        ``commits`` so far, mails ``waiting`` for theirs (queued or in the
        commit under way), and whether a ``writer`` thread is alive."""
        with self._group:
            return {"commits": self._commits, "waiting": len(self._queue) + self._in_commit,
                    "writer": self._writer is not None}

    def durability(self) -> dict:
        """How the writing connection keeps mail safe, as SQLite reports it:
        ``journal_mode`` ("wal" for a file), ``synchronous`` (2 is FULL: an
        fsync on every commit) and the ``schema_version``."""
        with self._lock:
            return {"journal_mode": self._run("PRAGMA journal_mode").fetchone()[0],
                    "synchronous": self._run("PRAGMA synchronous").fetchone()[0],
                    "schema_version": self._run("PRAGMA user_version").fetchone()[0]}

    @staticmethod
    def _settle(group: list[_Delivery]) -> None:
        for d in group:
            if d.future.done():
                continue
            outcome = d.outcome()
            if isinstance(outcome, Exception):
                outcome = _own_copy(outcome)        # each caller its own object
            if d.then is not None:
                try:
                    outcome = d.then(outcome)
                except Exception as exc:  # noqa: BLE001 - the future's exception
                    outcome = exc
            if isinstance(outcome, Exception):
                d.future.set_exception(outcome)
            else:
                d.future.set_result(outcome)

    def _commit_touches(self, touches: dict[str, float]) -> None:
        """Only idle timers to write: one transaction without an fsync of
        its own (the next mail's makes it durable)."""
        with self._lock:
            if self._conn is None:
                return
            try:
                if self._durable:
                    self._run("PRAGMA synchronous = NORMAL")
                try:
                    self._run("BEGIN IMMEDIATE")
                    self._write_touches(touches)
                    self._run("COMMIT")
                finally:
                    if self._conn.in_transaction:
                        self._conn.rollback()
                    if self._durable:
                        self._run("PRAGMA synchronous = FULL")
            except (sqlite3.Error, StoreError):
                pass            # not written: those sessions expire a little early

    def _commit(self, group: list[_Delivery], touches: dict[str, float] | None = None) -> None:
        """Insert *group* in one transaction and commit it (one fsync); mark
        each delivery done, with the error that kept it out if there was one.

        Mails to recipients known to exist go in with one multi-row INSERT
        (up to INSERT_ROWS at a time; one statement instead of one per mail,
        so the writer gives up and takes back the interpreter once, not per
        mail); a mail to a recipient not seen yet checks that the user exists
        in the same statement that inserts it.  Either way, in order."""
        with self._lock:
            added: dict[str, list[int]] = {}      # usage this commit adds, per recipient
            batch: list[_Delivery] = []           # known recipients, not inserted yet
            try:
                self._run("BEGIN IMMEDIATE")
                self._write_touches(touches, in_transaction=True)
                room = self._mail_room()
                for d in group:
                    recipient = d.message.recipient
                    extra = added.setdefault(recipient, [0, 0])
                    try:
                        if room is not None:
                            room -= d.size + MAIL_OVERHEAD_BYTES
                            if room < 0:
                                raise self._cap_reached()
                        self._check_quota(recipient, extra, d.size)   # MailboxFull
                    except Exception as exc:  # noqa: BLE001 - this delivery fails, not the group
                        self._failed(d, exc)
                        continue
                    if recipient in self._known_users:
                        batch.append(d)         # counted now, taken back if it fails
                        extra[0] += 1
                        extra[1] += d.size
                        if len(batch) == INSERT_ROWS:
                            self._insert_many(batch, added)
                            batch = []
                    else:
                        if batch:
                            self._insert_many(batch, added)
                            batch = []
                        self._insert_one(d, extra)
                if batch:
                    self._insert_many(batch, added)
                self._run("COMMIT")
                for user, (n, size) in added.items():
                    usage = self._usage.get(user)
                    if usage is not None:
                        usage[0] += n
                        usage[1] += size
            except BaseException as exc:  # nothing of the group is stored
                failure = exc if isinstance(exc, Exception) else StoreError(
                    "the commit was interrupted: the message was not stored")
                for d in group:
                    d.error = failure
                try:
                    if self._conn is not None and self._conn.in_transaction:
                        self._conn.rollback()
                except sqlite3.Error:
                    pass
                if not isinstance(exc, Exception):
                    raise     # Ctrl-C in the committing thread stops that thread only

    def _mail_room(self) -> int | None:
        """Bytes of mail that still fit under ``max_mail_bytes`` (None: no
        cap): the pages in use (not on the free list) count.  (self._lock held.)"""
        if self.max_mail_bytes is None:
            return None
        pages = self._run("PRAGMA page_count").fetchone()[0] - self._run("PRAGMA freelist_count").fetchone()[0]
        return self.max_mail_bytes - pages * self._run("PRAGMA page_size").fetchone()[0]

    def _cap_reached(self) -> StorageCapReached:
        # The text reaches clients: the server's cap, nothing about anyone's mailbox.
        return StorageCapReached(
            f"storage full: the server's mail storage is at its cap ({_mb(self.max_mail_bytes)}), "
            "nothing was stored (tell whoever runs the server)")

    def _failed(self, d: _Delivery, exc: Exception) -> None:
        """*d* is not stored because of *exc*; re-raise if the whole group
        fails with it.  (self._lock held, in a transaction.)"""
        d.error = exc
        if not self._conn.in_transaction:
            raise exc     # SQLite rolled everything back: the group fails
        if isinstance(exc, StorageFull) and not isinstance(exc, StorageCapReached):
            raise exc     # the rest would not fit either: the group fails

    def _insert_one(self, d: _Delivery, extra: list[int]) -> None:
        """Insert *d* if its recipient exists (one statement checks and
        inserts); count it in *extra*.  (self._lock held, in a transaction.)"""
        try:
            d.inserted = self._run(
                "INSERT INTO messages (recipient, sender, subject, body, sent_at) "
                "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM users WHERE name = ?)",
                d.params).rowcount
        except Exception as exc:  # noqa: BLE001 - this delivery fails, not the group
            self._failed(d, exc)
            return
        if d.inserted:
            extra[0] += 1
            extra[1] += d.size
            self._known_users.add(d.message.recipient)

    def _insert_many(self, batch: list[_Delivery], added: dict[str, list[int]]) -> None:
        """Insert *batch* (recipients known to exist, already counted in
        *added*, at most INSERT_ROWS) with one statement per power of two in
        its size, in order.  If a statement fails and the transaction lives
        on, SQLite has undone just that statement: its mails are tried one
        by one, so that only the one at fault fails.
        (self._lock held, in a transaction.)"""
        start = 0
        while start < len(batch):
            rows = 1 << ((len(batch) - start).bit_length() - 1)
            chunk = batch[start:start + rows]
            start += rows
            sql = _INSERT_MANY.get(rows)
            if sql is None:
                sql = _INSERT_MANY[rows] = (
                    "INSERT INTO messages (recipient, sender, subject, body, sent_at) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?)"] * rows))
            try:
                self._run(sql, tuple(value for d in chunk for value in d.params[:5]))
            except Exception as exc:  # noqa: BLE001
                if not self._conn.in_transaction or isinstance(exc, StorageFull):
                    raise       # the group fails
                for d in chunk:
                    extra = added[d.message.recipient]
                    extra[0] -= 1
                    extra[1] -= d.size
                    self._insert_one(d, extra)
                continue
            for d in chunk:
                d.inserted = 1

    def _check_quota(self, recipient: str, extra: list[int], size: int) -> None:
        """MailboxFull if one more message of *size* bytes (after *extra*
        already in this commit) would go over *recipient*'s quota.  (self._lock held.)"""
        if self.quota_messages is None and self.quota_bytes is None:
            return
        usage = self._usage.get(recipient)
        if usage is None:
            row = self._run(
                "SELECT COUNT(*), COALESCE(SUM(length(CAST(subject AS BLOB)) + length(CAST(body AS BLOB))), 0) "
                "FROM messages WHERE recipient = ?", (recipient,)).fetchone()
            if not row[0] and self._run("SELECT 1 FROM users WHERE name = ?", (recipient,)).fetchone() is None:
                return                      # no such user: the INSERT says so
            usage = self._usage[recipient] = [row[0], row[1]]
            self._known_users.add(recipient)
        n, used = usage[0] + extra[0], usage[1] + extra[1]
        if ((self.quota_messages is not None and n + 1 > self.quota_messages)
                or (self.quota_bytes is not None and used + size > self.quota_bytes)):
            # The text reaches the SENDER: it says nothing of what is in the
            # recipient's mailbox (how many, how big), only that it is full.
            raise MailboxFull(f"mailbox full: {recipient} cannot receive mail until they delete some")

    def usage(self, user: str) -> tuple[int, int]:
        """``(messages, bytes)`` in *user*'s mailbox (bytes of subjects and bodies)."""
        with self._lock:
            usage = self._usage.get(user)
            if usage is not None:
                return tuple(usage)
            row = self._run(
                "SELECT COUNT(*), COALESCE(SUM(length(CAST(subject AS BLOB)) + length(CAST(body AS BLOB))), 0) "
                "FROM messages WHERE recipient = ?", (user,)).fetchone()
        return row[0], row[1]

    def messages(self, recipient: str, sender: str | None = None, *,
                 limit: int | None = None, max_bytes: int | None = None) -> list[Message]:
        """``recipient``'s messages (only those from ``sender`` if given), oldest first.

        With *limit* and/or *max_bytes*, stop after that many messages or once
        their subjects and bodies reach that many bytes (at least one message
        is returned, however big): a listing for a reply, read without loading
        the whole mailbox.  ``count()`` says how many there are in all."""
        sql = "SELECT sender, recipient, subject, body, sent_at FROM messages WHERE recipient = ?"
        params: tuple = (recipient,)
        if sender is not None:
            sql, params = sql + " AND sender = ?", (recipient, sender)
        sql += " ORDER BY id"
        if limit is None and max_bytes is None:
            return [Message(*row) for row in self._read(sql, params)]
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, limit)
        found, size = [], 0
        with self._read_lock:
            if self._read_conn is None:
                raise StoreError(f"the store {self.path!r} is closed")
            cursor = self._read_conn.execute(sql, params)
            try:
                for row in cursor:
                    size += message_size(row[2], row[3])
                    if found and max_bytes is not None and size > max_bytes:
                        break
                    found.append(Message(*row))
            finally:
                cursor.close()          # ends the read transaction (see _read)
        return found

    def count(self, recipient: str, sender: str | None = None) -> int:
        """How many messages ``recipient`` has (from ``sender``, if given)."""
        if sender is None:
            return self._read("SELECT COUNT(*) FROM messages WHERE recipient = ?", (recipient,))[0][0]
        return self._read("SELECT COUNT(*) FROM messages WHERE recipient = ? AND sender = ?",
                          (recipient, sender))[0][0]

    def delete(self, recipient: str, sender: str, subject: str) -> int:
        """Delete ``recipient``'s messages with this sender and subject; return how many.
        ``ANY`` (``"*"``) as *sender* or *subject* matches every one: ``delete(user,
        ANY, ANY)`` empties the mailbox in one statement."""
        sql, params = "DELETE FROM messages WHERE recipient = ?", [recipient]
        if sender != ANY:
            sql, params = sql + " AND sender = ?", params + [sender]
        if subject != ANY:
            sql, params = sql + " AND subject = ?", params + [subject]
        with self._lock:
            self._usage.pop(recipient, None)      # counted again at its next delivery
            return self._run(sql, tuple(params)).rowcount

    def listing_plan(self, recipient: str, sender: str | None = None, *,
                     limit: int | None = None, max_bytes: int | None = None) -> list[tuple[int, int]]:
        """``(id, bytes)`` of the messages ``messages(recipient, sender, limit=,
        max_bytes=)`` would return, without reading them into Python: a
        listing is then read and sent in pieces (``messages_between``)."""
        sql = ("SELECT id, length(CAST(subject AS BLOB)) + length(CAST(body AS BLOB)) "
               "FROM messages WHERE recipient = ?")
        params: tuple = (recipient,)
        if sender is not None:
            sql, params = sql + " AND sender = ?", (recipient, sender)
        sql += " ORDER BY id"
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, limit)
        plan, size = [], 0
        for row in self._read(sql, params):
            size += row[1]
            if plan and max_bytes is not None and size > max_bytes:
                break
            plan.append(row)
        return plan

    def messages_between(self, recipient: str, sender: str | None, first: int, last: int) -> list[Message]:
        """``recipient``'s messages (from ``sender``, if given) with ids from
        *first* to *last*, oldest first (one piece of a listing_plan)."""
        sql = ("SELECT sender, recipient, subject, body, sent_at FROM messages "
               "WHERE recipient = ? AND id BETWEEN ? AND ?")
        params: tuple = (recipient, first, last)
        if sender is not None:
            sql, params = sql + " AND sender = ?", (*params, sender)
        return [Message(*row) for row in self._read(sql + " ORDER BY id", params)]

    # -- lifetime --------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, then close the database. Safe to call more than once."""
        with self._group:
            self._closing = True
            self._group.notify_all()
            while self._writer is not None and self._writer is not threading.current_thread():
                self._group.wait()
        with self._read_lock:
            if self._read_conn is not None and self._read_conn is not self._conn:
                self._read_conn.close()
            self._read_conn = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> MailStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
