"""Checks for the "your turn" exercises of notebooks 01-05 and 07.

Each ``check_*(fn)`` calls the student's function on test inputs and
returns a :class:`Verdict`: right, or "not yet" with a hint (never the
answer).  A function that still raises ``NotImplementedError`` (the stub
the notebook ships) gets one fixed line WITHOUT a hint: a hint is earned by
a wrong attempt, and a committed notebook shows the unanswered state, the
same on every run.  Inputs that must arrive in pieces come from a
:class:`ScriptedStream` (a socket-like object whose ``recv`` returns the
pieces it was given, so the check does not depend on timing), and, for the
reading exercises, also from a real loopback TCP connection.
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
from dataclasses import dataclass

from .. import detect, pipelining, rtt
from .. import protocol as P
from .concurrency import OneAtATimeServer, stall_test

__all__ = ["Verdict", "ScriptedStream", "check_recv_all", "check_dispatch",
           "check_parse_login_reply", "check_new_session_id", "check_split_frame",
           "check_read_frame", "check_internet_checksum", "check_blind_flips",
           "check_receiver", "check_sender", "check_rto_update", "check_utilisation",
           "check_gbn_receiver",
           "HINTS", "NOT_ANSWERED"]


# The hints a check gives after a WRONG attempt (never before one, never in a
# committed notebook): each points the way, none is the answer.
HINTS = {
    "recv_all": "one recv() returns whatever has arrived so far, which may be only a part. What "
                "does recv() return once the sender has closed (section 2 printed it)?",
    "dispatch": "the accept loop must be back in accept() at once, while handle(conn) runs "
                "elsewhere. Which threading call runs a function while the caller goes on? "
                "(A Thread's run() and start() differ.)",
    "parse_login_reply": "which replies are a session id? Only OK followed by exactly ten digits; "
                         "every other reply (KO, a reason, an empty or a cut reply) means None. "
                         "Some replies have no ':' at all.",
    "new_session_id": "notebook 2 cloned the random module from 624 of its outputs: which module "
                      "of the standard library is made for secrets? And a ten-digit id may start "
                      "with 0.",
    "split_frame": "the body may contain '#' too; the checksum never does, and it always has the "
                   "same length. Which '#' separates them?",
    "read_frame": "this sender never closes, so b'' never comes. After each piece, ask whether "
                  "what you have is a complete frame, by section 1's rule for the checksum.",
    "internet_checksum": "RFC 1071, section 1, gives the steps: which units are added, what "
                         "happens to a carry, what is done at the end; section 3 works an "
                         "example. What does an odd-length input need?",
    "blind_flips": "which byte positions have the same weight in a sum of 16-bit words? Two "
                   "flips cancel when one adds what the other takes away, at the same weight.",
    "receiver": "which mails does a receiver deliver, and which number must its "
                "acknowledgement of a repeat carry so that the sender can move on?",
    "sender": "the sender may move on only when a reply PROVES this mail arrived. Which of the "
              "replies prove nothing, or prove something about another mail?",
    "rto_update": "RFC 6298 section 2.3 gives the two updates in an order that matters, and "
                  "section 2.4 a floor for the RTO; section 3 of this notebook repeats them.",
    "gbn_receiver": "Kurose & Ross 3.4.3 (Figure 3.21): a Go-Back-N receiver keeps no buffer, "
                    "and its ACKs are cumulative. What does it deliver, and what does it "
                    "acknowledge when a packet it did not expect arrives?",
    "utilisation": "Kurose & Ross 3.4.2: in one cycle, how long is the sender putting bits on "
                   "the link, and how long is the whole cycle, until the ACK is back? A "
                   "utilisation is never more than 1.",
}


@dataclass(repr=False)
class Verdict:
    """Right or not yet, in one line (or a few)."""

    right: bool
    message: str
    stub: bool = False

    @property
    def text(self) -> str:
        if self.right:
            return f"✓ right: {self.message}"
        if self.stub:
            return f"· {self.message}"
        return f"✗ not yet: {self.message}"

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text)

    def __bool__(self) -> bool:
        return self.right


# What a check says before any attempt (the stub the notebook ships): no hint,
# which is earned by a wrong attempt; the same line on every run.
NOT_ANSWERED = ("not answered yet: your function still raises NotImplementedError. Replace "
                "the `raise` with your code, then run this cell again.")


def _stub(hint: str) -> Verdict:
    return Verdict(False, NOT_ANSWERED, stub=True)


class _Failed(Exception):
    """A test input on which the student's function went wrong."""


def _call(fn, *args, hint: str):
    """Call the student's function; turn its exceptions into a hint."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except _Failed:
        raise
    except Exception as exc:
        raise _Failed(f"your function raised {type(exc).__name__}: {exc}. Hint: {hint}") from None


def _run(hint: str, body) -> Verdict:
    try:
        message = body()
    except NotImplementedError:
        return _stub(hint)
    except _Failed as exc:
        return Verdict(False, str(exc))
    return Verdict(True, message)


class ScriptedStream:
    """A stand-in for a connected socket: ``recv(n)`` returns the next piece
    of *pieces* (at most *n* bytes of it), as a real socket returns whatever
    has arrived.  After the last piece it returns ``b''`` (the sender closed)
    or, with ``keep_open=True``, raises :class:`socket.timeout`, as a real
    socket with a timeout does when the sender is connected but silent."""

    def __init__(self, pieces, *, keep_open: bool = False):
        self._pieces = [bytes(p) for p in pieces if p]
        self.keep_open = keep_open
        self.calls = 0

    def recv(self, n: int, flags: int = 0) -> bytes:
        self.calls += 1
        if self.calls > 100_000:
            raise _Failed("your function called recv() more than 100,000 times: does its loop end?")
        if not self._pieces:
            if self.keep_open:
                raise socket.timeout("timed out: the sender is still connected and sent nothing more")
            return b""
        piece = self._pieces[0][:n]
        self._pieces[0] = self._pieces[0][n:]
        if not self._pieces[0]:
            self._pieces.pop(0)
        return piece

    def settimeout(self, value) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _real_pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender = socket.create_connection(listener.getsockname(), timeout=5)
        receiver, _ = listener.accept()
    receiver.settimeout(2)
    return sender, receiver


def _describe(got, limit: int = 40) -> str:
    if isinstance(got, (bytes, bytearray)) and len(got) > limit:
        return f"{len(got):,} bytes ({bytes(got[:limit])!r}…)"
    return repr(got)


# --------------------------------------------------------------------------
# 01 · read until the end of the stream


def check_recv_all(fn) -> Verdict:
    """``fn(sock)`` must return every byte the peer sends, up to its close."""
    hint = HINTS["recv_all"]

    def body():
        pieces = [b"OK:", b"01234", b"56789" * 300, b"!", b" the end"]
        want = b"".join(pieces)
        got = _call(fn, ScriptedStream(pieces), hint=hint)
        if got != want:
            raise _Failed(f"the reply came in {len(pieces)} pieces; you returned {_describe(got)} "
                          f"instead of all {len(want):,} bytes. Hint: {hint}")
        sender, receiver = _real_pair()
        data = bytes(random.Random(1).randbytes(200_000))

        def send():
            with sender:
                sender.sendall(data)
                sender.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        with receiver:
            got = _call(fn, receiver, hint=hint)
        thread.join(5)
        if got != data:
            raise _Failed(f"over a real TCP connection you returned {_describe(got)} of "
                          f"{len(data):,} bytes. Hint: {hint}")
        return ("every byte, from pieces of any size, and from 200,000 bytes over a real "
                "TCP connection.")
    return _run(hint, body)


# --------------------------------------------------------------------------
# 01 · a server that a silent client cannot stall


def check_dispatch(dispatch, *, clients: int = 3) -> Verdict:
    """``dispatch(conn, handle)`` must make sure ``handle(conn)`` runs
    without holding up the server's accept loop."""
    hint = HINTS["dispatch"]
    server = OneAtATimeServer()
    server.dispatch = lambda conn: dispatch(conn, server.handle)

    def body():
        server.start()
        try:
            result = stall_test(server, clients=clients, name="your server")
        finally:
            server.stop()
        if server.errors:
            error = server.errors[0]
            if error.startswith("NotImplementedError"):
                raise NotImplementedError
            raise _Failed(f"your dispatch raised {error}. Hint: {hint}")
        if result.while_silent < clients:
            raise _Failed(f"while one client stayed silent, {result.while_silent} of {clients} "
                          f"other clients were answered: the silent one still holds up the "
                          f"server. Hint: {hint}")
        return (f"{result.while_silent} of {clients} clients answered while a silent client "
                "held one connection: it no longer holds up the others.")
    return _run(hint, body)


# --------------------------------------------------------------------------
# 02 · the handshake's reply, and session ids


def check_parse_login_reply(fn) -> Verdict:
    """``fn(reply: bytes)`` returns the session id (a str of ten digits)
    for ``OK:<ten digits>``, and ``None`` for anything else."""
    hint = HINTS["parse_login_reply"]
    cases = [
        ((b"OK:0123456789",), "0123456789"),
        ((b"KO",), None),
        ((b"KO: wrong username or password",), None),
        ((b"KO: too many wrong passwords for eve; try again in 30 s",), None),
        ((b"",), None),
        ((b"OK:12ab",), None),
        ((b"OK:9876543210",), "9876543210"),
    ]

    def body():
        for (reply,), want in cases:
            got = _call(fn, reply, hint=hint)
            if got != want:
                raise _Failed(f"for {reply!r} you returned {got!r}, not "
                              f"{'None' if want is None else 'the session id as a str'}. Hint: {hint}")
        return "session ids from OK, None for KO, a reason, an empty or a malformed reply."
    return _run(hint, body)


def check_new_session_id(fn, *, draws: int = 300) -> Verdict:
    """``fn()`` returns a new session id: ten decimal digits, unpredictable."""
    hint = HINTS["new_session_id"]

    def body():
        ids = [_call(fn, hint=hint) for _ in range(draws)]
        for i in ids:
            if not (isinstance(i, str) and len(i) == 10 and i.isdigit()):
                raise _Failed(f"you returned {i!r}: a session id is a str of exactly ten digits "
                              f"(leading zeros included). Hint: {hint}")
        if len(set(ids)) < draws:
            raise _Failed(f"{draws} calls gave only {len(set(ids))} different ids. Hint: {hint}")
        if all(i[0] != "0" for i in ids):
            raise _Failed(f"none of {draws} ids started with 0: ten-digit numbers below "
                          f"10**9 should be about one in ten. Hint: {hint}")
        # Seeded twice, a function that draws from the random module gives the
        # same id twice.  Another thread drawing from it in between (a library's
        # background thread) can make one pair differ, not three.
        state = random.getstate()
        try:
            pairs = []
            for _ in range(3):
                random.seed(2017)
                first = _call(fn, hint=hint)
                random.seed(2017)
                pairs.append(first == _call(fn, hint=hint))
        finally:
            random.setstate(state)
        if any(pairs):
            raise _Failed("after random.seed(2017) your function gave the same id twice: it "
                          "draws from the random module, which notebook 2 cloned from 624 "
                          f"outputs. Hint: {hint}")
        return f"{draws} ids of ten digits, all different, and not from the random module."
    return _run(hint, body)


# --------------------------------------------------------------------------
# 03 · framing


def check_split_frame(fn) -> Verdict:
    """``fn(frame: bytes)`` returns ``(content, checksum)``: the bytes before
    the separating ``#`` and the 40 hex digits after it."""
    hint = HINTS["split_frame"]
    frames = [
        P.make_frame("0123456789", "email", "bob", "Hello", "How are you?"),
        P.make_frame("0123456789", "email", "bob", "Room", "Meet in room #5"),
        P.make_frame("0123456789", "email", "bob", "Re: #5", "a # b # c"),
    ]

    def body():
        for frame in frames:
            content, _, digest = frame.rpartition(b"#")
            got = _call(fn, frame, hint=hint)
            if not (isinstance(got, tuple) and len(got) == 2):
                raise _Failed(f"you returned {got!r}: return a pair (content, checksum). Hint: {hint}")
            c, d = got
            d = d.encode() if isinstance(d, str) else d
            if c != content or d != digest:
                raise _Failed(f"for {frame[:60]!r}… your content was {_describe(c, 60)}. Hint: {hint}")
        return "content and checksum, with '#' in the body and in the subject too."
    return _run(hint, body)


def _is_complete(data: bytes) -> bool:
    content, sep, claimed = data.rpartition(b"#")
    return bool(sep) and hashlib.sha1(content).hexdigest().encode() == claimed


def check_read_frame(fn) -> Verdict:
    """``fn(sock)`` reads one frame and returns it as soon as it is complete
    (it ends in ``#`` and a checksum that matches what came before), without
    waiting for the sender to close."""
    hint = HINTS["read_frame"]
    room = P.make_frame("0123456789", "email", "bob", "Room", "Meet in room #5")
    tricky_body = "code #" + "0" * 40 + " is not a checksum"
    tricky = P.make_frame("0123456789", "email", "bob", "Hex", tricky_body)
    cut = tricky.index(b"0" * 40) + 40
    long = P.make_frame("0123456789", "email", "bob", "Long", "All work and no play. " * 200)
    scripts = [
        ("a frame in 3 pieces", [room[:20], room[20:45], room[45:]]),
        ("a body that contains '#' and 40 zeros", [tricky[:cut], tricky[cut:]]),
        (f"a {len(long):,}-byte frame", [long[i:i + 1000] for i in range(0, len(long), 1000)]),
    ]

    def body():
        for name, pieces in scripts:
            want = b"".join(pieces)
            got = _call(fn, ScriptedStream(pieces, keep_open=True), hint=hint)
            if got != want:
                raise _Failed(f"{name}: you returned {_describe(got)} instead of the "
                              f"{len(want):,}-byte frame. Hint: {hint}")
        sender, receiver = _real_pair()
        try:
            sender.sendall(long[:500])
            sender.sendall(long[500:])       # and the sender stays connected
            with receiver:
                got = _call(fn, receiver, hint=hint)
        finally:
            sender.close()
        if got != long:
            raise _Failed(f"over a real TCP connection you returned {_describe(got)}. Hint: {hint}")
        return ("each frame as soon as it was complete, whatever the pieces, and over a real "
                "connection whose sender stayed connected.")
    return _run(hint, body)


# --------------------------------------------------------------------------
# 04 · the Internet checksum


def check_internet_checksum(fn) -> Verdict:
    """``fn(data: bytes)`` returns the RFC 1071 checksum as an int."""
    hint = HINTS["internet_checksum"]
    rng = random.Random(1071)
    vectors = [bytes([0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]),   # RFC 1071 §3
               b"", b"\x01", b"\xff\xff\xff\xff\x00\x01", b"Shall we meet at noon by the fountain?",
               rng.randbytes(101), rng.randbytes(1500)]

    def body():
        for data in vectors:
            want = detect.internet_checksum(data)
            got = _call(fn, data, hint=hint)
            if got == want:
                continue
            shown = _describe(data, 12)
            if not isinstance(got, int) or isinstance(got, bool):
                raise _Failed(f"for {shown} you returned {got!r}: return the checksum as an int "
                              f"from 0 to 0xFFFF. Hint: {hint}")
            if got == (~want & 0xFFFF):
                why = "that is the sum itself: the checksum is its complement."
            elif got == detect.byte_sum(data):
                why = "that is the sum of the bytes, not of 16-bit words."
            elif len(data) % 2:
                why = "the data has an odd length."
            else:
                why = "a carry out of bit 15 must be added back in."
            want_text = "0x" + format(want, "04x")
            raise _Failed(f"for {shown} you returned {got!r}, not {want_text}: {why} Hint: {hint}")
        return "RFC 1071's own example (0x220d), odd lengths, carries, and 1,500 random bytes."
    return _run(hint, body)


def check_blind_flips(fn) -> Verdict:
    """``fn(data)`` returns two ``(byte, bit)`` flips that change *data* but
    not its Internet checksum."""
    hint = HINTS["blind_flips"]
    samples = [b"Shall we meet at noon by the fountain?", b"0123456789:email:bob:Lunch:Hi",
               bytes(random.Random(4).randbytes(64))]

    def body():
        for data in samples:
            flips = _call(fn, data, hint=hint)
            try:
                (b1, k1), (b2, k2) = flips
                ok = all(isinstance(v, int) for v in (b1, k1, b2, k2))
                ok = ok and 0 <= b1 < len(data) and 0 <= b2 < len(data) and 0 <= k1 < 8 and 0 <= k2 < 8
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise _Failed(f"you returned {flips!r}: return two pairs (byte, bit), bytes "
                              f"0..{len(data) - 1}, bits 0..7. Hint: {hint}")
            damaged = detect.flip(data, flips)
            if damaged == data:
                raise _Failed(f"your flips {flips!r} leave the data unchanged (the same bit "
                              f"twice?). Hint: {hint}")
            if detect.internet_checksum(damaged) != detect.internet_checksum(data):
                raise _Failed(f"for {data[:20]!r}… your flips {flips!r} change the Internet "
                              f"checksum, so it catches them. Hint: {hint}")
        return ("two flips the Internet checksum cannot see, in three different messages "
                "(CRC-32 and SHA-1 catch them).")
    return _run(hint, body)


# --------------------------------------------------------------------------
# 05 · the two ends of stop-and-wait (rdt2.1)


def check_receiver(fn) -> Verdict:
    """``fn(expected, seq)`` -> ``(deliver, ack, next_expected)``: what a
    receiver expecting *expected* does with a mail numbered *seq*."""
    hint = HINTS["receiver"]
    cases = [((0, 0), (True, 0, 1)), ((0, 1), (False, 1, 0)),
             ((1, 1), (True, 1, 0)), ((1, 0), (False, 0, 1))]

    def body():
        for (expected, seq), want in cases:
            got = _call(fn, expected, seq, hint=hint)
            if (tuple(got) if isinstance(got, (tuple, list)) else got) != want:
                raise _Failed(f"expecting {expected}, a mail numbered {seq} came: you returned "
                              f"{got!r}, as (deliver, ack, next_expected). Hint: {hint}")
        return "new mails delivered once, repeats acknowledged but not delivered."
    return _run(hint, body)


def check_sender(fn) -> Verdict:
    """``fn(seq, reply)`` -> ``"next"`` or ``"resend"``: what a sender that
    sent mail *seq* does with *reply* (the reply's text once its checksum
    verified, or ``None`` if it was damaged or never came)."""
    hint = HINTS["sender"]
    cases = [((0, None), "resend"), ((0, "KO"), "resend"),
             ((0, "OK: Email Sent [ack 0]"), "next"),
             ((0, "OK: duplicate, not delivered again [ack 0]"), "next"),
             ((0, "OK: Email Sent [ack 1]"), "resend"),
             ((1, "OK: Email Sent [ack 1]"), "next"),
             ((1, "OK: duplicate, not delivered again [ack 0]"), "resend")]

    def body():
        for (seq, reply), want in cases:
            got = _call(fn, seq, reply, hint=hint)
            if got != want:
                raise _Failed(f"having sent mail {seq}, with reply {reply!r} you returned "
                              f"{got!r}. Hint: {hint}")
        return "damaged, missing, KO and old replies resent; only a verified ack of this number moves on."
    return _run(hint, body)


# -- 07 ---------------------------------------------------------------------


def check_rto_update(fn) -> Verdict:
    """``fn(srtt, rttvar, r)`` returns ``(srtt, rttvar, rto)`` after a
    sample *r* that is not the first (RFC 6298, section 2.3), with the RFC's
    1 s floor on RTO."""
    hint = HINTS["rto_update"]
    cases = [(0.100, 0.050, 0.120), (0.020, 0.010, 0.300), (0.500, 0.100, 0.400),
             (1.000, 0.400, 1.100), (0.030, 0.000, 0.030)]

    def body():
        for srtt, rttvar, r in cases:
            est = rtt.RttEstimator(srtt=srtt, rttvar=rttvar)
            est.update(r)
            want = (est.srtt, est.rttvar, est.rto)
            got = _call(fn, srtt, rttvar, r, hint=hint)
            if not (isinstance(got, tuple) and len(got) == 3
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in got)):
                raise _Failed(f"for srtt={srtt}, rttvar={rttvar}, r={r} you returned {got!r}: "
                              f"return three numbers (srtt, rttvar, rto). Hint: {hint}")
            if all(abs(g - w) < 1e-9 for g, w in zip(got, want)):
                continue
            new_srtt = 7 / 8 * srtt + 1 / 8 * r
            if abs(got[1] - (3 / 4 * rttvar + 1 / 4 * abs(new_srtt - r))) < 1e-9:
                why = "RTTVAR was computed from the NEW SRTT: the RFC uses the old one."
            elif abs(got[0] - want[0]) > 1e-9:
                why = "SRTT is off: alpha is 1/8, the new sample's weight."
            elif abs(got[1] - want[1]) > 1e-9:
                why = "RTTVAR is off: beta is 1/4, the weight of |SRTT - R|."
            elif abs(got[2] - (want[0] + 4 * want[1])) < 1e-9:
                why = "RTO is below 1 s: RFC 6298 (2.4) rounds it up to 1 s."
            else:
                why = "RTO is SRTT + 4 x RTTVAR, with the new values, at least 1 s."
            raise _Failed(f"for srtt={srtt}, rttvar={rttvar}, r={r} you returned "
                          f"({', '.join(f'{v:.4f}' for v in got)}), not "
                          f"({', '.join(f'{v:.4f}' for v in want)}): {why} Hint: {hint}")
        return "RTTVAR from the old SRTT, then SRTT, then RTO with its 1 s floor, on 5 samples."
    return _run(hint, body)


def check_utilisation(fn) -> Verdict:
    """``fn(bits, rate, rtt, window)`` returns the sender's utilisation
    without loss: min(1, N·(L/R) / (RTT + L/R))."""
    hint = HINTS["utilisation"]
    cases = [(8000, 1e9, 0.030, 1), (8000, 1e6, 0.040, 1), (8000, 1e6, 0.040, 3),
             (8000, 1e6, 0.040, 6), (8000, 1e6, 0.040, 10), (12000, 1.5e6, 0.0, 1)]

    def body():
        for bits, rate, rtt_s, window in cases:
            want = pipelining.utilisation(window, bits, rate, rtt_s)
            got = _call(fn, bits, rate, rtt_s, window, hint=hint)
            if isinstance(got, (int, float)) and not isinstance(got, bool) and abs(got - want) < 1e-9:
                continue
            if not isinstance(got, (int, float)) or isinstance(got, bool):
                raise _Failed(f"for L={bits:g}, R={rate:g}, RTT={rtt_s:g}, N={window} you returned "
                              f"{got!r}: return a number from 0 to 1. Hint: {hint}")
            t = bits / rate
            if abs(got - window * t / (rtt_s + t)) < 1e-9:
                why = "a utilisation cannot exceed 1: the link is busy all the time at most."
            elif abs(got - min(1.0, window * t / rtt_s if rtt_s else 1.0)) < 1e-9:
                why = "one cycle is RTT + L/R: the last bit leaves after L/R, its ACK comes an RTT later."
            else:
                why = "check the units: L in bits, R in bits per second, RTT in seconds."
            raise _Failed(f"for L={bits:g}, R={rate:g}, RTT={rtt_s:g}, N={window} you returned "
                          f"{got!r}, not {want:.6f}: {why} Hint: {hint}")
        return ("stop-and-wait on Kurose & Ross's 1 Gbit/s link (U = 0.00027), and windows "
                "of 1, 3, 6 and 10 on a 1 Mbit/s one.")
    return _run(hint, body)


# Settings the Go-Back-N check simulates: (window, loss, seed); 120 mails each.
GBN_RUNS = [(4, 0.0, 0), (4, 0.1, 1), (8, 0.2, 2), (1, 0.1, 3), (16, 0.3, 4)]


def check_gbn_receiver(fn) -> Verdict:
    """``fn(expected, n)`` -> ``(deliver, ack, next_expected)``: Go-Back-N's
    receiver.  Checked on single packets first, then inside
    :func:`mailkit.pipelining.simulate` against the built-in receiver: every
    mail delivered once and in order, with the same sends and the same time."""
    hint = HINTS["gbn_receiver"]
    cases = [(0, 0), (0, 1), (3, 3), (3, 5), (3, 1), (7, 7)]

    def body():
        for expected, n in cases:
            want = pipelining.gbn_receiver(expected, n)
            got = _call(fn, expected, n, hint=hint)
            if not (isinstance(got, (tuple, list)) and len(got) == 3):
                raise _Failed(f"expecting {expected}, packet {n} came: you returned {got!r}; "
                              f"return three values (deliver, ack, next_expected). Hint: {hint}")
            deliver, ack, nxt = got
            if bool(deliver) != want[0] or nxt != want[2]:
                raise _Failed(f"expecting {expected}, packet {n} came: you returned {tuple(got)!r}. "
                              f"Should it be delivered, and which packet comes next? Hint: {hint}")
            nothing_yet = want[1] is None and (ack is None or (isinstance(ack, int) and ack < 0))
            if ack != want[1] and not nothing_yet:
                raise _Failed(f"expecting {expected}, packet {n} came: you acknowledged {ack!r}. "
                              f"Which packets does the receiver hold, all in order? (ACKs are "
                              f"not lost in this model, so a missing or wrong repeat ACK would "
                              f"go unnoticed in the simulation; on a real path it tells the "
                              f"sender how far the receiver got.) Hint: {hint}")
        for window, loss, seed in GBN_RUNS:
            settings = f"window {window}, loss {loss:g}, seed {seed}"
            want = pipelining.simulate("gbn", window=window, loss=loss, seed=seed)
            try:
                got = pipelining.simulate("gbn", window=window, loss=loss, seed=seed, receiver=fn)
            except NotImplementedError:
                raise
            except Exception as exc:
                raise _Failed(f"with {settings}, your receiver made the simulation raise "
                              f"{type(exc).__name__}: {exc}. Hint: {hint}") from None
            if got.delivered != list(range(got.mails)):
                missing = sorted(set(range(got.mails)) - set(got.delivered))
                twice = len(got.delivered) - len(set(got.delivered))
                what = (f"{len(missing)} mails never delivered (the first: {missing[0]})" if missing
                        else f"{twice} mails delivered twice" if twice
                        else "the mails delivered out of order")
                raise _Failed(f"with {settings}: {what}. An ACK tells the sender that everything "
                              f"up to its number arrived. Hint: {hint}")
            if (got.sends, got.time) != (want.sends, want.time):
                raise _Failed(f"with {settings} every mail arrived, but after {got.sends} sends and "
                              f"{got.time * 1000:.0f} virtual ms, where Go-Back-N's receiver needs "
                              f"{want.sends} and {want.time * 1000:.0f} ms. Hint: {hint}")
        return (f"one packet at a time, then {len(GBN_RUNS)} simulated runs of 120 mails "
                "(windows 1 to 16, loss up to 30 %): every mail once, in order, with the "
                "same sends and times as Go-Back-N's receiver.")
    return _run(hint, body)
