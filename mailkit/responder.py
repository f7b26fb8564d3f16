"""What the mail server says: one complete request in, one reply out.

The mail logic of PROTOCOL.md, with no sockets and no threads of its own:
:class:`MailResponder` turns the bytes of one request into ``(what it was,
the reply)``, reading and writing only its :class:`~mailkit.store.MailStore`.
Both servers (:class:`~mailkit.simple_server.SimpleMailServer`, the one to
read, and :class:`~mailkit.server.MailServer`, the fast one) take a responder
and do only the I/O around it, so a test or a notebook can call
``respond(b"alice:wonderland")`` and see the reply without a network.

A server that behaves differently (the course's 2017-style and rdt2.1
servers) passes its own responder: a subclass of :class:`MailResponder`, or
any object with a ``respond(data, peer)`` method.

One reply is not a string at once: an ``email`` is stored by the store's
group commit, so its reply is a :class:`concurrent.futures.Future` that comes
true once the mail is on disk.  :func:`reply_text` waits for it; the fast
server instead hands the reply to its event loop from the future's callback,
so that no thread waits per mail.
"""

from __future__ import annotations

import math
import re
import threading
from concurrent.futures import Future

from . import protocol as P
from .limits import MAX_TRACKED, MAX_USERNAME, ClassLimits, LoginThrottle, login_name_too_long, session_tag
from .store import (
    ANY, LISTING_BYTES, LISTING_MESSAGES, MailboxFull, MailStore, SessionError, StorageFull, UnknownUser,
    message_size,
)
from .text import plural

__all__ = ["REPLIES", "help_text", "LoginThrottle", "MailResponder", "Listing", "reply_text", "loggable",
           "is_refusal", "PIECE_BYTES"]

# A listing goes out in pieces of about this many bytes of subjects and
# bodies (one message, however big, is one piece): an unread 2 MB dump holds
# one piece of the server's memory, not 2 MB (see ClassLimits.replies).
PIECE_BYTES = 64 * 1024


class REPLIES:
    """The fixed replies, named once (tests and notebooks compare with these)."""

    KO = "KO"                                   # checksum mismatch: the only bare KO
    LOGIN_FAILED = "KO: wrong username or password"
    EMAIL_SENT = "OK: Email Sent"               # PROTOCOL.md
    LOGGED_OFF = "OK: Logged off"
    TOO_SLOW = "ERROR: request took too long to arrive"
    INTERNAL = "ERROR: internal server error (logged on the server)"
    NAME_TOO_LONG = f"KO: user name too long (at most {MAX_USERNAME} characters)"
    GUESS_CEILING = "ERROR: too many bad session ids on this server; try again in {} s"
    TOO_MANY_LOGINS = "KO: too many logins from your address; try again in {} s"
    USER_UNDER_ATTACK = ("KO: too many password guesses for {} lately; try again in {} s "
                         "(an address you have logged in from before is not limited)")


def is_refusal(reply) -> bool:
    """True for a reply that refuses (an error, a KO, no reply): the server
    logs these once per address per minute (see limits.RefusalLog)."""
    return reply is None or (isinstance(reply, str) and reply.startswith(("ERROR", "KO")))


def help_text() -> str:
    """The reply to ``help``: every command with its fields."""
    lines = ["OK: commands (send each as SESSION_ID:COMMAND[:FIELD]...#SHA1):"]
    for spec in P.COMMANDS.values():
        lines.append(f"  {spec.usage():<28} {spec.summary}")
    return "\n".join(lines)


def reply_text(reply) -> str:
    """The text of a reply: *reply* itself, or what its future gives once
    done (an email's reply waits for the commit that holds the mail), or a
    :class:`Listing`'s pieces joined."""
    if isinstance(reply, Listing):
        return reply.text()
    return reply.result() if isinstance(reply, Future) else reply


class Listing:
    """The reply to ``getmsg`` or ``dump``, read from the store and formatted
    one piece at a time (``pieces()``), so that a reply nobody reads holds
    one piece of memory; ``text()`` is the whole (the same bytes)."""

    def __init__(self, store: MailStore, user: str, sender: str | None, title: str):
        self.store, self.user, self.sender = store, user, sender
        self.plan = store.listing_plan(user, sender, limit=LISTING_MESSAGES, max_bytes=LISTING_BYTES)
        total = store.count(user, sender)
        if total > len(self.plan):
            title += f" (the oldest {len(self.plan)} of {total}: delete some to see the others)"
        n = len(self.plan)
        self.head = f"OK: {n} message{'' if n == 1 else 's'}{title}"

    def first_line(self) -> str:
        return self.head

    def groups(self) -> list[list[tuple[int, int]]]:
        """The plan cut into pieces of about PIECE_BYTES (at least one message each)."""
        groups, group, size = [], [], 0
        for row in self.plan:
            if group and size + row[1] > PIECE_BYTES:
                groups.append(group)
                group, size = [], 0
            group.append(row)
            size += row[1]
        if group:
            groups.append(group)
        return groups

    @staticmethod
    def piece_bytes(group) -> int:
        """What a piece holds in memory while it waits: about twice its text
        (the str and its UTF-8 bytes) plus the headers."""
        return 2 * sum(size for _, size in group) + 200 * len(group)

    def piece(self, group, start: int) -> bytes:
        """The text of *group*, numbered from *start* + 1 (a message deleted
        since the plan was made is left out: the listing then holds fewer
        messages than its head says, as a client reading it may notice)."""
        n, out = len(self.plan), []
        for i, m in enumerate(self.store.messages_between(self.user, self.sender, group[0][0], group[-1][0]),
                              start + 1):
            # format_messages of one message, from its "From:" line on
            block = P.format_messages([m]).split("\n", 2)[2]
            out.append(f"\n--- message {i} of {n} ---\n{block}")
        return "".join(out).encode("utf-8")

    def pieces(self):
        """``(bytes to hold, group)`` for each piece, in order, after the head."""
        for group in self.groups():
            yield self.piece_bytes(group), group

    def text(self) -> str:
        parts, start = [self.head.encode("utf-8")], 0
        for group in self.groups():
            parts.append(self.piece(group, start))
            start += len(group)
        return b"".join(parts).decode("utf-8")


_SESSION_ID = re.compile(r"(?<![0-9])[0-9]{%d}(?![0-9])" % P.SESSION_ID_LEN)


def loggable(text: str) -> str:
    """*text* (a reply, or what a request was) fit for a log line: every
    session id in it replaced by its tag (``OK:6100811786`` becomes
    ``OK:s:3fa2c1``), so that whoever reads the log cannot take a session."""
    return _SESSION_ID.sub(lambda m: session_tag(m.group()), text)


def _address(peer):
    """The client's address, the key of the per-address limits; None when
    there is no socket (a test or a notebook calling respond() directly)."""
    if isinstance(peer, (tuple, list)) and peer:
        return peer[0]
    return None


class MailResponder:
    """The mail logic: ``respond(data, peer)`` -> ``(what, reply)``.

    *what* is a few words for the server's log line ("alice email");
    *reply* is the reply text, or for an ``email`` a future of it (see the
    module docstring).  Pure apart from the store.  A subclass may override
    :meth:`respond` (and call ``super().respond``), or one command's method
    (``email``, ``getmsg``, ...).

    *limits* (a :class:`~mailkit.limits.ClassLimits`, defaults for a class of
    300 if not given) slows down password and session-id guessing per client
    address; *throttle* replaces its login throttle."""

    def __init__(self, store: MailStore, *, throttle: LoginThrottle | None = None,
                 limits: ClassLimits | None = None):
        self.store = store
        self.limits = limits if limits is not None else ClassLimits()
        self.throttle = throttle if throttle is not None else self.limits.throttle
        self._bound = _Bindings()         # session id -> the address that logged in
        self.commands = {
            "help": self.help, "email": self.email, "getmsg": self.getmsg,
            "count": self.count, "delmsg": self.delmsg, "dump": self.dump,
        }

    def respond(self, data: bytes, peer=None) -> tuple[str, "str | Future[str]"]:
        """Turn one complete request into (what it was, the reply).

        *peer* is the client's ``(address, port)``: the per-address limits
        (wrong passwords, bad session ids) count by its address."""
        if login_name_too_long(data):           # before the throttle, the log or scrypt see it
            return f"login with a user name over {MAX_USERNAME} characters", REPLIES.NAME_TOO_LONG
        try:
            request = P.parse_request(data)
        except P.ChecksumMismatch as exc:
            return f"bad frame: {exc}", REPLIES.KO
        except P.RemoteProtocolError as exc:
            return "bad request", f"ERROR: {exc}"
        address = _address(peer)
        what = request.name if isinstance(request, P.Command) else f"login {P.preview(request.user)}"
        try:
            if isinstance(request, P.Handshake):
                return what, self.login(request, peer)
            user = None
            if request.name != "help":
                if address is not None and (wait := self.limits.guesses.wait_time(address)) > 0:
                    return (f"{what} refused: too many bad session ids",
                            f"ERROR: too many bad session ids from your address; "
                            f"try again in {math.ceil(wait)} s")
                if address is not None and (wait := self.limits.ceiling.wait_time(address)) > 0:
                    return (f"{what} refused: server-wide ceiling on bad session ids",
                            REPLIES.GUESS_CEILING.format(math.ceil(wait)))
                try:
                    if self.limits.bind_sessions and self._bound.get(request.session_id) != address:
                        # not a session of this address: exactly as if there were none (and
                        # the store is not asked, so its idle timer is not restarted)
                        raise SessionError(f"unknown session id {request.session_id} (log in again)")
                    user = self.store.session_user(request.session_id)
                except SessionError as exc:
                    if address is not None:     # (no socket, no address: a notebook's respond())
                        self.limits.guesses.hit(address)
                        self.limits.ceiling.bad(address)
                    return f"{what} with a bad session id", f"ERROR: {exc}"
                what = f"{user} {request.name}"
            if request.name == "logoff":
                self.store.end_session(request.session_id)
                self._bound.pop(request.session_id)
                return what, REPLIES.LOGGED_OFF
            return what, self.commands[request.name](user, *request.fields)
        except StorageFull as exc:              # a login or a session touch could not be written
            return what, f"ERROR: {exc}"

    # -- the commands -------------------------------------------------------

    def login(self, hs: P.Handshake, peer=None) -> str:
        if not P.USERNAME_RE.fullmatch(hs.user):
            return REPLIES.LOGIN_FAILED         # no such user can exist: nothing to hash or remember
        address = _address(peer)
        wait = self.throttle.wait_time(hs.user, address)
        if wait > 0:
            return (f"KO: too many wrong passwords for {hs.user} from your address; "
                    f"try again in {math.ceil(wait)} s")
        # Every password check costs a hash (an unknown name too: the store
        # hashes a dummy), so every one counts against the address ...
        hashes = self.limits.hashes
        if address is not None and not hashes.allow(address):
            return REPLIES.TOO_MANY_LOGINS.format(math.ceil(hashes.wait_time(address)))
        # ... and one user's wrong passwords from addresses that never logged
        # in as them are counted together (alice's own address is not).
        if (wait := self.throttle.admit(hs.user, address)) > 0:
            hashes.give_back(address)           # refused unhashed: it cost nothing
            return REPLIES.USER_UNDER_ATTACK.format(hs.user, math.ceil(wait))
        with self.limits.hash_queue.hold(address):  # one address's logins wait behind each other
            # Asked again in the slot: the guesses queued beside this one
            # may have used the allowance up meanwhile.
            if (wait := self.throttle.admit(hs.user, address)) > 0:
                right = None
            else:
                right = self.store.check_password(hs.user, hs.password)
        if right is None:
            hashes.give_back(address)
            return REPLIES.USER_UNDER_ATTACK.format(hs.user, math.ceil(wait))
        if not right:
            self.throttle.failed(hs.user, address)
            return REPLIES.LOGIN_FAILED
        self.throttle.succeeded(hs.user, address)
        session_id = self.store.create_session(hs.user)
        if self.limits.bind_sessions:
            self._bound.put(session_id, address)
        return f"OK:{session_id}"

    def help(self, user) -> str:
        return help_text()

    def email(self, user: str, recipient: str, subject: str, body: str) -> "Future[str]":
        """Queue the mail for the store's group commit; the reply comes true
        once it is on disk (or says why it was not stored).  Past the
        sender's limits (limits.SenderLimits) it is refused at once."""
        refusal = self.limits.senders.check(user, recipient, message_size(subject, body))
        if refusal is not None:
            return refusal

        def reply(outcome) -> str:      # in the store's writer, once the commit is done
            if isinstance(outcome, UnknownUser):   # a short reply: a 1 MB name is not echoed
                return f"ERROR: unknown recipient {P.preview(recipient)}"
            if isinstance(outcome, (MailboxFull, StorageFull)):   # not stored, and says why
                return f"ERROR: {outcome}"
            if isinstance(outcome, Exception):
                raise outcome                  # not the client's fault: an internal error
            return REPLIES.EMAIL_SENT

        return self.store.submit(user, recipient, subject, body, then=reply)

    def getmsg(self, user: str, sender: str) -> str:
        if not self.store.has_user(sender):
            return f"ERROR: unknown user {sender!r}"
        return self.listing(user, sender, f" from {sender}")

    def count(self, user: str) -> str:
        return f"OK: {plural(self.store.count(user), 'message')}"

    def delmsg(self, user: str, sender: str, subject: str) -> str:
        """Delete; ``*`` as SENDER or SUBJECT matches any (``delmsg:*:*``
        empties the mailbox, ``delmsg:bob:*`` deletes all of bob's)."""
        n = self.store.delete(user, sender, subject)
        if n == 0:
            if ANY in (sender, subject):
                return "ERROR: no message matches" + ("" if sender == ANY else f" from {sender!r}") + (
                    "" if subject == ANY else f" with subject {subject!r}")
            return f"ERROR: no message from {sender!r} with subject {subject!r}"
        return f"OK: {plural(n, 'message')} deleted"

    def dump(self, user: str) -> str:
        return self.listing(user, None, "")

    def listing(self, user: str, sender: str | None, title: str) -> "Listing":
        """A bounded message listing: the oldest messages up to
        LISTING_MESSAGES and LISTING_BYTES; the first line says how many
        more there are (docs/protocol.md, "Limits of a class server").
        A :class:`Listing`: the fast server sends it in pieces."""
        return Listing(self.store, user, sender, title)


class _Bindings:
    """session id -> address, bounded: past 100,000 the oldest binding is
    forgotten, and its session then works from no address (log in again)."""

    MAX = 10 * MAX_TRACKED

    def __init__(self):
        self._lock = threading.Lock()
        self._d: dict = {}

    def get(self, sid):
        with self._lock:
            return self._d.get(sid, _Bindings)      # (never an address)

    def put(self, sid, address) -> None:
        with self._lock:
            self._d[sid] = address
            while len(self._d) > self.MAX:
                del self._d[next(iter(self._d))]

    def pop(self, sid) -> None:
        with self._lock:
            self._d.pop(sid, None)
