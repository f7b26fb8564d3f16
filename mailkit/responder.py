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
from concurrent.futures import Future

from . import protocol as P
from .limits import MAX_USERNAME, ClassLimits, LoginThrottle, login_name_too_long, session_tag
from .store import (
    LISTING_BYTES, LISTING_MESSAGES, MailboxFull, MailStore, SessionError, StorageFull, UnknownUser,
)
from .text import plural

__all__ = ["REPLIES", "help_text", "LoginThrottle", "MailResponder", "reply_text", "loggable"]


class REPLIES:
    """The fixed replies, named once (tests and notebooks compare with these)."""

    KO = "KO"                                   # checksum mismatch: the only bare KO
    LOGIN_FAILED = "KO: wrong username or password"
    EMAIL_SENT = "OK: Email Sent"               # PROTOCOL.md
    LOGGED_OFF = "OK: Logged off"
    TOO_SLOW = "ERROR: request took too long to arrive"
    INTERNAL = "ERROR: internal server error (logged on the server)"
    NAME_TOO_LONG = f"KO: user name too long (at most {MAX_USERNAME} characters)"


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
                try:
                    user = self.store.session_user(request.session_id)
                except SessionError as exc:
                    if address is not None:
                        self.limits.guesses.hit(address)
                    return f"{what} with a bad session id", f"ERROR: {exc}"
                what = f"{user} {request.name}"
            if request.name == "logoff":
                self.store.end_session(request.session_id)
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
        if not self.store.check_password(hs.user, hs.password):
            self.throttle.failed(hs.user, address)
            return REPLIES.LOGIN_FAILED
        self.throttle.succeeded(hs.user, address)
        return f"OK:{self.store.create_session(hs.user)}"

    def help(self, user) -> str:
        return help_text()

    def email(self, user: str, recipient: str, subject: str, body: str) -> "Future[str]":
        """Queue the mail for the store's group commit; the reply comes true
        once it is on disk (or says why it was not stored)."""
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
        n = self.store.delete(user, sender, subject)
        if n == 0:
            return f"ERROR: no message from {sender!r} with subject {subject!r}"
        return f"OK: {plural(n, 'message')} deleted"

    def dump(self, user: str) -> str:
        return self.listing(user, None, "")

    def listing(self, user: str, sender: str | None, title: str) -> str:
        """A bounded message listing: the oldest messages up to
        LISTING_MESSAGES and LISTING_BYTES; the first line says how many
        more there are (docs/protocol.md, "Limits of a class server")."""
        shown = self.store.messages(user, sender, limit=LISTING_MESSAGES, max_bytes=LISTING_BYTES)
        total = self.store.count(user, sender)
        if total > len(shown):
            title += f" (the oldest {len(shown)} of {total}: delete some to see the others)"
        return P.format_messages(shown, title=title)
