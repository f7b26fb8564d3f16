"""What a check works with: the server under test, its accounts, a wire,
seeded text, and sessions it may reuse.

A check is a function of one :class:`Context`.  It asks the server things
through ``ctx.wire`` (every byte is recorded) and raises
:class:`~mailkit.conform.wire.CheckFailed` with what it expected and the
section that says so.  The helpers here are the steps most checks share:
log in, send a command, read a user's messages from a sender.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from .. import protocol as P
from .wire import Answer, CheckFailed, Wire

__all__ = ["Context", "Check", "CHECKS", "check", "SESSION_RE"]

SESSION_RE = re.compile(r"OK:(\d{10})\s*")


@dataclass(frozen=True)
class Check:
    """One named check: *section* is the heading of docs/protocol.md (or
    PROTOCOL.md) it tests; *required* checks decide the exit status, the
    others (SHOULDs) run with ``--strict``; *noise* says it also runs
    through the noisy link; *restarts* that it needs to restart the server."""

    name: str
    section: str
    required: bool
    noise: bool
    restarts: bool
    fn: object
    doc: str


CHECKS: dict[str, Check] = {}


def check(name: str, section: str, *, required: bool = True, noise: bool = False,
          restarts: bool = False):
    """Register a check function under *name* (``area/what``)."""
    def register(fn):
        CHECKS[name] = Check(name, section, required, noise, restarts, fn,
                             (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))
        return fn
    return register


@dataclass
class Context:
    """One check's view of the server under test."""

    target: object                        # a Target (address, users, restart())
    wire: Wire
    seed: int
    name: str
    sessions: dict = field(default_factory=dict)   # user -> session id, shared by the checks of a pass
    section: str = ""

    def __post_init__(self):
        self.rng = random.Random(f"{self.seed}:{self.name}")

    # -- text -------------------------------------------------------------

    def token(self) -> str:
        """A seeded word no other check uses: subjects and bodies carry one,
        so a listing is searched for this check's mail only."""
        return "t" + "".join(self.rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(8))

    def users(self) -> list[tuple[str, str]]:
        return list(self.target.users.items())

    @property
    def sender(self) -> str:
        return self.users()[0][0]

    @property
    def recipient(self) -> str:
        return self.users()[1][0]

    def fail(self, message: str, expected: str, section: str | None = None):
        raise CheckFailed(message, expected=expected, section=section or self.section)

    # -- steps ------------------------------------------------------------

    def login(self, user: str, *, note: str | None = None, half_close: bool = False) -> str:
        """Log *user* in; return the session id (the check fails if refused)."""
        password = self.target.users[user]
        answer = self.wire.ask(f"{user}:{password}".encode(), note or f"log in as {user}",
                               half_close=half_close)
        match = SESSION_RE.fullmatch(answer.text)
        if not match:
            self.fail(f"the login of {user} got {answer.text[:80]!r} ({answer.ending})",
                      "OK: and a ten-digit session id", "Handshake")
        return match.group(1)

    def session(self, user: str) -> str:
        """A session of *user*, logged in once per pass and reused."""
        if user not in self.sessions:       # half-closed: answered at once (login/ok tests the other way)
            self.sessions[user] = self.login(user, half_close=True)
        return self.sessions[user]

    def command(self, user: str, name: str, *fields: str, note: str | None = None,
                pieces: int = 1, half_close: bool = True) -> Answer:
        frame = P.make_frame(self.session(user), name, *fields)
        return self.wire.ask(frame, note or f"{user}: {name} {' '.join(fields)[:60]}".rstrip(),
                             pieces=pieces, half_close=half_close)

    def expect_ok(self, answer: Answer, what: str, section: str | None = None) -> Answer:
        if answer.kind != "OK":
            self.fail(f"{what} got {answer.text[:120]!r} ({answer.ending})",
                      "a success reply (not KO, not ERROR/KO:, not nothing)", section)
        return answer

    def email(self, subject: str, body: str, *, note: str | None = None, pieces: int = 1) -> Answer:
        answer = self.command(self.sender, "email", self.recipient, subject, body,
                              note=note or f"{self.sender} mails {self.recipient} {subject!r}",
                              pieces=pieces)
        if answer.kind != "OK" or not answer.text.startswith("OK"):
            self.fail(f"email got {answer.text[:120]!r} ({answer.ending})",
                      "a reply starting with OK (OK: Email Sent)", "Frames")
        return answer

    def inbox_from_sender(self, note: str = "") -> str:
        """The recipient's messages from the sender (``getmsg``), as text."""
        answer = self.command(self.recipient, "getmsg", self.sender,
                              note=note or f"{self.recipient}: getmsg {self.sender}")
        return self.expect_ok(answer, "getmsg", "Frames").text

    def copies(self, text: str, listing: str) -> int:
        return listing.count(text)
