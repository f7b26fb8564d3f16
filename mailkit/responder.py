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
server instead sends the reply from the future's callback, so that no thread
waits per mail.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future

from . import protocol as P
from .store import MailStore, SessionError, UnknownUser

__all__ = ["REPLIES", "help_text", "LoginThrottle", "MailResponder", "reply_text"]


class REPLIES:
    """The fixed replies, named once (tests and notebooks compare with these)."""

    KO = "KO"                                   # checksum mismatch: the only bare KO
    LOGIN_FAILED = "KO: wrong username or password"
    EMAIL_SENT = "OK: Email Sent"               # PROTOCOL.md
    LOGGED_OFF = "OK: Logged off"
    TOO_SLOW = "ERROR: request took too long to arrive"
    INTERNAL = "ERROR: internal server error (logged on the server)"


def help_text() -> str:
    """The reply to ``help``: every command with its fields."""
    lines = ["OK: commands (send each as SESSION_ID:COMMAND[:FIELD]...#SHA1):"]
    for spec in P.COMMANDS.values():
        lines.append(f"  {spec.usage():<28} {spec.summary}")
    return "\n".join(lines)


def reply_text(reply) -> str:
    """The text of a reply: *reply* itself, or what its future gives once
    done (an email's reply waits for the commit that holds the mail)."""
    return reply.result() if isinstance(reply, Future) else reply


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class LoginThrottle:
    """Slows password guessing: after MAX_FAILURES wrong passwords for one
    user within WINDOW_S seconds, that user's logins are refused for
    LOCKOUT_S seconds (with a reply that says so)."""

    MAX_FAILURES = 5     # a student mistyping twice is fine; a script guessing is not
    WINDOW_S = 60.0
    LOCKOUT_S = 30.0
    # Names remembered before the stale ones are forgotten: a script trying
    # made-up names must not grow the server's memory for as long as it runs.
    MAX_TRACKED = 10_000

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._prune_at = self.MAX_TRACKED

    def wait_time(self, user: str) -> float:
        with self._lock:
            return max(0.0, self._locked_until.get(user, 0.0) - self._clock())

    def failed(self, user: str) -> None:
        now = self._clock()
        with self._lock:
            times = self._failures[user]
            times.append(now)
            while times and times[0] < now - self.WINDOW_S:
                times.popleft()
            if len(times) >= self.MAX_FAILURES:
                self._locked_until[user] = now + self.LOCKOUT_S
                times.clear()
            if len(self._failures) + len(self._locked_until) > self._prune_at:
                self._forget_stale(now)

    def tracked(self) -> int:
        """How many names the throttle remembers now (bounded, see MAX_TRACKED)."""
        with self._lock:
            return len(self._failures) + len(self._locked_until)

    def _forget_stale(self, now: float) -> None:
        # Failures older than the window and lockouts that have ended change
        # nothing any more.  Pruning is O(n), so the next one waits until the
        # tables have doubled: O(1) per failure on average.
        for name in [n for n, t in self._failures.items() if not t or t[-1] < now - self.WINDOW_S]:
            del self._failures[name]
        for name in [n for n, until in self._locked_until.items() if until <= now]:
            del self._locked_until[name]
        self._prune_at = max(self.MAX_TRACKED, 2 * (len(self._failures) + len(self._locked_until)))

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(user, None)


class MailResponder:
    """The mail logic: ``respond(data, peer)`` -> ``(what, reply)``.

    *what* is a few words for the server's log line ("alice email");
    *reply* is the reply text, or for an ``email`` a future of it (see the
    module docstring).  Pure apart from the store.  A subclass may override
    :meth:`respond` (and call ``super().respond``), or one command's method
    (``email``, ``getmsg``, ...)."""

    def __init__(self, store: MailStore, *, throttle: LoginThrottle | None = None):
        self.store = store
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self.commands = {
            "help": self.help, "email": self.email, "getmsg": self.getmsg,
            "count": self.count, "delmsg": self.delmsg, "dump": self.dump,
        }

    def respond(self, data: bytes, peer=None) -> tuple[str, "str | Future[str]"]:
        """Turn one complete request into (what it was, the reply)."""
        try:
            request = P.parse_request(data)
        except P.ChecksumMismatch as exc:
            return f"bad frame: {exc}", REPLIES.KO
        except P.RemoteProtocolError as exc:
            return "bad request", f"ERROR: {exc}"
        if isinstance(request, P.Handshake):
            return f"login {request.user!r}", self.login(request)
        user = None
        what = request.name
        if request.name != "help":
            try:
                user = self.store.session_user(request.session_id)
            except SessionError as exc:
                return f"{what} with a bad session id", f"ERROR: {exc}"
            what = f"{user} {request.name}"
        if request.name == "logoff":
            self.store.end_session(request.session_id)
            return what, REPLIES.LOGGED_OFF
        return what, self.commands[request.name](user, *request.fields)

    # -- the commands -------------------------------------------------------

    def login(self, hs: P.Handshake) -> str:
        wait = self.throttle.wait_time(hs.user)
        if wait > 0:
            return f"KO: too many wrong passwords for {hs.user}; try again in {wait:.0f} s"
        if not self.store.check_password(hs.user, hs.password):
            self.throttle.failed(hs.user)
            return REPLIES.LOGIN_FAILED
        self.throttle.succeeded(hs.user)
        return f"OK:{self.store.create_session(hs.user)}"

    def help(self, user) -> str:
        return help_text()

    def email(self, user: str, recipient: str, subject: str, body: str) -> "Future[str]":
        """Queue the mail for the store's group commit; the reply comes true
        once it is on disk (or says why it was not stored)."""
        stored = self.store.submit(user, recipient, subject, body)
        reply: Future = Future()

        def on_disk(done: Future) -> None:
            exc = done.exception()
            if isinstance(exc, UnknownUser):   # a short reply: a 1 MB name is not echoed
                reply.set_result(f"ERROR: unknown recipient {P.preview(recipient)}")
            elif exc is not None:
                reply.set_exception(exc)       # not the client's fault: an internal error
            else:
                reply.set_result(REPLIES.EMAIL_SENT)

        stored.add_done_callback(on_disk)
        return reply

    def getmsg(self, user: str, sender: str) -> str:
        if not self.store.has_user(sender):
            return f"ERROR: unknown user {sender!r}"
        return P.format_messages(self.store.messages(user, sender), title=f" from {sender}")

    def count(self, user: str) -> str:
        return f"OK: {_plural(self.store.count(user), 'message')}"

    def delmsg(self, user: str, sender: str, subject: str) -> str:
        n = self.store.delete(user, sender, subject)
        if n == 0:
            return f"ERROR: no message from {sender!r} with subject {subject!r}"
        return f"OK: {_plural(n, 'message')} deleted"

    def dump(self, user: str) -> str:
        return P.format_messages(self.store.messages(user))
