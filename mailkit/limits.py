"""Limits that keep one student from taking a class server from the others.

Four small, independent pieces, each with its own lock, an injectable
``clock`` (tests pass a fake one) and a bound on the memory it keeps, so
that a flood of made-up keys (user names, addresses) cannot grow it for as
long as the flood lasts:

* :class:`RateLimiter`: a token bucket per key ("at most *rate* a second,
  bursts of *burst*"); the server uses one per address for bad session ids.
* :class:`LoginThrottle`: wrong passwords slow down the one (user, address)
  pair that sent them, with a delay that doubles, never a lock-out: the right
  password from another address is never refused.  A per-user delay, applied
  only to addresses that have themselves sent a wrong password for that
  user, bounds an attacker who spreads guesses over many addresses.
* :class:`ConnectionSlots`: open connections per address (at most
  ``per_address``) and in all; when few slots are left, the connections that
  have been idle longest are named for closing, so a flood of silent
  connections never stops the next student from being served.
* :func:`session_tag`: a short, non-reversible tag of a session id for the
  log, so that whoever reads the log cannot take the session.
* :func:`login_name_too_long`: a look at a request's first bytes that
  refuses a login whose user name cannot be valid before anything (the
  throttle, the log, the password hash) sees it.

:class:`ClassLimits` bundles them with the defaults for a class of 300; the
servers take one (``MailServer(limits=...)``), and ``python -m mailkit
serve`` has a flag for each number.

Standard library only; nothing here touches a socket.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from .protocol import CHECKSUM_LEN, SESSION_ID_LEN

__all__ = ["RateLimiter", "LoginThrottle", "ConnectionSlots", "ClassLimits", "session_tag",
           "login_name_too_long", "MAX_TRACKED", "MAX_USERNAME"]

# Keys any one table remembers.  A key whose state says nothing any more (a
# full bucket, a forgiven failure) is dropped first; past the bound the
# least recently used goes, which at worst forgets one attacker's history
# early; it never refuses anyone.
MAX_TRACKED = 10_000

_SECRET = secrets.token_bytes(32)    # per process: tags differ between runs
MAX_USERNAME = 32                    # protocol.USERNAME_RE: a letter, then up to 31 more
_HEX = frozenset(b"0123456789abcdef")
_NAME_CHARS = re.compile(rb"[A-Za-z0-9_.-]+")


def login_name_too_long(data: bytes, max_len: int = MAX_USERNAME) -> bool:
    """True if *data* is a login (``USER:PASSWORD``, not a command frame)
    whose user name is longer than any valid one: its first ``max_len + 1``
    bytes are all name characters.  Looks at those and the last 41 only: a
    1 MB name costs nothing, and the caller answers before the throttle, the
    log or scrypt see it.  (Other bytes go to the parser, which names what
    is wrong; a name with other characters can never log in either.)"""
    head = data[:SESSION_ID_LEN + 1]
    if len(head) == SESSION_ID_LEN + 1 and head[:-1].isdigit() and head[-1:] == b":":
        return False                                    # a command frame
    tail = data[-CHECKSUM_LEN - 1:]
    if len(data) > CHECKSUM_LEN and tail[:1] == b"#" and set(tail[1:]) <= _HEX:
        return False                                    # a damaged frame: it gets its KO
    return len(data) > max_len and _NAME_CHARS.fullmatch(data[:max_len + 1]) is not None


def session_tag(session_id: str, secret: bytes = _SECRET) -> str:
    """A 6-hex-digit tag for *session_id* in log lines: the same id gives the
    same tag (so a log still shows which requests shared a session), but the
    tag does not give the id back (HMAC-SHA256 with a per-process secret; a
    guesser would need the secret, and then 10**10 tries)."""
    mac = hmac.new(secret, session_id.encode("utf-8", "replace"), hashlib.sha256)
    return "s:" + mac.hexdigest()[:6]


class _Table:
    """An LRU dict bounded to *max_keys*: ``prune(keep)`` drops the entries
    for which ``keep(value)`` is False first, then the oldest."""

    def __init__(self, max_keys: int):
        self.max_keys = max_keys
        self.d: OrderedDict = OrderedDict()
        self._prune_at = max_keys

    def get(self, key, default=None):
        value = self.d.get(key, default)
        if key in self.d:
            self.d.move_to_end(key)
        return value

    def put(self, key, value, matters) -> None:
        self.d[key] = value
        self.d.move_to_end(key)
        if len(self.d) > self._prune_at:
            for k in [k for k, v in self.d.items() if not matters(v)]:
                del self.d[k]
            while len(self.d) > self.max_keys:
                self.d.popitem(last=False)
            # Pruning is O(n): the next one waits until the table has grown
            # by half of the bound again (O(1) per put on average).
            self._prune_at = len(self.d) + max(1, self.max_keys // 2)

    def pop(self, key) -> None:
        self.d.pop(key, None)

    def __len__(self) -> int:
        return len(self.d)


class RateLimiter:
    """A token bucket per key: each ``hit(key)`` takes a token; tokens come
    back at *rate* a second up to *burst*.  ``wait_time(key)`` is 0 while the
    key has a token, else the seconds until it has one again.  Sustained,
    a key gets at most *rate* hits a second."""

    def __init__(self, rate: float, burst: float, *, clock=time.monotonic, max_keys: int = MAX_TRACKED):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = float(rate), float(burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets = _Table(max_keys)      # key -> (tokens, at)

    def _tokens(self, key, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def wait_time(self, key) -> float:
        with self._lock:
            tokens = self._tokens(key, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def hit(self, key) -> None:
        """Take one token (the bucket may go below zero: then the key waits longer)."""
        now = self._clock()
        with self._lock:
            tokens = max(self._tokens(key, now) - 1, -self.burst)
            self._buckets.put(key, (tokens, now), lambda v: self._tokens_at(v, self._clock()) < self.burst)

    def _tokens_at(self, value, now: float) -> float:
        tokens, at = value
        return tokens + (now - at) * self.rate

    def allow(self, key) -> bool:
        """``hit(key)`` if the key has a token, and say whether it had."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens < 1:
                return False
            self._buckets.put(key, (tokens - 1, now), lambda v: self._tokens_at(v, self._clock()) < self.burst)
            return True

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Slows password guessing without ever locking the right password out.

    Per (user, address): the first ``free`` wrong passwords cost nothing;
    after that each one makes that pair wait ``base_delay`` seconds, doubling
    with every further failure, up to ``max_delay``.  A right password from
    that pair clears its record; a pair that stays quiet for ``forget_after``
    seconds is forgiven.  Another address is not affected: alice, typing her
    password on her own laptop, is served while a neighbour guesses hers.

    Per user: failures from every address are counted too (one is forgiven
    every ``user_leak`` seconds); past ``user_free`` of them, the same
    doubling delay applies to the user, but only at addresses that have
    themselves sent a wrong password for that user.  An attacker spreading
    guesses over A addresses thus gets about A + free guesses quickly, then
    one per delay, whatever A is.

    ``wait_time(user, address)`` says how long to refuse (0: check the
    password); ``failed`` and ``succeeded`` record the outcome of a check.
    """

    FREE = 3                  # a student mistyping twice or three times waits for nothing
    BASE_DELAY_S = 1.0
    MAX_DELAY_S = 60.0
    FORGET_AFTER_S = 15 * 60.0
    USER_FREE = 10
    USER_LEAK_S = 30.0        # one failure forgiven per this many seconds

    def __init__(self, *, clock=time.monotonic, free: int | None = None,
                 base_delay: float | None = None, max_delay: float | None = None,
                 forget_after: float | None = None, user_free: int | None = None,
                 user_leak: float | None = None, max_keys: int = MAX_TRACKED):
        self.free = self.FREE if free is None else free
        self.base_delay = self.BASE_DELAY_S if base_delay is None else base_delay
        self.max_delay = self.MAX_DELAY_S if max_delay is None else max_delay
        self.forget_after = self.FORGET_AFTER_S if forget_after is None else forget_after
        self.user_free = self.USER_FREE if user_free is None else user_free
        self.user_leak = self.USER_LEAK_S if user_leak is None else user_leak
        self._clock = clock
        self._lock = threading.Lock()
        self._pairs = _Table(max_keys)        # (user, address) -> _Failures
        self._users = _Table(max_keys)        # user -> _Failures (count decays)

    def delay(self, failures: int, free: int) -> float:
        """The wait after *failures* wrong passwords, the first *free* of them free."""
        over = failures - free
        if over <= 0:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** min(over - 1, 30))

    def _user_count(self, f: _Failures, now: float) -> int:
        return max(0, f.count - int((now - f.last) / self.user_leak))

    def wait_time(self, user: str, address) -> float:
        """Seconds before *address* may try a password for *user* again."""
        now = self._clock()
        with self._lock:
            pair = self._pairs.get((user, address))
            if pair is None or now - pair.last > self.forget_after:
                return 0.0              # this address has not failed: no delay at all
            wait = pair.last + self.delay(pair.count, self.free) - now
            u = self._users.get(user)
            if u is not None:
                wait = max(wait, u.last + self.delay(self._user_count(u, now), self.user_free) - now)
        return max(0.0, wait)

    def failed(self, user: str, address) -> None:
        now = self._clock()
        with self._lock:
            pair = self._pairs.get((user, address))
            count = 1 if pair is None or now - pair.last > self.forget_after else pair.count + 1
            self._pairs.put((user, address), _Failures(count, now), self._pair_matters)
            u = self._users.get(user)
            ucount = 1 if u is None else self._user_count(u, now) + 1
            self._users.put(user, _Failures(ucount, now), self._user_matters)

    def succeeded(self, user: str, address) -> None:
        with self._lock:
            self._pairs.pop((user, address))

    def _pair_matters(self, f: _Failures) -> bool:
        return self._clock() - f.last <= self.forget_after

    def _user_matters(self, f: _Failures) -> bool:
        return self._user_count(f, self._clock()) > 0

    def tracked(self) -> int:
        """How many entries it holds (pairs and users): bounded by 2 * max_keys."""
        with self._lock:
            return len(self._pairs) + len(self._users)


class ConnectionSlots:
    """Open connections, per address and in all.

    ``open(key, address)`` admits a connection (``key`` is anything hashable
    and unique, e.g. the socket) and returns ``(admitted, to_close)``:
    refused if *address* already holds ``per_address`` connections or every
    slot is taken by connections that are not idle; *to_close* lists the
    connections to drop first, oldest-idle first, when fewer than
    ``reserve`` slots would be left.  A connection counts as idle when
    nothing happened on it (``active(key)``) for ``idle_after`` seconds and
    it is not being answered (``active(key, busy=True)``: never dropped).
    ``close(key)`` frees its slot (safe for a key never admitted).
    """

    def __init__(self, *, total: int = 512, per_address: int = 32, reserve: int | None = None,
                 idle_after: float = 0.5, clock=time.monotonic):
        if per_address < 1 or total < 1:
            raise ValueError("total and per_address must be >= 1")
        self.total, self.per_address = total, per_address
        self.reserve = max(1, total // 8) if reserve is None else reserve
        self.idle_after = idle_after
        self._clock = clock
        self._lock = threading.Lock()
        self._conns: OrderedDict = OrderedDict()    # key -> (address, last active, busy); oldest first
        self._per: dict = {}                        # address -> open count

    def open(self, key, address) -> tuple[bool, list]:
        now = self._clock()
        with self._lock:
            if self._per.get(address, 0) >= self.per_address:
                return False, []
            to_close = []
            free = self.total - len(self._conns)
            if free <= self.reserve:
                want = self.reserve - free + 1
                for k, (_, last, busy) in self._conns.items():    # oldest activity first
                    if len(to_close) >= want or now - last < self.idle_after:
                        break
                    if not busy:
                        to_close.append(k)
                for k in to_close:
                    self._drop(k)
                if len(self._conns) >= self.total:
                    return False, to_close
            self._conns[key] = (address, now, False)
            self._per[address] = self._per.get(address, 0) + 1
            return True, to_close

    def active(self, key, *, busy: bool = False) -> None:
        """Something happened on *key*: it is not idle (moves to the back);
        with *busy*, it is being answered and is never dropped (until the
        next ``active(key)`` without it: waiting again)."""
        now = self._clock()
        with self._lock:
            entry = self._conns.get(key)
            if entry is not None:
                self._conns[key] = (entry[0], now, busy)
                self._conns.move_to_end(key)

    def close(self, key) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key) -> None:
        entry = self._conns.pop(key, None)
        if entry is not None:
            n = self._per[entry[0]] - 1
            if n:
                self._per[entry[0]] = n
            else:
                del self._per[entry[0]]

    def count(self, address=None) -> int:
        """Open connections: from *address*, or in all."""
        with self._lock:
            return len(self._conns) if address is None else self._per.get(address, 0)


@dataclass
class ClassLimits:
    """Every limit of a class server, with defaults for a class of 300.

    * connections: at most ``per_address`` open from one address, and
      ``max_connections`` in all; when fewer than ``reserve`` are free, the
      longest idle are closed to make room;
    * logins: :class:`LoginThrottle` with ``login_free`` free wrong
      passwords per (user, address), then a doubling delay up to
      ``login_max_delay`` seconds;
    * session ids: at most ``guesses_per_s`` bad session ids a second from
      one address (bursts of ``guess_burst``).

    The live objects (``throttle``, ``guesses``, ``slots``) are made from
    the numbers; pass ``clock`` to move time in a test.
    """

    per_address: int = 32
    max_connections: int = 512
    reserve: int | None = None          # default: an eighth of max_connections
    idle_after: float = 0.5
    login_free: int = LoginThrottle.FREE
    login_max_delay: float = LoginThrottle.MAX_DELAY_S
    guesses_per_s: float = 20.0
    guess_burst: float = 40.0
    clock: object = field(default=time.monotonic, repr=False)

    def __post_init__(self):
        self.throttle = LoginThrottle(clock=self.clock, free=self.login_free,
                                      max_delay=self.login_max_delay)
        self.guesses = RateLimiter(self.guesses_per_s, self.guess_burst, clock=self.clock)
        self.slots = ConnectionSlots(total=self.max_connections, per_address=self.per_address,
                                     reserve=(max(1, self.max_connections // 8) if self.reserve is None
                                              else min(self.reserve, self.max_connections - 1)),
                                     idle_after=self.idle_after, clock=self.clock)
