"""Limits that keep one student from taking a class server from the others.

Small, independent pieces, each with its own lock, an injectable
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

Issue 21 ("no student can hurt a classmate": a class sits behind a few
addresses, so limits follow the logged-in user, a network, or the server):

* :class:`SenderLimits`: a mail rate and a daily byte budget per sender,
  and a smaller share of both per (sender, recipient);
* :class:`FairSlots`: the password hashes, one per core, handed to the
  waiting addresses in turn; with ``ClassLimits.hashes`` (a RateLimiter of
  hashes per address over every user name) and the LoginThrottle's
  new-address allowance per user, refusals cost no hash;
* :class:`GuessCeiling`: bad session ids the whole server checks a second;
* :func:`prefix`: the /24 (IPv4) or /64 (IPv6) that ConnectionSlots caps;
* :class:`ReplyBudget`: bytes of listing pieces built but not yet sent;
* :class:`RefusalLog` and :class:`LogCap`: one log line per address per
  minute for refusals, and at most so many bytes of log an hour.

:class:`ClassLimits` bundles them with the defaults for a class of 300; the
servers take one (``MailServer(limits=...)``), and ``python -m mailkit
serve`` has a flag for each number.

Standard library only; nothing here touches a socket.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass, field

from .protocol import CHECKSUM_LEN, SESSION_ID_LEN

__all__ = ["RateLimiter", "LoginThrottle", "ConnectionSlots", "ClassLimits", "session_tag",
           "login_name_too_long", "MAX_TRACKED", "MAX_USERNAME", "SenderLimits", "FairSlots",
           "GuessCeiling", "ReplyBudget", "RefusalLog", "LogCap", "prefix"]

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

    def wait_time(self, key, cost: float = 1) -> float:
        """0 while *key* has *cost* tokens, else the seconds until it has."""
        # Asked for every request (bad session ids per address): a key with
        # no record has a full bucket, which one dict look-up tells (no lock:
        # a look-up is atomic, and a record made meanwhile counts next time).
        if key not in self._buckets.d and cost <= self.burst:
            return 0.0
        with self._lock:
            tokens = self._tokens(key, self._clock())
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate

    def hit(self, key, cost: float = 1) -> None:
        """Take *cost* tokens (the bucket may go below zero: then the key waits longer)."""
        now = self._clock()
        with self._lock:
            tokens = max(self._tokens(key, now) - cost, -self.burst)
            self._buckets.put(key, (tokens, now), self._matters)

    def _matters(self, value) -> bool:
        tokens, at = value
        return tokens + (self._clock() - at) * self.rate < self.burst

    def allow(self, key, cost: float = 1) -> bool:
        """``hit(key, cost)`` if the key has *cost* tokens, and say whether it had."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens < cost:
                return False
            self._buckets.put(key, (tokens - cost, now), self._matters)
            return True

    def give_back(self, key, cost: float = 1) -> None:
        """Return *cost* tokens taken by ``allow`` (the work they paid for did not happen)."""
        now = self._clock()
        with self._lock:
            self._buckets.put(key, (min(self.burst, self._tokens(key, now) + cost), now), self._matters)

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
    # Wrong passwords for one user from addresses that have never logged in
    # as that user: 10, then one per 30 s (120 an hour, where a fresh address
    # per guess got 81,000 an hour); past them such addresses are refused
    # before the hash.  An address that has logged in as the user (within
    # KNOWN_FOR_S) is not counted, so alice on her own laptop is checked at
    # once while 2,000 addresses guess her password; right passwords cost
    # nothing, so a class logging in together is never refused.
    NEW_ADDRESS_BURST = 10
    NEW_ADDRESS_EVERY_S = 30.0
    KNOWN_FOR_S = 7 * 24 * 3600.0    # a week: the labs of one course week

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
        self._known = _Table(max_keys)        # (user, address) -> last login there
        self.fresh = RateLimiter(1 / self.NEW_ADDRESS_EVERY_S, self.NEW_ADDRESS_BURST,
                                 clock=clock, max_keys=max_keys)

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
        if address is not None and not self.known(user, address):
            self.fresh.hit(user)
        now = self._clock()
        with self._lock:
            pair = self._pairs.get((user, address))
            count = 1 if pair is None or now - pair.last > self.forget_after else pair.count + 1
            self._pairs.put((user, address), _Failures(count, now), self._pair_matters)
            u = self._users.get(user)
            ucount = 1 if u is None else self._user_count(u, now) + 1
            self._users.put(user, _Failures(ucount, now), self._user_matters)

    def known(self, user: str, address) -> bool:
        """True if *address* has logged in as *user* within KNOWN_FOR_S."""
        with self._lock:
            at = self._known.get((user, address))
        return at is not None and self._clock() - at <= self.KNOWN_FOR_S

    def admit(self, user: str, address) -> float:
        """Before a password check: 0 (check it) or the seconds to refuse:
        an address not known for *user* waits while the wrong passwords from
        such addresses are past the user's allowance.  (Ask again just before
        hashing: failures may have come in meanwhile.)"""
        if address is None or self.known(user, address):
            return 0.0
        return self.fresh.wait_time(user)

    def succeeded(self, user: str, address) -> None:
        with self._lock:
            self._pairs.pop((user, address))
            if address is not None:
                self._known.put((user, address), self._clock(), self._known_matters)

    def _known_matters(self, at: float) -> bool:
        return self._clock() - at <= self.KNOWN_FOR_S

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
                 idle_after: float = 0.5, clock=time.monotonic, per_prefix: int | None = None):
        if per_address < 1 or total < 1 or (per_prefix is not None and per_prefix < 1):
            raise ValueError("total, per_address and per_prefix must be >= 1")
        self.total, self.per_address = total, per_address
        self.per_prefix = total if per_prefix is None else per_prefix
        self._per_net: dict = {}                    # prefix -> open count
        self._nets: dict = {}                       # address -> prefix(address), at most MAX_TRACKED
        self.reserve = max(1, total // 8) if reserve is None else reserve
        self.idle_after = idle_after
        self._clock = clock
        self._lock = threading.Lock()
        self._conns: OrderedDict = OrderedDict()    # key -> (address, last active, busy, prefix); oldest first
        self._per: dict = {}                        # address -> open count

    def open(self, key, address) -> tuple[bool, list]:
        now = self._clock()
        with self._lock:
            if self._per.get(address, 0) >= self.per_address:
                return False, []
            net = self._nets.get(address)
            if net is None:             # (prefix() of every connection's address: remembered)
                if len(self._nets) >= MAX_TRACKED:
                    self._nets.clear()
                net = self._nets[address] = prefix(address)
            if self._per_net.get(net, 0) >= self.per_prefix:
                return False, []
            to_close = []
            free = self.total - len(self._conns)
            if free <= self.reserve:
                want = self.reserve - free + 1
                for k, (_, last, busy, _) in self._conns.items():    # oldest activity first
                    if len(to_close) >= want or now - last < self.idle_after:
                        break
                    if not busy:
                        to_close.append(k)
                for k in to_close:
                    self._drop(k)
                if len(self._conns) >= self.total:
                    return False, to_close
            self._conns[key] = (address, now, False, net)
            self._per[address] = self._per.get(address, 0) + 1
            self._per_net[net] = self._per_net.get(net, 0) + 1
            return True, to_close

    def active(self, key, *, busy: bool = False) -> None:
        """Something happened on *key*: it is not idle (moves to the back);
        with *busy*, it is being answered and is never dropped (until the
        next ``active(key)`` without it: waiting again)."""
        now = self._clock()
        with self._lock:
            entry = self._conns.get(key)
            if entry is not None:
                self._conns[key] = (entry[0], now, busy, entry[3])
                self._conns.move_to_end(key)

    def close(self, key) -> None:
        with self._lock:
            self._drop(key)

    def replace(self, old, new) -> None:
        """*new* takes *old*'s slot (a socket wrapped in TLS), as it was."""
        with self._lock:
            entry = self._conns.pop(old, None)
            if entry is not None:
                self._conns[new] = entry

    def _drop(self, key) -> None:
        entry = self._conns.pop(key, None)
        if entry is not None:
            per, per_net, address, net = self._per, self._per_net, entry[0], entry[3]
            n = per[address] - 1
            if n:
                per[address] = n
            else:
                del per[address]
            n = per_net[net] - 1
            if n:
                per_net[net] = n
            else:
                del per_net[net]

    def count(self, address=None) -> int:
        """Open connections: from *address*, or in all."""
        with self._lock:
            return len(self._conns) if address is None else self._per.get(address, 0)

    def count_prefix(self, address) -> int:
        """Open connections from *address*'s network (see :func:`prefix`)."""
        with self._lock:
            return self._per_net.get(prefix(address), 0)


def prefix(address) -> str:
    """The network an address belongs to, for the per-prefix connection cap:
    its /24 for IPv4 (``127.0.1.0/24``), its /64 for IPv6 (one host's usual
    share), the address itself for anything else (a test's made-up key).
    Called for every connection: a dotted IPv4 address takes a string
    split (0.3 µs, where ipaddress takes 17), anything else is cached."""
    if not isinstance(address, str):
        return str(address)
    head, dot, last = address.rpartition(".")
    if dot and last.isdigit() and head.count(".") == 2 and ":" not in head:
        return head + ".0/24"
    return _prefix_slow(address)


@lru_cache(maxsize=4096)
def _prefix_slow(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


def _wait_text(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{math.ceil(seconds / 60)} min"
    return f"{math.ceil(seconds / 3600)} h"


def _every_text(rate: float) -> str:
    every = 1 / rate
    return f"{every:g} s" if every < 120 else f"{every / 60:g} min"


class SenderLimits:
    """How much mail one sender (the logged-in user, wherever they connect
    from) may send: a mail rate and a daily byte budget, and for each
    recipient a smaller share of both.

    Four token buckets, checked together under one lock (a mail takes from
    all four or from none):

    * the sender's mails: ``mail_burst`` at once, then one per ``1/mail_rate`` s;
    * the sender's bytes (subject and body): ``bytes_per_day``, refilled
      evenly over a day;
    * the pair's (sender, recipient) mails and bytes: the same with
      ``pair_burst``/``pair_rate`` and ``pair_bytes_per_day``.

    ``check(sender, recipient, size)`` returns None (send it; the tokens are
    taken) or the refusal, which names the sender's own limit and never
    anything about the recipient's mailbox.
    """

    DAY_S = 24 * 3600.0

    def __init__(self, *, mail_burst: float, mail_rate: float, bytes_per_day: float,
                 pair_burst: float, pair_rate: float, pair_bytes_per_day: float,
                 clock=time.monotonic, max_keys: int = MAX_TRACKED):
        # (burst, rate a second) of: a sender's mails, its bytes; a pair's mails, its bytes
        self.limits = ((mail_burst, mail_rate), (bytes_per_day, bytes_per_day / self.DAY_S),
                       (pair_burst, pair_rate), (pair_bytes_per_day, pair_bytes_per_day / self.DAY_S))
        self._clock = clock
        self._lock = threading.Lock()
        # sender -> (mails, bytes, when); (sender, recipient) -> the same: one
        # entry, one look-up for both buckets of a key
        self._senders = _Table(max_keys)
        self._pairs = _Table(max_keys)

    def check(self, sender: str, recipient: str, size: int) -> str | None:
        """None (the tokens are taken: send it) or the refusal.  One lock,
        one clock reading and one look-up per key for the four buckets, no
        function call on the way to yes: this runs for every mail, in the
        server's event loop (four RateLimiters cost 26 us a mail; this 1.5)."""
        size = size if size > 1 else 1
        now = self._clock()
        (mb, mr), (bb, br), (pb, pr), (qb, qr) = self.limits
        with self._lock:
            senders = self._senders.d
            mine = senders.get(sender)
            if mine is None:
                mails, nbytes = mb, bb
            else:
                mails, nbytes, at = mine
                mails += (now - at) * mr
                mails = mails if mails < mb else mb
                nbytes += (now - at) * br
                nbytes = nbytes if nbytes < bb else bb
            if mails < 1 or nbytes < size:
                self._senders.get(sender)           # (refused: still the most recently used)
                if mails < 1:
                    return self._refusal(0, recipient, 1, (1 - mails) / mr)
                return self._refusal(1, recipient, size, (size - nbytes) / br)
            if sender != recipient:     # mail to oneself hurts no classmate: only the sender's own limits
                pairs, key = self._pairs.d, (sender, recipient)
                pair = pairs.get(key)
                if pair is None:
                    pmails, pbytes = pb, qb
                else:
                    pmails, pbytes, at = pair
                    pmails += (now - at) * pr
                    pmails = pmails if pmails < pb else pb
                    pbytes += (now - at) * qr
                    pbytes = pbytes if pbytes < qb else qb
                if pmails < 1 or pbytes < size:
                    self._senders.get(sender)       # (refused: both still the most recently used)
                    self._pairs.get(key)
                    if pmails < 1:
                        return self._refusal(2, recipient, 1, (1 - pmails) / pr)
                    return self._refusal(3, recipient, size, (size - pbytes) / qr)
                if pair is None:                    # a new key: the table may need pruning
                    self._pairs.put(key, (pmails - 1, pbytes - size, now), self._matters)
                else:
                    pairs[key] = (pmails - 1, pbytes - size, now)
                    pairs.move_to_end(key)
            # (taken only now: a mail refused by the pair's limit costs the sender nothing)
            if mine is None:
                self._senders.put(sender, (mails - 1, nbytes - size, now), self._matters)
            else:
                senders[sender] = (mails - 1, nbytes - size, now)
                senders.move_to_end(sender)
        return None

    def _matters(self, value) -> bool:
        return self._clock() - value[2] < self.DAY_S       # a day later every bucket is full again

    def _refusal(self, n: int, recipient: str, cost: float, wait: float) -> str:
        burst, rate = self.limits[n]
        if cost > burst:
            return f"ERROR: sending limit: this mail is bigger than your {_mb(burst)} a day"
        why = (f"you have sent {burst:g} mails in a short time (your limit: {burst:g} at once, "
               f"then one every {_every_text(rate)})",
               f"you have sent your {_mb(burst)} of mail for today (your limit per day)",
               f"you have sent {recipient} {burst:g} mails in a short time (your limit per "
               f"recipient: {burst:g} at once, then one every {_every_text(rate)})",
               f"you have sent {recipient} your {_mb(burst)} of mail for today (your limit "
               f"per recipient and day)")[n]
        return f"ERROR: sending limit: {why}; try again in {_wait_text(wait)}"


def _mb(n: float) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n / 1024:g} KB"


class FairSlots:
    """At most *slots* holders at a time (the password hashes: one per
    core), handed out in turn to the keys (addresses) that wait, one each,
    round robin: an address that sends 32 logins at once waits behind its
    own, not in front of everyone else's.

        with slots.hold(address):
            ...                       # at most `slots` threads in here
    """

    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self._lock = threading.Lock()
        self._free = slots
        self._waiting: OrderedDict = OrderedDict()    # key -> deque of threading.Event

    def acquire(self, key) -> None:
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return
            ticket = threading.Event()
            self._waiting.setdefault(key, deque()).append(ticket)
        ticket.wait()           # release() always hands the slot on: no timeout needed

    def release(self) -> None:
        with self._lock:
            if not self._waiting:
                self._free += 1
                return
            key, queue = next(iter(self._waiting.items()))
            ticket = queue.popleft()
            del self._waiting[key]
            if queue:
                self._waiting[key] = queue      # to the back: the next key goes first
        ticket.set()

    def waiting(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._waiting.values())

    @contextmanager
    def hold(self, key):
        self.acquire(key)
        try:
            yield
        finally:
            self.release()


class GuessCeiling:
    """A ceiling on the bad session ids the whole server checks a second.

    Every bad id takes a token from one bucket (``rate`` a second, bursts of
    ``burst``).  While it is empty, a request from an address that sent a bad
    id within ``memory_s`` seconds is refused without checking its id; an
    address that has sent none (the honest client, whose ids are good) is
    checked as always.  Many addresses guessing together thus get at most
    ``rate`` checks a second, plus one per address per ``memory_s``."""

    def __init__(self, rate: float, burst: float, *, memory_s: float = 60.0,
                 clock=time.monotonic, max_keys: int = MAX_TRACKED):
        self.bucket = RateLimiter(rate, burst, clock=clock, max_keys=4)
        self.memory_s = memory_s
        self._clock = clock
        self._lock = threading.Lock()
        self._bad = _Table(max_keys)          # address -> last bad id

    def wait_time(self, address) -> float:
        # Asked for every request with a session id: while no address has
        # sent a bad id (a server's usual state) it answers without the
        # bucket's lock and clock (1 us a request).
        if not len(self._bad):
            return 0.0
        wait = self.bucket.wait_time("*")
        if wait <= 0:
            return 0.0
        with self._lock:
            at = self._bad.get(address)
        return wait if at is not None and self._clock() - at <= self.memory_s else 0.0

    def bad(self, address) -> None:
        self.bucket.hit("*")
        now = self._clock()
        with self._lock:
            self._bad.put(address, now, lambda at: self._clock() - at <= self.memory_s)


class ReplyBudget:
    """Bytes of replies built but not yet taken by the kernel, in all and
    per address: a listing is sent in pieces, and each piece first reserves
    its size here (waiting up to *timeout* for room), so unread replies hold
    at most ``total`` bytes of the server's memory, and one address at most
    ``per_address`` of them."""

    def __init__(self, total: int, per_address: int):
        self.total, self.per_address = total, per_address
        self._cond = threading.Condition(threading.Lock())
        self._held = 0
        self._per: dict = {}
        self.peak = 0

    def acquire(self, address, n: int, timeout: float) -> bool:
        n = min(n, self.per_address)            # a piece bigger than the share still goes, alone
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._held + n > self.total
                   or self._per.get(address, 0) + n > self.per_address):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            self._held += n
            self._per[address] = self._per.get(address, 0) + n
            self.peak = max(self.peak, self._held)
            return True

    def release(self, address, n: int) -> None:
        n = min(n, self.per_address)
        with self._cond:
            self._held -= n
            left = self._per.get(address, 0) - n
            if left > 0:
                self._per[address] = left
            else:
                self._per.pop(address, None)
            self._cond.notify_all()

    def held(self) -> int:
        with self._cond:
            return self._held


class RefusalLog:
    """One log line per address per minute for refused requests: the first
    refusal in a minute is logged as usual, the others only counted, and the
    count is logged (``summary``) when that address's minute is over.

    ``note(address)`` says whether to log this refusal now and returns the
    summaries due (of any address) to log first.  Bounded like the other
    tables; a flood of made-up addresses at worst loses some counts."""

    def __init__(self, window_s: float = 60.0, *, clock=time.monotonic, max_keys: int = MAX_TRACKED):
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._windows = _Table(max_keys)       # address -> [start, suppressed]
        self._next_sweep = 0.0

    def note(self, address) -> tuple[bool, list[str]]:
        now = self._clock()
        with self._lock:
            due = self._sweep(now) if now >= self._next_sweep else []
            w = self._windows.get(address)
            if w is None or now - w[0] >= self.window_s:
                if w is not None and w[1]:
                    due.append(self._summary(address, w))
                self._windows.put(address, [now, 0], lambda v: v[1] > 0)
                return True, due
            w[1] += 1
            return False, due

    def flush(self) -> list[str]:
        """Every count not logged yet (the server is stopping)."""
        with self._lock:
            due = [self._summary(a, w) for a, w in self._windows.d.items() if w[1]]
            self._windows.d.clear()
            return due

    def _sweep(self, now: float) -> list[str]:
        self._next_sweep = now + self.window_s / 4
        due = []
        for address, w in list(self._windows.d.items()):
            if now - w[0] >= self.window_s:
                if w[1]:
                    due.append(self._summary(address, w))
                del self._windows.d[address]
        return due

    def _summary(self, address, w) -> str:
        return (f"{address}: {w[1]} more refused request{'' if w[1] == 1 else 's'} "
                f"in the {self.window_s:g} s after the one logged")


class LogCap(logging.Filter):
    """A logging filter that lets at most ``bytes_per_hour`` of log text
    through each hour; past that it drops lines, says so once, and says how
    many it dropped when the next hour starts.  A night of attacks then
    costs at most that much disk an hour."""

    def __init__(self, bytes_per_hour: int, *, clock=time.monotonic):
        super().__init__()
        self.cap = bytes_per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._hour_start = clock()
        self._used = 0
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        size = len(record.getMessage()) + 40            # the time and name the format adds
        now = self._clock()
        with self._lock:
            if now - self._hour_start >= 3600:
                if self.dropped:
                    record.msg = (f"(log cap: {self.dropped} lines dropped in the last hour) "
                                  + str(record.msg))
                self._hour_start, self._used, self.dropped = now, 0, 0
            if self._used + size <= self.cap:
                self._used += size
                return True
            self.dropped += 1
            if self.dropped == 1:
                record.msg = (f"log cap of {self.cap / 2**20:g} MB an hour reached: further lines "
                              f"this hour are dropped (--log-mb-per-hour)")
                record.args = ()
                return True
            return False


# -- the defaults of a class server (docs/instructor.md, "Limits", has the arithmetic) --

# Mail per sender: 500 at once (a lab's loop of test mails, ten times over;
# the test suite's 17 sessions of one user sending 20 each), then one every
# 10 s (360 an hour); 20 MB a day (twenty 1 MB mails).  An honest student
# sends tens of mails in a lab; these stop a script that would fill every
# mailbox (200,000 mails) or the disk.
SENDER_MAIL_BURST = 500
SENDER_MAIL_EVERY_S = 10.0
SENDER_BYTES_PER_DAY = 20 * 2**20
# Mail per sender and recipient: 200 at once, then one every 5 min (288 a
# day); 2 MB a day.  A fifth of a mailbox's quota (1,000 messages, 10 MB):
# one classmate alone cannot fill another's mailbox in a day (200 + 288).
PAIR_MAIL_BURST = 200
PAIR_MAIL_EVERY_S = 300.0
PAIR_BYTES_PER_DAY = 2 * 2**20
# Password hashes per address, over every user name (an unknown name costs
# the same hash): 60 at once (a class behind a NAT logging in together),
# then 2 a second.  Each hash is ~50 ms of a core.
HASHES_BURST = 60
HASHES_PER_S = 2.0
HASH_SLOTS = max(2, os.cpu_count() or 2)     # hashes at once: one per core (as the store's)
# Bad session ids the whole server checks: 50 a second, bursts of 500 (a
# class whose sessions all expired at once).  With 300 sessions alive, a
# 3-hour lab at the ceiling gives guessers a 1.6 % chance (was 59 %).
GUESS_CEILING_PER_S = 50.0
GUESS_CEILING_BURST = 500.0
# Replies built but not read yet (listings go in pieces): 64 MB in all, 8 MB
# per address (four 2 MB dumps).  512 unread 2 MB dumps held 647 MB before.
REPLY_BYTES = 64 * 2**20
REPLY_BYTES_PER_ADDRESS = 8 * 2**20
# Open connections from one /24 (IPv4) or /64 (IPv6): a quarter of the
# server, so three other networks are always served.
PER_PREFIX = 128


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
    per_prefix: int = PER_PREFIX
    hashes_per_s: float = HASHES_PER_S
    hashes_burst: float = HASHES_BURST
    guess_ceiling_per_s: float = GUESS_CEILING_PER_S
    guess_ceiling_burst: float = GUESS_CEILING_BURST
    bind_sessions: bool = False          # a session id works only from the address that logged in
    sender_mail_burst: float = SENDER_MAIL_BURST
    sender_mail_every_s: float = SENDER_MAIL_EVERY_S
    sender_bytes_per_day: float = SENDER_BYTES_PER_DAY
    pair_mail_burst: float = PAIR_MAIL_BURST
    pair_mail_every_s: float = PAIR_MAIL_EVERY_S
    pair_bytes_per_day: float = PAIR_BYTES_PER_DAY
    reply_bytes: int = REPLY_BYTES
    reply_bytes_per_address: int = REPLY_BYTES_PER_ADDRESS
    hash_slots: int = HASH_SLOTS
    clock: object = field(default=time.monotonic, repr=False)

    def __post_init__(self):
        self.throttle = LoginThrottle(clock=self.clock, free=self.login_free,
                                      max_delay=self.login_max_delay)
        self.guesses = RateLimiter(self.guesses_per_s, self.guess_burst, clock=self.clock)
        self.slots = ConnectionSlots(total=self.max_connections, per_address=self.per_address,
                                     reserve=(max(1, self.max_connections // 8) if self.reserve is None
                                              else min(self.reserve, self.max_connections - 1)),
                                     idle_after=self.idle_after, clock=self.clock,
                                     per_prefix=min(self.per_prefix, self.max_connections))
        self.hashes = RateLimiter(self.hashes_per_s, self.hashes_burst, clock=self.clock)
        self.hash_queue = FairSlots(self.hash_slots)
        self.ceiling = GuessCeiling(self.guess_ceiling_per_s, self.guess_ceiling_burst, clock=self.clock)
        self.senders = SenderLimits(
            mail_burst=self.sender_mail_burst, mail_rate=1 / self.sender_mail_every_s,
            bytes_per_day=self.sender_bytes_per_day, pair_burst=self.pair_mail_burst,
            pair_rate=1 / self.pair_mail_every_s, pair_bytes_per_day=self.pair_bytes_per_day,
            clock=self.clock)
        self.replies = ReplyBudget(self.reply_bytes, self.reply_bytes_per_address)
        self.refusals = RefusalLog(clock=self.clock)

