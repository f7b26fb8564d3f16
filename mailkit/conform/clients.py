"""``conform client``: run a client program against the reference server
and judge what went over the wire.

The program is started as ``COMMAND {host} {port}`` and driven through the
2017 client's menu on its standard input (docs/protocol.md, "Write your own
client"): a user name line, a password line, then per command a line with
its name and one line per field.  Its output is not judged (it is shown
when a check fails); the wire is: the handshake's bytes, every frame's
checksum and fields, a resend after exactly ``KO``, none after ``OK`` or an
error, giving up after its retries, not hanging on a silent server.

Each *scenario* is one run of the program with one stdin and one fault
plan; each check judges one scenario's run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .. import protocol as P
from ..noise import NoisyLink
from .refserver import ReferenceServer, Seen
from .runner import Result, Suite
from .target import fill
from .wire import CheckFailed, Step

__all__ = ["CLIENT_CHECKS", "SCENARIOS", "run_client_suite", "run_client_check", "ClientRun"]

USERS = {"alice": "wonderland", "bob": "builder"}
RUN_BUDGET_S = 20.0      # a run: a few commands; a client that hangs is stopped after this
SILENT_BUDGET_S = 12.0   # the silent-server run: mailkit's client gives up on a reply after 5 s
NOISE = {"rate": 0.3}    # the noise run: a flipped bit in 3 frames in 10
NOISE_MAILS = 6
# A client's output kept for the verdict and the report: the scenarios'
# menus and replies are a few KB; a client that prints without end is read
# on (so it never blocks on a full pipe) and the rest dropped.
MAX_OUTPUT_BYTES = 1 << 20


@dataclass
class Scenario:
    lines: object            # function(token) -> the stdin lines after the login
    plan: object = None      # function(request, attempt) -> fault (see refserver)
    budget: float = RUN_BUDGET_S
    noisy: bool = False


def _is(name: str):
    """A plan's test: is *request* a frame of command *name*?"""
    def test(request: bytes) -> bool:
        try:
            parsed = P.parse_request(request)
        except P.ProtocolError:
            return False
        return isinstance(parsed, P.Command) and parsed.name == name
    return test


_email, _count = _is("email"), _is("count")

SCENARIOS = {
    "basic": Scenario(lambda t: ["email", "bob", f"Hello {t}", f"How are you {t}",
                                 "email", f"nobody{t}", "Lost", "body",
                                 "count", "getmsg", "bob", "help", "dump",
                                 "delmsg", "bob", f"nothing {t}", "logoff"]),
    "ko-once": Scenario(lambda t: ["email", "bob", f"Retry {t}", f"body {t}", "logoff"],
                        plan=lambda r, attempt: "KO" if _email(r) and attempt == 0 else None),
    "ko-always": Scenario(lambda t: ["count", "logoff"],
                          plan=lambda r, attempt: "KO" if _count(r) else None),
    "silent": Scenario(lambda t: ["count", "logoff"],
                       plan=lambda r, attempt: "silent" if _count(r) and attempt == 0 else None,
                       budget=SILENT_BUDGET_S),
    "keeps-open": Scenario(lambda t: ["count", "email", "bob", f"Open {t}", "body", "logoff"],
                           plan=lambda r, attempt: "keep-open"),
    "colon": Scenario(lambda t: ["email", "bob", f"Re: lunch {t}", f"at 12:30: #1 {t}", "logoff"]),
    "noise": Scenario(lambda t: [x for i in range(NOISE_MAILS)
                                 for x in ("email", "bob", f"Noisy {i} {t}", f"body {i} {t}")] + ["logoff"],
                      noisy=True),
}


@dataclass
class ClientRun:
    """One run of the client program: what it was given, what the server saw."""

    scenario: str
    token: str
    stdin: str
    seen: list[Seen] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)      # subjects in bob's mailbox afterwards
    session_ids: list[str] = field(default_factory=list)
    events: list = field(default_factory=list)           # the noisy link's, in the noise run
    output: str = ""
    status: int | None = None                            # None: stopped after the budget
    seconds: float = 0.0

    def frames(self) -> list[tuple[bytes, bytes, str | None]]:
        """(request, reply, fault) of every frame, in order."""
        out = []
        for s in self.seen:
            for i, r in enumerate(s.requests):
                if P.is_frame(P.normalize_frame(r)):
                    out.append((r, s.replies[i] if i < len(s.replies) else b"", s.faults[i]))
        return out

    def steps(self) -> list[Step]:
        steps = []
        for s in self.seen:
            for i, r in enumerate(s.requests):
                fault = s.faults[i]
                note = f"connection {s.number}" + (f", request {i + 1} on it" if i else "") + \
                    (f" (the suite's fault: {fault})" if fault else "")
                reply = s.replies[i] if i < len(s.replies) else b""
                steps.append(Step(note, r, reply, half_closed=s.half_closed and i == len(s.requests) - 1,
                                  ending="silent" if fault == "silent" else ""))
        tail = self.output[-600:]
        how = "still running when stopped" if self.status is None else f"exit status {self.status}"
        steps.append(Step(f"the program's output ({how}), last {len(tail)} characters:\n{tail}"))
        return steps


def _stdin(scenario: Scenario, token: str) -> str:
    return "\n".join(["alice", USERS["alice"], *scenario.lines(token)]) + "\n"


def run_program(words: list[str], address, stdin: str, budget: float) -> tuple[str, int | None]:
    """Run *words* (with ``{host}``, ``{port}`` filled in), give it *stdin*,
    wait at most *budget* seconds; return (its output, at most
    :data:`MAX_OUTPUT_BYTES` of it, and its exit status or None)."""
    argv = fill(words, {"host": address[0], "port": address[1]})
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    kept, dropped = bytearray(), [0]

    def drain() -> None:
        while chunk := proc.stdout.read1(65536):
            room = MAX_OUTPUT_BYTES - len(kept)
            kept.extend(chunk[:max(room, 0)])
            dropped[0] += max(len(chunk) - max(room, 0), 0)

    reader = threading.Thread(target=drain, name="client-output", daemon=True)
    reader.start()
    try:
        proc.stdin.write(stdin.encode("utf-8"))
        proc.stdin.close()
    except (BrokenPipeError, OSError):              # it exited, or closed its stdin, before reading it all
        pass
    try:
        status = proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        status = None
    try:                                            # its children too, which may hold the pipe open
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    reader.join(timeout=5)                          # a grandchild that left the group may hold the pipe
    out = kept.decode("utf-8", "replace")
    if dropped[0]:
        out += f"\n[{dropped[0]} more bytes of output dropped: the first {MAX_OUTPUT_BYTES} are kept]"
    return out, status


def run_scenario(words: list[str], name: str, *, seed: int = 0) -> ClientRun:
    scenario = SCENARIOS[name]
    rng = random.Random(f"{seed}:{name}")
    token = "t" + "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(6))
    run = ClientRun(name, token, _stdin(scenario, token))
    started = time.monotonic()
    with ReferenceServer(USERS, scenario.plan) as server:
        link = NoisyLink(server.address, seed=seed, **NOISE).start() if scenario.noisy else None
        try:
            address = link.address if link else server.address
            run.output, run.status = run_program(words, address, run.stdin, scenario.budget)
        finally:
            if link:
                run.events = list(link.events)
                link.stop()
        run.seen = list(server.seen)
        run.stored = server.subjects("bob")
        run.session_ids = [m.group(1) for s in server.seen for rep in s.replies
                           if (m := _SID.fullmatch(rep.decode("utf-8", "replace")))]
    run.seconds = time.monotonic() - started
    return run


_SID = re.compile(r"OK:(\d{10})")


# -- the checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientCheck:
    name: str
    section: str
    required: bool
    scenario: str
    fn: object
    doc: str


CLIENT_CHECKS: dict[str, ClientCheck] = {}


def client_check(name: str, section: str, scenario: str, *, required: bool = True):
    def register(fn):
        CLIENT_CHECKS[name] = ClientCheck(name, section, required, scenario, fn,
                                          (fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "))
        return fn
    return register


def _fail(message: str, expected: str, section: str = ""):
    raise CheckFailed(message, expected=expected, section=section)


def _commands(run: ClientRun) -> list[tuple[str, tuple[str, ...]]]:
    """The commands the client sent, a resend counted once."""
    out, last = [], None
    for request, _, _ in run.frames():
        try:
            c = P.parse_request(P.normalize_frame(request))
        except P.ProtocolError:
            continue
        if isinstance(c, P.Command) and request != last:
            out.append((c.name, c.fields))
        last = request
    return out


@client_check("client/login-bytes", "Handshake", "basic")
def login_bytes(run: ClientRun) -> None:
    """The first request is the handshake ``USER:PASSWORD`` (a newline after it is allowed)."""
    first = run.seen[0].requests[0] if run.seen and run.seen[0].requests else b""
    want = f"alice:{USERS['alice']}".encode()
    if first.rstrip(b"\r\n") != want:
        _fail(f"the first request was {first[:80]!r}", f"{want!r} (no checksum, no session id)")


@client_check("client/frame-checksum", "Frames", "basic")
def frame_checksum(run: ClientRun) -> None:
    """Every frame ends in ``#`` and the lowercase hex SHA-1 of the UTF-8
    bytes before it, with nothing after it."""
    frames = run.frames()
    if not frames:
        _fail("no frame came after the login", "a frame per command")
    for request, _, _ in frames:
        if not P.verifies(request):
            hint, framed = "", P.normalize_frame(request)
            if framed != request and P.verifies(framed):
                hint = (" (a line end after the checksum: mailkit's servers accept one, "
                        "a 2017 server answers KO; send nothing after the 40 digits)")
            elif P.uppercase_checksum(framed):
                hint = (" (uppercase hex: mailkit's servers answer 'ERROR: checksum in uppercase hex', "
                        "a 2017 server KO; send the 40 digits in lowercase)")
            _fail(f"the frame {request[:100]!r} does not end in '#' and the SHA-1 of what is before{hint}",
                  f"...#{P.checksum(request.rpartition(b'#')[0])}")


@client_check("client/session-id", "Frames", "basic")
def session_id(run: ClientRun) -> None:
    """Every frame starts with the session id the login gave."""
    given = run.session_ids[:1]
    for request, _, _ in run.frames():
        if not given or not request.startswith(given[0].encode() + b":"):
            _fail(f"the frame {request[:60]!r}", f"starts with the session id {given[0] if given else '?'}:")


@client_check("client/frame-fields", "Frames", "basic")
def frame_fields(run: ClientRun) -> None:
    """Each command on stdin becomes one frame with those fields, in that order."""
    t = run.token
    want = [("email", ("bob", f"Hello {t}", f"How are you {t}")), ("email", (f"nobody{t}", "Lost", "body")),
            ("count", ()), ("getmsg", ("bob",)), ("help", ()), ("dump", ()),
            ("delmsg", ("bob", f"nothing {t}")), ("logoff", ())]
    got = _commands(run)
    if got != want:
        _fail(f"the frames carried {got}", f"{want}")


@client_check("client/no-resend-after-OK", "Replies", "basic")
def no_resend_after_ok(run: ClientRun) -> None:
    """A frame that got a reply other than exactly ``KO`` is never sent again
    (a second ``email`` would be a second mail)."""
    seen: dict[bytes, bytes] = {}
    for request, reply, _ in run.frames():
        if request in seen and seen[request] != b"KO":
            _fail(f"{request[:60]!r} was sent again after the reply {seen[request][:40]!r}",
                  "no resend after OK or an error")
        seen[request] = reply
    if run.stored.count(f"Hello {run.token}") != 1:
        _fail(f"bob has {run.stored.count(f'Hello {run.token}')} copies of the mail", "exactly 1")


@client_check("client/exits-at-end-of-input", "Write your own client", "basic")
def exits(run: ClientRun) -> None:
    """After ``logoff`` (and at the end of its input) the program ends, with status 0."""
    if run.status != 0:
        how = "was still running" if run.status is None else f"ended with status {run.status}"
        _fail(f"the program {how} after its last command", "it ends with status 0")


@client_check("client/resend-after-KO", "Replies", "ko-once")
def resend_after_ko(run: ClientRun) -> None:
    """After exactly ``KO`` the client sends the same frame again (on the
    same socket, as a 2017 client, or on a new connection), and the mail
    arrives once."""
    emails = [(r, rep) for r, rep, _ in run.frames() if _email(P.normalize_frame(r))]
    if len(emails) < 2:
        _fail(f"the email frame was sent {len(emails)} time(s); the first got KO",
              "the same frame sent again after KO")
    if emails[1][0] != emails[0][0]:
        _fail(f"after KO the client sent {emails[1][0][:80]!r}", f"the same bytes again: {emails[0][0][:80]!r}")
    if run.stored.count(f"Retry {run.token}") != 1:
        _fail(f"bob has {run.stored.count(f'Retry {run.token}')} copies", "exactly 1 copy")


@client_check("client/gives-up", "Replies", "ko-always")
def gives_up(run: ClientRun) -> None:
    """A frame that gets ``KO`` every time is sent at most 4 times in all
    (3 retries); then the client goes on (its next command arrives)."""
    counts = [r for r, _, _ in run.frames() if _count(P.normalize_frame(r))]
    names = [n for n, _ in _commands(run)]
    if not 2 <= len(counts) <= 4:
        _fail(f"count was sent {len(counts)} time(s), every time answered KO",
              "sent again after KO, at most 4 times in all")
    if "logoff" not in names:
        _fail("the client did not go on to its next command (logoff) after giving up",
              "it reports the failure and goes on")


@client_check("client/silent-server", "mailkit's client, against any server (a 2017 one too)", "silent")
def silent_server(run: ClientRun) -> None:
    """A server that says nothing (no reply, no close) does not hang the
    client: it sends ``count`` again or goes on to ``logoff``."""
    names = [n for n, _ in _commands(run)]
    counts = [r for r, _, _ in run.frames() if _count(P.normalize_frame(r))]
    if len(counts) < 2 and "logoff" not in names:
        _fail(f"after {SILENT_BUDGET_S:g} s the client had neither sent count again nor gone on",
              "a timeout, then a resend (count changes nothing) or the next command")


@client_check("client/server-keeps-connection-open", "mailkit's client, against any server (a 2017 one too)",
              "keeps-open", required=False)
def keeps_open(run: ClientRun) -> None:
    """Against a server that never closes after its reply (a 2017 one), the
    client still reads each reply and goes on (it does not wait for the close)."""
    names = [n for n, _ in _commands(run)]
    if names != ["count", "email", "logoff"]:
        _fail(f"the frames were {names}", "count, email, logoff: each reply read without waiting for the close")


@client_check("client/colon-in-subject", "#, : and % inside fields", "colon", required=False)
def colon_subject(run: ClientRun) -> None:
    """A subject with ``:`` travels escaped (``#3A``) and arrives exactly."""
    want = f"Re: lunch {run.token}"
    if want not in run.stored:
        _fail(f"bob's subjects: {run.stored}", f"{want!r} (':' in a subject travels as #3A)")


@client_check("client/through-noise", "Replies", "noise")
def through_noise(run: ClientRun) -> None:
    """Through a link flipping a bit in 3 frames in 10: no mail arrives
    twice, and every mail arrives unless each of its (2 or more) attempts was damaged."""
    for i in range(NOISE_MAILS):
        subject = f"Noisy {i} {run.token}"
        copies = run.stored.count(subject)
        tries = [e for e in run.events if f":{subject}:".encode() in e.request]
        if copies > 1:
            _fail(f"{subject!r} arrived {copies} times", "at most once")
        if copies == 0 and not (len(tries) >= 2 and all(e.request_flips for e in tries)):
            _fail(f"{subject!r} never arrived ({len(tries)} attempt(s), "
                  f"{sum(bool(e.request_flips) for e in tries)} damaged by the link)",
                  "sent again after KO until it arrives (or up to 3 more times)")


def run_client_check(words: list[str], name: str, *, seed: int = 0, runs: dict | None = None) -> Result:
    """Run the client check *name* on the program *words*; return its
    :class:`~mailkit.conform.runner.Result` (never prints).  *runs* caches
    scenario runs between checks that share one."""
    spec = CLIENT_CHECKS[name]
    runs = {} if runs is None else runs
    if spec.scenario not in runs:
        runs[spec.scenario] = run_scenario(words, spec.scenario, seed=seed)
    run = runs[spec.scenario]
    result = Result(name, spec.section, spec.required, "client", "pass", seed=seed,
                    doc=f"{spec.doc} (run: {spec.scenario})")
    started = time.monotonic()
    try:
        spec.fn(run)
    except CheckFailed as exc:
        result.status, result.message, result.expected = "fail", exc.message, exc.expected
        result.section = exc.section or spec.section
    except Exception as exc:            # what the client sent broke a judge: the suite's bug
        result.status, result.message = "error", f"the suite failed: {exc!r}"
    result.steps = run.steps() if result.status != "pass" else []
    result.seconds = run.seconds + (time.monotonic() - started)
    return result


def run_client_suite(words: list[str], *, seed: int = 0, strict: bool = False,
                     only: list[str] | None = None) -> Suite:
    """Every client check on the program *words* (``{host}``, ``{port}`` filled in)."""
    suite = Suite(" ".join(words), seed, strict, kind="client")
    started = time.monotonic()
    runs: dict = {}
    for name, spec in CLIENT_CHECKS.items():
        if (spec.required or strict) and (only is None or name in only):
            suite.results.append(run_client_check(words, name, seed=seed, runs=runs))
    suite.seconds = time.monotonic() - started
    return suite
