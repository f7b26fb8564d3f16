"""Run checks: one (:func:`run_check`, what a grader calls as a hidden
probe) or all of them, directly and through a noisy link (:func:`run_suite`).

Nothing here prints.  A :class:`Result` is data (``as_dict()`` for JSON);
:mod:`mailkit.conform.report` writes it for people and machines.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field

from ..noise import NoisyLink
from . import checks  # noqa: F401 - registers the server checks
from .context import CHECKS, Context
from .wire import CheckFailed, NotApplicable, Wire

__all__ = ["Result", "Suite", "run_check", "run_suite", "probe", "NOISE", "server_checks"]


# The noisy pass: what the link does to every connection.  Replies are never
# flipped or lost: they carry no checksum, so no server could be blamed for
# what that does (docs/protocol.md, "What the protocol still does not protect").
NOISE = {
    "rate": 0.2,          # a flipped bit in 1 frame in 5 (a careful client sends it again after KO)
    "loss_rate": 0.05,    # 1 request in 20 lost silently (the suite sends it again, as a timer would)
    "delay": 0.01,        # every reply held 10 ms ...
    "jitter": 0.01,       # ... +- 10 ms
    "split_rate": 0.5,    # half the frames reach the server in 2 to 4 pieces
}


# After a failed check, how long to wait for a server process that may be
# dying (its connection closed first, its exit status comes a moment later).
CRASH_GRACE_S = 0.3


@dataclass
class Result:
    """What one check found."""

    name: str
    section: str
    required: bool
    mode: str                 # "direct", "noise" (through the noisy link), "client"
    status: str               # "pass", "fail", "skip" (could not run here), "error" (the suite broke)
    message: str = ""
    expected: str = ""
    steps: list = field(default_factory=list)
    seconds: float = 0.0
    seed: int = 0
    doc: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}@noise" if self.mode == "noise" else self.name

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def as_dict(self) -> dict:
        return {"name": self.id, "check": self.name, "section": self.section, "required": self.required,
                "mode": self.mode, "status": self.status, "message": self.message,
                "expected": self.expected, "seconds": round(self.seconds, 3), "seed": self.seed,
                "doc": self.doc, "steps": [s.as_dict() for s in self.steps]}


def server_checks(strict: bool = False) -> list[str]:
    """Names of the server checks, in the order they run (those that
    restart the server last)."""
    names = [c.name for c in CHECKS.values() if c.required or strict]
    return sorted(names, key=lambda n: CHECKS[n].restarts)


def run_check(name: str, target, *, seed: int = 0, mode: str = "direct", link=None,
              sessions: dict | None = None) -> Result:
    """Run the check *name* against *target* (an object with ``address``
    and ``users``; see :mod:`mailkit.conform.target`); return its
    :class:`Result`.  Never raises for what the server does, never prints.

    *mode* ``"noise"`` needs *link*, a :class:`~mailkit.noise.NoisyLink`
    in front of the target (``run_suite`` makes one)."""
    spec = CHECKS[name]
    address = link.address if link is not None else target.address
    wire = Wire(tuple(address), link=link)
    ctx = Context(target, wire, seed, name, sessions if sessions is not None else {}, spec.section)
    result = Result(name, spec.section, spec.required, mode, "pass", seed=seed, doc=spec.doc)
    started = time.monotonic()
    try:
        spec.fn(ctx)
    except CheckFailed as exc:
        result.status, result.message, result.expected = "fail", exc.message, exc.expected
        result.section = exc.section or spec.section
    except NotApplicable as exc:
        result.status, result.message = "skip", str(exc)
    except OSError as exc:            # refused, reset, timed out: the server's doing
        result.status = "fail"
        result.message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ConnectionRefusedError):
            result.message += " (is the server running? an earlier check may have crashed it)"
        result.expected = "the server accepts the connection and answers"
    except Exception as exc:          # the suite's own bug: say so, never blame the server
        result.status = "error"
        result.message = f"the suite failed: {exc!r}\n{traceback.format_exc(limit=3)}"
    result.steps = wire.steps
    result.seconds = time.monotonic() - started
    return result


def probe(name: str, host: str, port: int, *, seed: int = 0, users: dict[str, str] | None = None,
          noise: bool = False) -> Result:
    """One named check against the server at *host*:*port*, as a grader's
    hidden probe: *seed* decides the texts the check sends (and, with
    *noise*, what the link does), *users* the accounts it uses (at least
    two; default alice/bob).  Returns a :class:`Result` (``as_dict()`` is
    JSON); prints nothing, raises nothing for what the server does.
    ``durability/after-OK`` needs a target that can restart the server:
    call :func:`run_check` with a :class:`~mailkit.conform.target.CommandTarget`."""
    from .target import AddressTarget
    target = AddressTarget((host, port), users)
    if not noise:
        return run_check(name, target, seed=seed)
    with NoisyLink(target.address, seed=seed, **NOISE) as link:
        return run_check(name, target, seed=seed, mode="noise", link=link)


@dataclass
class Suite:
    """Every result of one run, and what the run was."""

    target: str
    seed: int
    strict: bool
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    kind: str = "server"

    @property
    def ok(self) -> bool:
        """True if every required check passed (with *strict*, every check;
        a check that could not run here does not count)."""
        return all(r.status in ("pass", "skip") for r in self.results if r.required or self.strict)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "skip": 0, "error": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def as_dict(self) -> dict:
        return {"kind": self.kind, "target": self.target, "seed": self.seed, "strict": self.strict,
                "ok": self.ok, "counts": self.counts(), "seconds": round(self.seconds, 3),
                "results": [r.as_dict() for r in self.results]}


def _survived(target, result: Result, sessions: dict) -> Result:
    """If the server the suite started died during a check, the check
    fails and says so, and the server is started again for the next one
    (its sessions are gone): one crash is one failure, not thirty."""
    alive = getattr(target, "alive", None)
    if alive is None:
        return result
    if result.status == "fail" and alive():
        target.wait_exit(CRASH_GRACE_S)     # a closed connection may be the process dying
    if alive():
        return result
    status = target.exit_status()
    if result.status == "pass":
        result.status, result.expected = "fail", "the server keeps running, whatever it is sent"
    result.message = (result.message + "; " if result.message else "") + \
        f"the server exited during this check (status {status}); the suite started it again"
    target.restart()
    sessions.clear()
    return result


def run_suite(target, *, seed: int = 0, strict: bool = False, noise: bool = True,
              only: list[str] | None = None, budget: float | None = None) -> Suite:
    """Every server check against *target* (started and stopped here if it
    is a command): directly, then the ``noise=True`` ones through a
    :class:`~mailkit.noise.NoisyLink` with :data:`NOISE` and *seed*.
    With *budget* (seconds), the checks not started by then fail as "not
    run" (a server that makes every check wait out its timeouts would
    otherwise take minutes: a grader needs a bound)."""
    names = [n for n in server_checks(strict) if only is None or n in only]
    suite = Suite(getattr(target, "label", str(target)), seed, strict)
    started = time.monotonic()
    deadline = None if budget is None else started + budget

    def within_budget(name, target, **kw):
        if deadline is not None and time.monotonic() > deadline:
            spec = CHECKS[name]
            return Result(name, spec.section, spec.required, kw.get("mode", "direct"), "fail",
                          f"not run: the suite's time budget ({budget:g} s) was spent",
                          "every check runs within the budget", seed=seed, doc=spec.doc)
        return run_check(name, target, **kw)

    with target:
        sessions: dict = {}
        direct = [n for n in names if not CHECKS[n].restarts]
        for name in direct:
            suite.results.append(_survived(target, within_budget(name, target, seed=seed, sessions=sessions),
                                           sessions))
        if noise:
            noisy = [n for n in names if CHECKS[n].noise]
            link = NoisyLink(target.address, seed=seed, **NOISE).start()
            try:
                link_sessions: dict = {}
                for name in noisy:
                    result = within_budget(name, target, seed=seed, mode="noise", link=link,
                                       sessions=link_sessions)
                    _survived(target, result, link_sessions)
                    if tuple(target.address) != tuple(link.target):
                        link.stop()             # the server was started again, on a new port
                        link = NoisyLink(target.address, seed=seed + len(suite.results), **NOISE).start()
                    suite.results.append(result)
            finally:
                link.stop()
        for name in names:
            if CHECKS[name].restarts:
                suite.results.append(within_budget(name, target, seed=seed, sessions=sessions))
    suite.seconds = time.monotonic() - started
    return suite

