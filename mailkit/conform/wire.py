"""The suite's side of the wire: connections whose every byte is recorded.

A check talks to the server under test through a :class:`Wire`.  Each
request and its reply become a :class:`Step` (bytes sent, bytes received,
how the reply ended), so a failing check can show the exchange up to the
step that failed, as CS144's harness does.  :class:`CheckFailed` carries
what was expected and which section of docs/protocol.md says so.

Nothing here prints: a check returns (or raises) data, and
:mod:`mailkit.conform.report` turns it into text, JSON, JUnit or
Gradescope's results.json.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

from .. import protocol as P

__all__ = ["Step", "Answer", "Conn", "Wire", "CheckFailed", "NotApplicable",
           "REPLY_TIMEOUT_S", "QUIET_S"]

# How long a reply may take to start: mailkit answers a damaged frame whose
# '#' was flipped only after its 2 s idle timeout (docs/protocol.md, "When is
# a request complete?"), so a little more than that.
REPLY_TIMEOUT_S = 3.0
# A reply is complete when the server closes, or once bytes came and then
# nothing for this long: mailkit's client waits as long (client.QUIET_S),
# because a 2017 server never closes after replying.
QUIET_S = 0.25
# How long the suite waits for the close after a reply, when a check is about it.
CLOSE_WAIT_S = 1.0
# Through the noisy link: how long to wait before asking the link whether it
# lost the request (then send it again, as a client with a timer would).
LOSS_WAIT_S = 0.6
# Through the noisy link the suite sends a request again after KO or a
# silent loss up to this many times: more than a client's 3, so that a run
# never fails for the link's luck (4 flips in a row at 1 in 5 would happen
# about once in 15 runs of ~40 frames; 9 KOs or losses in a row, at 1 in 4,
# about once in 5,000 runs).
RETRIES = 8
# A reply the suite reads at most (the largest it asks for is a listing
# holding a 100 KB body): a hostile server cannot fill the suite's memory.
MAX_READ = 8 * 1024 * 1024


class CheckFailed(AssertionError):
    """A check's verdict: *message* says what came, *expected* what should
    have, *section* where docs/protocol.md (or PROTOCOL.md) says so."""

    def __init__(self, message: str, *, expected: str = "", section: str = ""):
        super().__init__(message)
        self.message, self.expected, self.section = message, expected, section


class NotApplicable(Exception):
    """The check cannot run against this target (e.g. a restart needs a command)."""


@dataclass
class Step:
    """One request and what came back on its connection."""

    note: str                          # what the suite was doing, in words
    sent: bytes = b""
    received: bytes = b""
    half_closed: bool = False          # the suite closed its sending side after the request
    ending: str = ""                   # "closed", "quiet" (bytes, then silence), "silent", "reset"
    gaps: tuple[float, ...] = ()       # seconds between pieces of the reply
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"note": self.note, "sent": _text(self.sent), "received": _text(self.received),
                "half_closed": self.half_closed, "ending": self.ending,
                "seconds": round(self.seconds, 4)}


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


@dataclass
class Answer:
    """A reply as read: its bytes, how it ended, the gaps between its pieces."""

    data: bytes
    ending: str
    gaps: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    @property
    def kind(self) -> str:
        """"KO", "ERROR" (a named error), "OK", or "none" (no bytes)."""
        return P.parse_reply(self.data).kind if self.data else "none"


class Conn:
    """One connection of a check; :meth:`send` and :meth:`read` record a :class:`Step`."""

    def __init__(self, wire: "Wire", note: str):
        self.wire = wire
        self.sock = socket.create_connection(wire.address, timeout=REPLY_TIMEOUT_S)
        self.step = wire.record(Step(note))

    def send(self, data: bytes, *, pieces: int = 1, gap: float = 0.03, half_close: bool = False,
             note: str | None = None) -> "Conn":
        if self.step.sent and note:            # a second request on this connection: its own step
            self.step = self.wire.record(Step(note))
        cut = max(1, len(data) // pieces)
        for start in range(0, len(data), cut):
            self.sock.sendall(data[start:start + cut])
            if start + cut < len(data):
                time.sleep(gap)
        self.step.sent += data
        if half_close:
            self.sock.shutdown(socket.SHUT_WR)
            self.step.half_closed = True
        return self

    def read(self, *, timeout: float = REPLY_TIMEOUT_S, quiet: float | None = QUIET_S,
             until_close: float = 0.0) -> Answer:
        """Read a reply: wait up to *timeout* for its first byte, then until
        the close or *quiet* seconds with nothing more; then, if
        *until_close*, up to that long more for the close."""
        started = time.monotonic()
        chunks, gaps, last, ending, size = [], [], None, "silent", 0
        while True:
            if last is None:
                wait = timeout - (time.monotonic() - started)
            elif quiet is None:
                wait = timeout
            else:
                wait = quiet - (time.monotonic() - last)
            if wait <= 0:
                ending = "quiet" if chunks else "silent"
                break
            self.sock.settimeout(wait)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                ending = "quiet" if chunks else "silent"
                break
            except ConnectionResetError:
                ending = "reset"
                break
            now = time.monotonic()
            if not chunk:
                ending = "closed"
                break
            if last is not None:
                gaps.append(now - last)
            chunks.append(chunk)
            last = now
            size += len(chunk)
            if size > MAX_READ:
                ending = "too long"
                break
        if ending == "quiet" and until_close > 0:
            self.sock.settimeout(until_close)
            try:
                more = self.sock.recv(65536)
                if not more:
                    ending = "closed"
                else:
                    gaps.append(time.monotonic() - (last or started))
                    chunks.append(more)
            except TimeoutError:
                pass
            except ConnectionResetError:
                ending = "reset"
        answer = Answer(b"".join(chunks), ending, tuple(gaps))
        self.step.received += answer.data
        self.step.ending, self.step.gaps = ending, answer.gaps
        self.step.seconds = time.monotonic() - started
        return answer

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Wire:
    """Every connection of one check, to *address*; through a noisy link
    (*link*) it behaves as a careful client would: after exactly ``KO`` it
    sends again on a new connection (3 more times at most), and when the
    link says it lost a request silently, it sends it again too."""

    address: tuple[str, int]
    link: object = None                  # a NoisyLink in front of the server, or None
    steps: list[Step] = field(default_factory=list)

    def record(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def open(self, note: str) -> Conn:
        return Conn(self, note)

    def ask(self, data: bytes, note: str, *, half_close: bool = False, pieces: int = 1,
            retry: bool = True, quiet: float | None = QUIET_S) -> Answer:
        """One request on a new connection, its reply; through a link, the
        retries a client makes (see the class docstring)."""
        # through a link: a lost request is always sent again (the suite knows it was
        # lost); a KO only when *retry* (a check that expects KO takes it as it is)
        attempts = 1 + (RETRIES if self.link is not None else 0)
        for attempt in range(attempts):
            label = note if attempt == 0 else f"{note} (sent again, attempt {attempt + 1})"
            before = len(self.link.events) if self.link is not None else 0
            with self.open(label) as conn:
                conn.send(data, pieces=pieces, half_close=half_close)
                if self.link is None:
                    return conn.read(quiet=quiet)
                answer = conn.read(timeout=LOSS_WAIT_S, quiet=quiet)
                if answer.ending == "silent":
                    if self._lost(before):
                        continue                  # lost on the way: a timer would send it again
                    answer = conn.read(timeout=REPLY_TIMEOUT_S, quiet=quiet)
            if not (retry and answer.kind == "KO"):
                return answer
        return answer

    def _lost(self, before: int) -> bool:
        return any(e.lost_request for e in self.link.events[before:])
