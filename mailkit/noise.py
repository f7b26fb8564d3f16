"""Noise: a seeded, deterministic stand-in for a wire that flips bits.

Two tools, one idea:

* :class:`BitFlipChannel` sits inside :class:`~mailkit.client.MailClient`
  and corrupts the frames it sends: at a *rate* (the chance that a frame
  gets a flipped bit), or exactly where a notebook says ("flip bit 3 of
  byte 17").
* :class:`NoisyLink` is a TCP relay between *any* client and *any* server
  (a student's own, too).  It can flip bits in requests and in replies, drop
  a reply (the lost ``OK`` that makes a client send again), lose a request
  or a reply *silently* (nothing comes back, not even a close: only a timer
  notices), and delay with jitter.

Bits are numbered 0 (least significant, value 1) to 7 (value 128).  The same
seed gives the same flips, run after run.
"""

from __future__ import annotations

import random
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from . import protocol as P
from .listener import Listener, Received, send_and_close

__all__ = ["flip_bit", "flip_bits", "BitFlipChannel", "NoisyLink", "LinkEvent"]

Flip = tuple[int, int]   # (byte index, bit index 0..7)


def flip_bit(data: bytes, byte: int, bit: int) -> bytes:
    """*data* with bit *bit* (0 = least significant) of byte *byte* flipped."""
    if not 0 <= bit < 8:
        raise ValueError(f"a byte has bits 0 to 7, not {bit}")
    if not -len(data) <= byte < len(data):
        raise IndexError(f"byte {byte} is outside the {len(data)} bytes of data")
    out = bytearray(data)
    out[byte] ^= 1 << bit
    return bytes(out)


def flip_bits(data: bytes, flips) -> bytes:
    for byte, bit in flips:
        data = flip_bit(data, byte, bit)
    return data


def _plan(rng: random.Random, rate: float, size: int, bits: int) -> tuple[Flip, ...]:
    """Draw the flips for one frame: with probability *rate*, *bits* random
    distinct bit positions.  Always draws the same count of numbers per
    frame so that one frame's length does not shift the next frame's luck."""
    hit = rng.random() < rate
    picks = [(rng.random(), rng.randrange(8)) for _ in range(bits)]
    if not hit or size == 0:
        return ()
    total = size * 8
    chosen: set[int] = set()
    for u, bit in picks[:total]:
        pos = int(u * size) * 8 + bit
        while pos in chosen:              # two draws hit the same bit: take the next free one
            pos = (pos + 1) % total
        chosen.add(pos)
    return tuple((pos // 8, pos % 8) for pos in sorted(chosen))


class BitFlipChannel:
    """Corrupts outgoing frames, reproducibly.

    ``BitFlipChannel(rate=0.3, seed=1)``: each frame has a 30% chance of
    *bits* flipped bits (1 by default) at random positions.
    ``channel.script([(17, 3)], None)``: the next frame gets bit 3 of byte
    17 flipped, the one after goes through clean; then the rate applies
    again.  ``channel.log`` keeps the flips of every frame sent.
    """

    def __init__(self, rate: float = 0.0, *, seed: int = 0, bits: int = 1):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate is a probability between 0 and 1, not {rate}")
        self.rate, self.bits, self.seed = rate, bits, seed
        self._rng = random.Random(seed)
        self._script: deque = deque()
        self.log: list[tuple[Flip, ...]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"BitFlipChannel(rate={self.rate}, seed={self.seed}, bits={self.bits})"

    def script(self, *plans) -> "BitFlipChannel":
        """Fix the fate of the next frames: each plan is ``None`` (clean),
        one ``(byte, bit)``, or a list of them."""
        for plan in plans:
            if plan is None:
                plan = ()
            elif isinstance(plan, tuple) and len(plan) == 2 and all(isinstance(x, int) for x in plan):
                plan = (plan,)
            self._script.append(tuple(plan))
        return self

    def transmit(self, data: bytes) -> tuple[bytes, tuple[Flip, ...]]:
        """What arrives when *data* is sent: ``(bytes, flips)``."""
        with self._lock:
            if self._script:
                flips = self._script.popleft()
            else:
                flips = _plan(self._rng, self.rate, len(data), self.bits)
            self.log.append(flips)
        return flip_bits(data, flips), flips


@dataclass
class LinkEvent:
    """What the link did to one connection."""

    number: int                      # 1 for the first connection through the link
    request: bytes = b""             # as the client sent it
    request_flips: tuple[Flip, ...] = ()
    reply: bytes = b""               # as the server sent it
    reply_flips: tuple[Flip, ...] = ()
    dropped_reply: bool = False      # closed without the reply: the client sees the close
    lost_request: bool = False       # silently: never forwarded, the client hears nothing
    lost_reply: bool = False         # silently: the server answered, the client hears nothing
    delay: float = 0.0               # seconds the reply was held back (jitter included)
    pieces: int = 1                  # the request went upstream in this many pieces
    error: str = ""

    def summary(self) -> str:
        parts = [f"#{self.number}"]
        head = self.request.split(b"#", 1)[0][:40].decode("utf-8", "replace")
        parts.append(f"request {head!r}")
        if self.request_flips:
            parts.append(f"flipped {list(self.request_flips)}")
        if self.pieces > 1:
            parts.append(f"sent upstream in {self.pieces} pieces")
        rep = self.reply.split(b"\n", 1)[0][:30].decode("utf-8", "replace")
        if not self.lost_request:                 # a lost request never reached the server
            parts.append(f"reply {rep!r}")
        if self.reply_flips:
            parts.append(f"reply flipped {list(self.reply_flips)}")
        if self.delay and not self.lost_request:
            parts.append(f"reply held {self.delay * 1000:.0f} ms")
        if self.dropped_reply:
            parts.append("REPLY DROPPED")
        if self.lost_request:
            parts.append("REQUEST LOST (silently)")
        if self.lost_reply:
            parts.append("REPLY LOST (silently)")
        if self.error:
            parts.append(self.error)
        return "  ".join(parts)


@dataclass
class _Faults:
    """The fate of one connection, drawn when its request has arrived.  The
    reply's flip is drawn then too (as a fraction of its length), so the
    random sequence does not depend on when replies come back."""

    request_flips: tuple[Flip, ...] = ()
    reply_flips: tuple[Flip, ...] | None = None   # None: draw from reply_pick
    reply_pick: tuple[float, int] | None = None    # (fraction of the reply, bit)
    drop_reply: bool = False
    delay: float = 0.0
    lose_request: bool = False
    lose_reply: bool = False
    cuts: tuple[int, ...] = ()      # where the request is cut into pieces upstream

    def flips_for_reply(self, reply: bytes) -> tuple[Flip, ...]:
        if self.reply_flips is not None:
            return self.reply_flips
        if self.reply_pick is None or not reply:
            return ()
        return ((int(self.reply_pick[0] * len(reply)), self.reply_pick[1]),)


class NoisyLink(Listener):
    """A TCP relay that corrupts, drops and delays, between any client and server.

    ``NoisyLink(server.address, rate=0.05, seed=7)``: point a client at
    ``link.address`` instead of the server.  Per connection, with its own
    seeded chance: *rate* flips a bit in the request (only in command
    frames, unless *noisy_handshakes*: a handshake has no checksum, so a
    flipped one just looks like a wrong password); *reply_rate* flips a
    bit in the reply; *drop_rate* closes the connection instead of passing
    the reply on; *delay* holds the reply back for that many seconds.
    ``link.plan_next(...)`` fixes the faults of the next connection instead.
    ``link.events`` records what happened.

    Silent loss, the loss a timer is for (notebook 07): *loss_rate* is the
    chance that a request is lost (never forwarded upstream), and
    *reply_loss_rate* the chance that a reply is lost (the server answered;
    the client gets nothing); each drawn per connection.  A silent loss does
    NOT close the client's connection: no reply, no FIN, no RST.  The link
    holds the connection (one thread) until ``stop()``, a reset from the
    client, or *hold* seconds (``LOSS_HOLD_S``), then closes it.  It cannot
    let go sooner: a client that gives up and closes sends a FIN, which is
    what a half-close sends too (and a client that half-closed sends nothing
    more when it closes), so holding on is the only way to stay silent.  *jitter* makes the delay of each connection
    ``delay + uniform(-jitter, +jitter)`` (never below 0), drawn from the
    link's own seeded random numbers, so a run repeats with its seed.
    Draws for loss and jitter are made only when those are switched on, so
    a link without them meets the same luck as before they existed.

    Pieces: *split_rate* is the chance that a command frame goes upstream in
    2 to 4 pieces, cut at seeded places, *split_gap* seconds apart (TCP may
    deliver any request so; a server must read until the frame is complete).
    Handshakes are never cut: nothing marks their end but 50 ms of quiet.

    A reply with no fault planned is passed on as its bytes arrive, and the
    client's bytes go upstream until either side closes, because a 2017
    server never closes a connection after its reply.  A reply to be
    flipped, dropped or delayed is collected whole first.  A client that
    does not half-close (a 2017 one) may resend after exactly ``KO`` on the
    same connection, once, as the 2017 client does: the resend goes
    upstream on the same connection too, with faults of its own (a second
    event).  Against a server that never closes, the link lets go of a
    connection once the reply has been quiet for ``REPLY_QUIET_S`` (client
    still sending) or ``REPLY_LINGER_S`` (client half-closed).

    Binding (a grader's link, issue 25): with *judged* (``judged(request) ->
    bool``), a plan from ``plan_next`` goes only to a request for which
    *judged* says yes (the exchange a check is judging); any other
    connection gets the rates (none, on a grader's link), never a planned
    fault, however it is timed.  With *on_upstream* (``on_upstream(port)``),
    the link says which local port each upstream connection comes from,
    before it connects, so the server behind can accept only those.
    """

    REPLY_QUIET_S = 0.1     # the reply is complete when the server said nothing more for this long
    REPLY_LINGER_S = 2.0    # ... to a half-closed client that already has every byte (2017 servers never close)
    RESEND_WAIT_S = P.KO_RESEND_S   # after a KO, how long to wait for a same-socket resend
    # A silently lost request or reply: how long the link holds the client's
    # connection at most.  Longer than any client timeout in the course (the
    # longest: MailClient's patience, 5 s x 4), so the client gives up first.
    LOSS_HOLD_S = 30.0
    SPLIT_GAP_S = 0.03      # between two pieces of a split request: past any Nagle delay, below a login's quiet time

    def __init__(self, target: tuple[str, int], *, rate: float = 0.0, reply_rate: float = 0.0,
                 drop_rate: float = 0.0, delay: float = 0.0, seed: int = 0,
                 noisy_handshakes: bool = False, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout: float | None = None, loss_rate: float = 0.0,
                 reply_loss_rate: float = 0.0, jitter: float = 0.0, hold: float | None = None,
                 split_rate: float = 0.0, split_gap: float | None = None,
                 judged=None, on_upstream=None):
        super().__init__(host, port, idle_timeout=idle_timeout)
        self.judged, self.on_upstream = judged, on_upstream     # see "Binding" above
        for name, value in (("rate", rate), ("reply_rate", reply_rate), ("drop_rate", drop_rate),
                            ("loss_rate", loss_rate), ("reply_loss_rate", reply_loss_rate),
                            ("split_rate", split_rate)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability between 0 and 1, not {value}")
        if delay < 0 or jitter < 0:
            raise ValueError(f"delay and jitter are seconds, 0 or more (not {delay}, {jitter})")
        self.target = tuple(target)
        self.rate, self.reply_rate, self.drop_rate, self.delay = rate, reply_rate, drop_rate, delay
        self.loss_rate, self.reply_loss_rate, self.jitter = loss_rate, reply_loss_rate, jitter
        self.hold = self.LOSS_HOLD_S if hold is None else hold
        self.split_rate = split_rate
        self.split_gap = self.SPLIT_GAP_S if split_gap is None else split_gap
        self.noisy_handshakes = noisy_handshakes
        self.seed = seed
        self._rng = random.Random(seed)
        self._plans: deque[_Faults] = deque()
        self.events: list[LinkEvent] = []
        self._events_lock = threading.Lock()    # guards _rng, _plans and events

    def __repr__(self) -> str:
        where = "%s:%d" % self.address if self.running else "stopped"
        return (f"<NoisyLink {where} -> {self.target[0]}:{self.target[1]}, rate={self.rate}, "
                f"reply_rate={self.reply_rate}, drop_rate={self.drop_rate}{self._silence()}, "
                f"seed={self.seed}>")

    def _silence(self) -> str:
        """The repr's part for silent loss, jitter and pieces (empty when off, as before they existed)."""
        parts = [f", {name}={value}" for name, value in (
            ("loss_rate", self.loss_rate), ("reply_loss_rate", self.reply_loss_rate),
            ("delay", self.delay), ("jitter", self.jitter), ("split_rate", self.split_rate)) if value]
        return "".join(parts)

    def plan_next(self, *, flips=(), reply_flips=(), drop_reply: bool = False,
                  delay: float = 0.0, lose_request: bool = False,
                  lose_reply: bool = False) -> "NoisyLink":
        """Fix what happens to the next connection (then the rates apply again).

        *drop_reply* closes the client's connection instead of passing the
        reply on (the client sees the close); *lose_request* never forwards
        the request and *lose_reply* never passes the reply on, both
        silently (the client sees nothing until its own timer fires).
        *delay* holds the reply back, exactly (no jitter)."""
        if sum((drop_reply, lose_request, lose_reply)) > 1:
            raise ValueError("plan one of drop_reply, lose_request, lose_reply, not several")
        with self._events_lock:
            self._plans.append(_Faults(tuple(flips), tuple(reply_flips), None, drop_reply, delay,
                                       lose_request, lose_reply))
        return self

    def _faults(self, request: bytes) -> tuple[LinkEvent, _Faults]:
        with self._events_lock:
            number = len(self.events) + 1
            bound = self.judged is None or self.judged(request)     # a plan is for the judged exchange only
            if self._plans and bound:
                faults = self._plans.popleft()
            else:
                rng = self._rng
                frame = self.noisy_handshakes or P.is_frame(request)
                faults = _Faults(
                    request_flips=_plan(rng, self.rate if frame else 0.0, len(request), 1),
                    drop_reply=rng.random() < self.drop_rate,
                    delay=self.delay,
                )
                hit, pick = rng.random() < self.reply_rate, (rng.random(), rng.randrange(8))
                faults.reply_pick = pick if hit else None
                # Drawn only when switched on (see the class docstring).
                if self.loss_rate:
                    faults.lose_request = rng.random() < self.loss_rate
                if self.reply_loss_rate:
                    faults.lose_reply = rng.random() < self.reply_loss_rate
                if self.jitter:
                    faults.delay = max(0.0, self.delay + rng.uniform(-self.jitter, self.jitter))
                if self.split_rate:     # frames only: a handshake has no end mark but 50 ms of quiet
                    faults.cuts = _cuts(rng, len(request), rng.random() < self.split_rate and frame)
                if faults.drop_reply or faults.lose_request:
                    faults.lose_reply = False        # one fate per reply
                if faults.lose_request:
                    faults.drop_reply = False
            event = LinkEvent(number, request, faults.request_flips,
                              dropped_reply=faults.drop_reply, delay=faults.delay,
                              lost_request=faults.lose_request, lost_reply=faults.lose_reply,
                              pieces=len(faults.cuts) + 1)
            self.events.append(event)
        return event, faults

    def handle_request(self, conn: socket.socket, peer, received: Received):
        if received.error is not None:
            send_and_close(conn, f"ERROR: {received.error}".encode(), drain=True)
            return None
        conn.setblocking(True)
        request, half_closed = received.data, received.closed
        event, faults = self._faults(request)
        if faults.lose_request:
            self._hold(conn, half_closed)       # the server never hears of it
            return None
        try:
            up = self._connect_upstream()
        except OSError as exc:
            event.error = f"server unreachable: {exc}"
            return None       # the client sees a closed connection, as through a dead wire
        with up:
            for resend in (False, True):
                if resend:
                    event, faults = self._faults(request)
                    if faults.lose_request:       # a same-socket resend, lost in turn
                        self._hold(conn, half_closed)
                        return None
                # A reply with no fault planned is passed on as it arrives
                # (a 2017 server never closes); a flip, drop, loss or delay needs it whole.
                stream = not (faults.drop_reply or faults.delay or faults.reply_pick
                              or faults.reply_flips or faults.lose_reply)
                try:
                    reply, more, half_closed = self._forward(
                        conn, up, _apply(self.tamper(request), faults.request_flips),
                        half_closed=half_closed, stream=stream, cuts=faults.cuts)
                except OSError as exc:
                    event.error = f"server unreachable: {exc}"
                    return None
                event.reply = reply
                if stream:
                    wire = b""                 # already passed on
                else:
                    event.reply_flips = faults.flips_for_reply(reply)
                    if faults.delay:
                        self.stop_requested(faults.delay)
                    if faults.drop_reply:
                        return None   # close without a reply: the lost OK
                    if faults.lose_reply:
                        up.close()
                        self._hold(conn, half_closed)   # silence: no reply, no close
                        return None
                    wire = _apply(reply, event.reply_flips)
                if resend or half_closed or reply != b"KO":
                    send_and_close(conn, wire)
                    return None
                # Exactly KO to a client that may resend on this socket (2017).
                if wire:
                    send_and_close(conn, wire, close=False)
                    conn.setblocking(True)
                request = more or self._read_resend(conn)
                if not request:
                    return None
        return None

    def tamper(self, request: bytes) -> bytes:
        """What goes upstream instead of *request* (before any planned flips):
        the request itself here; an attacker's link rewrites it
        (:class:`mailkit.attack.RewritingLink`)."""
        return request

    def _connect_upstream(self) -> socket.socket:
        """A connection to the target; with *on_upstream*, from a port it
        was told of before the connection is made (bound first, so no other
        socket can hold that port while the link does)."""
        if self.on_upstream is None:
            return socket.create_connection(self.target, timeout=self.REQUEST_DEADLINE_S)
        family = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
        up = socket.socket(family, socket.SOCK_STREAM)
        try:
            up.settimeout(self.REQUEST_DEADLINE_S)
            up.bind((self.target[0], 0))
            self.on_upstream(up.getsockname()[1])
            up.connect(self.target)
        except BaseException:
            up.close()
            raise
        return up

    def _hold(self, conn: socket.socket, half_closed: bool) -> None:
        """Say nothing on *conn* (no reply, no FIN) until ``stop()``, *hold*
        seconds, or a reset from the client.  A client's FIN cannot tell us
        it gave up: a half-close and a close send the same FIN, and once it
        came, a later ``close()`` sends nothing at all (its kernel keeps
        the socket in FIN_WAIT_2 and answers nothing we could see without
        sending bytes, which would no longer be silence).  So the link holds
        the connection to the end, and lets it go at once on a reset.
        Waits in steps of at most 0.25 s, so ``stop()`` is noticed soon."""
        deadline = time.monotonic() + self.hold
        with selectors.DefaultSelector() as sel:
            if not half_closed:
                sel.register(conn, selectors.EVENT_READ)
            while not self.stop_requested():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if not sel.get_map():
                    self.stop_requested(min(left, 0.25))
                    continue
                if sel.select(timeout=min(left, 0.25)):
                    try:
                        if not conn.recv(65536):
                            sel.unregister(conn)    # its FIN: closed or half-closed, we cannot tell
                    except OSError:
                        return                  # a reset: it is gone, let go
                    # more bytes (a resend on the same socket): lost as well

    def _read_resend(self, conn: socket.socket) -> bytes:
        try:
            conn.settimeout(self.RESEND_WAIT_S)
            return conn.recv(65536)
        except OSError:
            return b""
        finally:
            try:
                conn.setblocking(True)
            except OSError:
                pass

    def _forward(self, conn: socket.socket, up: socket.socket, request: bytes, *,
                 half_closed: bool, stream: bool, cuts=()) -> tuple[bytes, bytes, bool]:
        """Send *request* upstream and collect the reply, passing on anything
        more the client sends, and its half-close, while the reply comes.
        With *stream*, each piece of the reply goes on to the client as it
        arrives.  Returns (the reply, what the client sent after the reply
        began (a same-socket resend), whether the client has half-closed).

        The reply is complete when the server closes; or, since a 2017
        server never closes, when it has been quiet for ``REPLY_QUIET_S``
        (a client that has not half-closed, which may resend after ``KO``)
        or ``REPLY_LINGER_S`` (a half-closed client, which has had every
        byte already if streamed); or when the client sends again."""
        with selectors.DefaultSelector() as sel:
            start = 0
            for cut in cuts:                  # a split request: its pieces, a gap apart
                up.sendall(request[start:cut])
                start = cut
                self.stop_requested(self.split_gap)
            up.sendall(request[start:])
            if half_closed:
                up.shutdown(socket.SHUT_WR)
            else:
                sel.register(conn, selectors.EVENT_READ)
            sel.register(up, selectors.EVENT_READ)
            chunks: list[bytes] = []
            deadline = time.monotonic() + self.REQUEST_DEADLINE_S
            last = time.monotonic()           # when a reply byte last came
            while time.monotonic() < deadline:
                quiet = self.REPLY_LINGER_S if half_closed and stream else self.REPLY_QUIET_S
                if half_closed and not stream:
                    quiet = None      # a reply to fault: wait for the close, as before
                if chunks and quiet is not None:
                    left = last + quiet - time.monotonic()
                    if left <= 0:
                        break
                    waiting = min(left, 0.25)   # short waits: stop() is noticed soon
                else:
                    waiting = 0.25
                events = sel.select(timeout=waiting)
                for key, _ in events:
                    if key.fileobj is up:
                        chunk = up.recv(65536)
                        if not chunk:
                            return b"".join(chunks), b"", half_closed
                        chunks.append(chunk)
                        last = time.monotonic()
                        if stream:
                            conn.sendall(chunk)
                        continue
                    try:
                        more = conn.recv(65536)
                    except OSError:
                        more = b""
                    if chunks:                # after a reply began: a resend, or the client closed
                        return b"".join(chunks), more, half_closed or not more
                    if more:
                        up.sendall(more)
                    else:                     # the client half-closed: say so upstream
                        sel.unregister(conn)
                        up.shutdown(socket.SHUT_WR)
                        half_closed = True
                if self.stop_requested():
                    break
            return b"".join(chunks), b"", half_closed


def _cuts(rng: random.Random, size: int, hit: bool) -> tuple[int, ...]:
    """Where to cut a request of *size* bytes: 1 to 3 places if *hit*.  The
    same count of numbers is drawn either way (see :func:`_plan`)."""
    draws = [rng.random() for _ in range(3)]
    count = 1 + int(draws[0] * 3)
    if not hit or size < 2:
        return ()
    return tuple(sorted({1 + int(u * (size - 1)) for u in draws[:count]}))


def _apply(data: bytes, flips) -> bytes:
    """Flip what falls inside *data* (negative byte indices count from the end)."""
    return flip_bits(data, [f for f in flips if -len(data) <= f[0] < len(data)])
