"""Small helpers for the course notebooks, so that their cells stay short.

Nothing here changes the protocol.  Some helpers put a 2017 habit back on
purpose, to show what went wrong (:class:`Server2017Style`,
:func:`parse_2017`, :class:`SessionIds2017`); :class:`SeqServer` and
:class:`SeqClient` demonstrate sequence numbers (rdt2.1) on top of the
unchanged protocol, for notebook 05.  Each is labelled as what it is.
"""

from __future__ import annotations

import random
import socket
import threading
from dataclasses import dataclass, field

from . import protocol as P
from .client import request_once
from .noise import BitFlipChannel, NoisyLink
from .pictures import Shown
from .responder import MailResponder, reply_text
from .server import REPLIES, MailServer
from .trace import Exchange, Transcript

__all__ = [
    "stop_everything", "press_ctrl_c_after", "raw_request", "parse_2017", "Server2017Style", "FakeClock",
    "SessionIds2017", "clone_random", "Arrival", "arrival", "simple_sum", "sum_blind_flips",
    "simulate_delivery", "analytic_delivery", "SeqServer", "SeqClient", "send_all", "tally",
    "Quiz", "quiz", "QUIZZES", "tcp_connection_diagram", "threads_diagram",
    "handshake_diagram", "rdt21_diagram",
]


# --------------------------------------------------------------------------
# Servers and sockets


def stop_everything() -> int:
    """Stop every server and noisy link this kernel started (so re-running a
    notebook from the top never meets "address in use"); return how many."""
    return MailServer.stop_all() + NoisyLink.stop_all()


def press_ctrl_c_after(seconds: float) -> threading.Timer:
    """Start a timer thread that "presses Ctrl-C" (interrupts the kernel's
    main thread) after *seconds*: a way to show a cell that blocks in
    ``serve_forever()`` and is stopped the way a student would stop it."""
    import _thread

    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.daemon = True
    timer.start()
    return timer


def raw_request(address, data: bytes, *, half_close: bool = True, timeout: float = 5.0) -> bytes:
    """Send *data* on a new TCP connection and read the reply until the
    server closes: one request, one reply, as the protocol says.

    ``half_close=False`` behaves like a 2017 client, which sends and waits
    without saying "that was all"."""
    return request_once(address, data, half_close=half_close, timeout=timeout)


def parse_2017(frame: bytes) -> tuple[bytes, str, bool]:
    """Split *frame* the 2017 way, at the FIRST ``#``: return (content, the
    checksum it claims, whether the checksum matches).  Correct only while
    no field contains a ``#``."""
    content, _, claimed = frame.partition(b"#")
    claimed_text = claimed.decode("utf-8", "replace")
    return content, claimed_text, P.checksum(content) == claimed_text


class Server2017Style(MailServer):
    """mailkit's server with two 2017 habits put back, to watch them fail:

    * it reads a request with ONE ``recv(1024)`` (a bigger frame is cut), and
    * it splits the checksum off at the FIRST ``#`` (:func:`parse_2017`).

    A teaching device only: the real :class:`MailServer` does neither.
    """

    RECV_SIZE = 1024

    class Responder(MailResponder):
        """mailkit's replies, but the checksum is split off at the FIRST ``#``."""

        def respond(self, data: bytes, peer=None):
            if b"#" in data:
                _, _, ok = parse_2017(data)
                if not ok:
                    return "bad frame (split at the first '#')", REPLIES.KO
            return super().respond(data, peer)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.responder = self.Responder(self.store)
        self.emails_in_loop = False      # a teaching server: every request in a worker
        self.sizes: list[int] = []       # bytes each request's one recv() returned
        self._lock = threading.Lock()    # guards sizes (see _OneRecv)

    def new_reader(self) -> "_OneRecv":
        return _OneRecv(self)


class _OneRecv(P.RequestReader):
    """A request is whatever ONE ``recv(1024)`` returns: the 2017 way."""

    def __init__(self, server: Server2017Style):
        # It waits as long as the 2017 server's one blocking recv() did.
        super().__init__(idle_timeout=server.REQUEST_DEADLINE_S, max_bytes=server.max_request_bytes)
        self._server = server

    def feed(self, data: bytes) -> None:
        chunk = data[: self._server.RECV_SIZE]
        with self._server._lock:
            self._server.sizes.append(len(chunk))
        super().feed(chunk)
        self.closed = True          # no more reading: that was "the message"


class FakeClock:
    """A clock for a :class:`~mailkit.store.MailStore` that moves only when
    told: ``clock.advance(31 * 60)`` is half an hour later, without waiting."""

    def __init__(self, start: float = 1_500_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


# --------------------------------------------------------------------------
# Fixed pictures the notebooks show (drawn by mailkit.pictures.ladder)


def tcp_connection_diagram():
    """The life of one connection of the mail protocol, TCP segments included."""
    from .pictures import ladder
    return ladder(["client", "server"], [
        ("client", "server", "SYN", "ink", "connect(): TCP's three-way handshake ..."),
        ("server", "client", "SYN-ACK"),
        ("client", "server", "ACK", "ink", "... the connection is open"),
        ("client", "server", "alice:wonderland", "ink", "sendall(): the request"),
        ("client", "server", "FIN", "ink", "shutdown(SHUT_WR): that was all I send"),
        ("server", "server", "reads the request, answers it"),
        ("server", "client", "OK:<session id>", "OK", "sendall(): the reply"),
        ("server", "client", "FIN", "ink", "close(): the client's recv() now returns b''"),
        ("client", "server", "FIN", "ink", "close(): the connection is gone"),
    ], title="one connection, one request, one reply (TCP's ACKs of data left out)")


def threads_diagram():
    """Who does what when a notebook runs a server in background threads."""
    from .pictures import ladder
    cell, srv, worker = "your cells", "server thread", "worker thread"
    return ladder([cell, srv, worker], [
        (cell, srv, "server.start()", "ink", "bind, listen, start the server thread; return"),
        (cell, cell, "the cell ends: the next cell may run"),
        (cell, srv, "connect()", "ink", "a client socket, in your cell"),
        (srv, srv, "accept(); select() watches every open socket"),
        (cell, srv, "alice:wonderland", "ink", "recv() as soon as bytes arrive"),
        (srv, worker, "the whole request, to a worker"),
        (srv, srv, "back to select(): other clients"),
        (worker, cell, "OK:<session id>", "OK"),
        (worker, worker, "close(); wait for the next request"),
        (cell, srv, "server.stop()", "ink", "wake it, cut open connections, join every thread"),
    ], title="a server in background threads, a client in your cells")


def handshake_diagram():
    """The login handshake, both outcomes."""
    from .pictures import ladder
    return ladder(["client", "server"], [
        ("client", "server", "alice:wonderland", "ink", "USERNAME:PASSWORD, nothing else"),
        ("server", "server", "checks the password's hash"),
        ("server", "client", "OK:<session id>", "OK", "ten digits: the key to every later command"),
        ("client", "server", "alice:wrong", "ink", "a new connection, a wrong password"),
        ("server", "client", "KO: wrong username or password", "ERROR", "no session id"),
        ("client", "server", "<session id>:count#<sha1>", "ink", "a command carries the session id"),
        ("server", "client", "OK: 0 messages", "OK"),
    ], title="the handshake: USERNAME:PASSWORD -> OK:SESSION_ID or KO")


def rdt21_diagram():
    """rdt2.1's answer to a corrupted acknowledgement, as mail."""
    from .pictures import ladder
    return ladder(["sender", "receiver"], [
        ("sender", "receiver", "[seq 0] Lunch?", "ink", "mail 1 carries sequence number 0"),
        ("receiver", "receiver", "expects 0: delivers it, now expects 1"),
        ("receiver", "sender", "OK [ack 0]#<sha1>", "flip", "a bit flips: the reply's checksum fails"),
        ("sender", "receiver", "[seq 0] Lunch?", "ink", "not acknowledged: send the same again"),
        ("receiver", "receiver", "expects 1, got 0: a duplicate, NOT delivered"),
        ("receiver", "sender", "OK: duplicate [ack 0]#<sha1>", "OK", "but acknowledged again"),
        ("sender", "receiver", "[seq 1] Dinner?", "ink", "mail 2 carries 1"),
        ("receiver", "sender", "OK [ack 1]#<sha1>", "OK"),
    ], title="sequence numbers: a resent mail is recognised, not delivered twice")


# --------------------------------------------------------------------------
# Guessable session ids (notebook 02)


class SessionIds2017:
    """Session ids the way a 2017 server could have drawn them: from
    :mod:`random` (the Mersenne Twister), 32 bits written as ten digits."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)

    def new_id(self) -> str:
        return f"{self._rng.getrandbits(32):010d}"


def _unshift_right(y: int, shift: int) -> int:
    x = y
    for _ in range(32 // shift + 1):
        x = y ^ (x >> shift)
    return x & 0xFFFFFFFF


def _unshift_left(y: int, shift: int, mask: int) -> int:
    x = y
    for _ in range(32 // shift + 1):
        x = y ^ ((x << shift) & mask)
    return x & 0xFFFFFFFF


def _untemper(y: int) -> int:
    """Undo the Mersenne Twister's output tempering: one word of its state."""
    y = _unshift_right(y, 18)
    y = _unshift_left(y, 15, 0xEFC60000)
    y = _unshift_left(y, 7, 0x9D2C5680)
    return _unshift_right(y, 11)


def clone_random(ids: list[str]) -> random.Random:
    """Rebuild a Mersenne Twister from 624 of its 32-bit outputs (here, ten
    digit session ids): it then predicts every id that comes after them."""
    if len(ids) < 624:
        raise ValueError(f"need 624 consecutive outputs, got {len(ids)}")
    state = tuple(_untemper(int(i)) for i in ids[-624:])
    clone = random.Random()
    clone.setstate((3, state + (624,), None))
    return clone


# --------------------------------------------------------------------------
# A big frame arrives in pieces (notebook 03)


@dataclass(repr=False)
class Arrival(Shown):
    """How one frame came out of a TCP socket, ``recv(size)`` by ``recv(size)``."""

    size: int                          # the bytes sent
    recv_size: int
    pieces: list[int] = field(default_factory=list)      # bytes per recv()
    complete_after: list[bool] = field(default_factory=list)  # frame complete yet?
    data: bytes = b""

    @property
    def whole(self) -> bool:
        return len(self.data) == self.size

    @property
    def text(self) -> str:
        n = len(self.pieces)
        shown = ", ".join(map(str, self.pieces[:3])) + (", …, " + str(self.pieces[-1]) if n > 3 else "")
        first_complete = self.complete_after.index(True) + 1 if True in self.complete_after else None
        return (f"{self.size:,} bytes sent in one sendall(); they came out of "
                f"{n} recv({self.recv_size}) calls: {shown}\n"
                f"after recv #1 the frame was complete: {self.complete_after[0] if n else False}\n"
                f"the frame was first complete after recv #{first_complete}; "
                f"all bytes arrived: {self.whole}")

    def _repr_svg_(self) -> str:
        from .pictures import pieces_svg
        return pieces_svg(self.pieces, self.size, self.recv_size)


def arrival(data: bytes, recv_size: int = 1024) -> Arrival:
    """Send *data* over a real loopback TCP connection and read it back with
    ``recv(recv_size)`` until the peer closes, asking a
    :class:`~mailkit.protocol.RequestReader` after each piece whether the
    frame is complete.

    Where one ``recv`` stops and the next starts depends on timing; to make
    the picture the same on every run, the reader starts only after every
    byte has been sent (the socket buffers are made big enough to hold them).
    """
    big = max(4 * len(data), 1 << 20)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, big)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        sender = socket.socket()
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, big)
        sender.connect(listener.getsockname())
        conn, _ = listener.accept()

        def send():
            with sender:
                sender.sendall(data)
                sender.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        thread.join(10)
        result = Arrival(len(data), recv_size)
        reader = P.RequestReader()
        chunks = []
        with conn:
            conn.settimeout(5)
            while chunk := conn.recv(recv_size):
                chunks.append(chunk)
                result.pieces.append(len(chunk))
                reader.feed(chunk)
                result.complete_after.append(P._verifies(reader.data))
        result.data = b"".join(chunks)
    return result


# --------------------------------------------------------------------------
# Checksums (notebook 04)


def simple_sum(data: bytes) -> int:
    """A simple checksum: the sum of the bytes, modulo 65536."""
    return sum(data) % 65536


def sum_blind_flips(data: bytes, start: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two bit flips that :func:`simple_sum` cannot see: the same bit turns
    from 1 to 0 in one byte and from 0 to 1 in a later one, so the sum stays
    the same.  Searches from byte *start*."""
    for bit in range(8):
        ones = [i for i in range(start, len(data)) if data[i] >> bit & 1]
        zeros = [i for i in range(start, len(data)) if not data[i] >> bit & 1]
        if ones and zeros:
            a, b = ones[0], next((z for z in zeros if z > ones[0]), zeros[0])
            return tuple(sorted(((a, bit), (b, bit))))
    raise ValueError("every byte is the same: no two flips cancel out")


def analytic_delivery(rate: float, attempts: int = 4) -> float:
    """The chance that a mail gets through within *attempts* attempts when
    each attempt is corrupted, independently, with probability *rate*."""
    return 1.0 - rate ** attempts


def simulate_delivery(rates, *, sends: int = 400, attempts: int = 4, seed: int = 2017) -> list[float]:
    """For each flip rate, send *sends* mails through a seeded
    :class:`~mailkit.noise.BitFlipChannel` into a real server's
    :meth:`~mailkit.server.MailServer.respond` (the server's own parsing and
    checksum check, without sockets, so that thousands of sends take a
    second), retrying after ``KO`` up to *attempts* attempts in all.
    Return the fraction delivered per rate."""
    server = MailServer(users={"sim": "sim", "bob": "builder"})
    try:
        _, reply = server.respond(b"sim:sim")
        frame = P.make_frame(reply.partition(":")[2], "email", "bob", "sim", "a simulated mail")
        fractions = []
        for i, rate in enumerate(rates):
            channel = BitFlipChannel(rate, seed=seed + i)
            delivered = 0
            for _ in range(sends):
                for _ in range(attempts):
                    wire, _ = channel.transmit(frame)
                    if server.respond(wire)[1] != REPLIES.KO:
                        delivered += 1
                        break
            fractions.append(delivered / sends)
        return fractions
    finally:
        server.close()


# --------------------------------------------------------------------------
# Sequence numbers, the rdt2.1 idea (notebook 05) -- a demonstration


SEQ_TAG = "[seq {}] "


def _with_checksum(text: str) -> str:
    return f"{text}#{P.checksum(text.encode('utf-8'))}"


def _verified(reply: bytes) -> str | None:
    """The text of a reply that carries a valid checksum, else ``None``."""
    text, sep, claimed = reply.decode("utf-8", "replace").rpartition("#")
    return text if sep and P.checksum(text.encode("utf-8")) == claimed else None


class SeqServer(MailServer):
    """A DEMONSTRATION of rdt2.1's receiver on top of the mail protocol (the
    protocol itself is unchanged; this server only adds to it):

    * an ``email`` whose subject starts with ``[seq 0]`` or ``[seq 1]`` is
      delivered only if that is the sequence number it expects from that
      sender; a repeat (same number again) is acknowledged again but NOT
      delivered twice;
    * every reply carries its own checksum (``#`` and a SHA-1, like a
      frame), so a flipped reply can be detected by the client.
    """

    class Responder(MailResponder):
        """rdt2.1's receiver: sequence numbers on emails, checksums on replies."""

        def __init__(self, store):
            super().__init__(store)
            self.expected: dict[str, int] = {}       # sender -> seq expected next
            self.duplicates = 0
            self._lock = threading.Lock()            # guards expected and duplicates

        def respond(self, data: bytes, peer=None) -> tuple[str, str]:
            what, reply = self._respond(data, peer)
            return what, _with_checksum(reply)

        def _plain(self, data: bytes, peer) -> tuple[str, str]:
            what, reply = super().respond(data, peer)
            return what, reply_text(reply)          # an email's reply: once it is on disk

        def _respond(self, data: bytes, peer) -> tuple[str, str]:
            try:
                request = P.parse_request(data)
            except P.ProtocolError:
                return self._plain(data, peer)
            if isinstance(request, P.Command) and request.name == "email":
                subject = request.fields[1]
                for seq in (0, 1):
                    if subject.startswith(SEQ_TAG.format(seq)):
                        return self._email_with_seq(request, seq, data, peer)
            return self._plain(data, peer)

        def _email_with_seq(self, request: P.Command, seq: int, data: bytes, peer) -> tuple[str, str]:
            try:
                user = self.store.session_user(request.session_id)
            except Exception:
                return self._plain(data, peer)
            with self._lock:
                expected = self.expected.get(user, 0)
                duplicate = seq != expected
                if duplicate:
                    self.duplicates += 1
                else:
                    self.expected[user] = 1 - expected
            if duplicate:
                return f"{user} email seq {seq} (duplicate)", f"OK: duplicate, not delivered again [ack {seq}]"
            what, reply = self._plain(data, peer)
            if reply != REPLIES.EMAIL_SENT:          # not delivered: expect the same seq again
                with self._lock:
                    self.expected[user] = expected
                return what, reply
            return what, f"{reply} [ack {seq}]"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.responder = self.Responder(self.store)
        self.emails_in_loop = False      # its respond() waits for an email's commit

    @property
    def expected(self) -> dict[str, int]:
        return self.responder.expected

    @property
    def duplicates(self) -> int:
        return self.responder.duplicates


class SeqClient:
    """A DEMONSTRATION of rdt2.1's sender for :class:`SeqServer`: it tags
    each mail's subject with an alternating sequence number (0, 1, 0, ...),
    and sends the same frame again until a reply arrives whose checksum
    verifies and which acknowledges that number.  A corrupted reply, a
    ``KO`` or a lost reply all lead to the same move: send again.

    Like rdt2.1's sender it does not give up: *max_attempts* is only a
    safety net.  (A sender that gave up and went on with the next number
    would fall out of step with the receiver, which would then take the
    next mail for a duplicate.)

    ``.transcript`` records every attempt, as :class:`~mailkit.client.MailClient` does.
    """

    def __init__(self, host: str, port: int, *, max_attempts: int = 100, timeout: float = 5.0):
        self.address = (host, port)
        self.max_attempts, self.timeout = max_attempts, timeout
        self.seq = 0
        self.session_id: str | None = None
        self.transcript = Transcript()

    def login(self, user: str, password: str) -> str:
        try:
            reply = self._exchange("login", P.make_handshake(user, password), 1)
        except OSError as exc:
            raise ConnectionError(f"login failed: {exc}") from None
        text = _verified(reply) or ""
        if not text.startswith("OK:"):
            raise ConnectionError(f"login failed: {reply!r}")
        self.session_id = text[3:].strip()
        return self.session_id

    def send(self, recipient: str, subject: str, body: str) -> str:
        """Send one mail, exactly once; return the verified reply text."""
        frame = P.make_frame(self.session_id, "email", recipient, SEQ_TAG.format(self.seq) + subject, body)
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = self._exchange("email", frame, attempt)
            except OSError:
                continue                                   # lost: send again
            text = _verified(reply)
            if text is None or text == REPLIES.KO:
                continue                                   # corrupted, or KO: send again
            if text.endswith(f"[ack {self.seq}]"):
                self.seq = 1 - self.seq                    # the next mail gets the other number
                return text
            if text.startswith("ERROR"):
                raise P.RemoteProtocolError(text)
        raise ConnectionError(f"no acknowledgement after {self.max_attempts} attempts")

    def _exchange(self, command: str, data: bytes, attempt: int) -> bytes:
        exchange = Exchange(command, attempt, data, data)
        self.transcript.append(exchange)
        try:
            exchange.reply = raw_request(self.address, data, timeout=self.timeout)
        except OSError as exc:
            exchange.error = type(exc).__name__
            raise
        if not exchange.reply:
            exchange.error = "closed without a reply"
            raise ConnectionError("closed without a reply")
        return exchange.reply


def send_all(client, recipient: str, subjects: list[str]) -> None:
    """Send one mail per subject; print how many the client *believes* it
    sent (an exception counts as "not sent", as a user would read it)."""
    believed = 0
    for subject in subjects:
        try:
            client.send(recipient, subject, f"This is {subject.lower()}.")
            believed += 1
        except Exception:
            pass
    print(f"{type(client).__name__} believes it sent {believed} of {len(subjects)} mails")


@dataclass(repr=False)
class Tally(Shown):
    """How many mails a sender meant to send, and how many the recipient got."""

    who: str
    meant: int
    received: list[str]

    @property
    def text(self) -> str:
        distinct = len(set(self.received))
        duplicates = len(self.received) - distinct
        lost = self.meant - distinct
        return (f"{self.who}: meant to send {self.meant}, the inbox holds {len(self.received)} "
                f"({distinct} different, {duplicates} duplicate(s), {lost} lost)")


def tally(who: str, meant: int, subjects: list[str]) -> Tally:
    """Compare the mails meant with the subjects that arrived (the ``[seq n]``
    tag is ignored, so a duplicate shows as one)."""
    clean = [s.split("] ", 1)[1] if s.startswith("[seq ") else s for s in subjects]
    return Tally(who, meant, clean)


# --------------------------------------------------------------------------
# Self-check questions


@dataclass(frozen=True)
class Question:
    accepted: tuple                  # the right answers (after normalising)
    explanation: str                 # shown once the answer is right
    hint: str                        # shown when it is not


def _norm(answer):
    if isinstance(answer, bool):
        return ("bool", answer)
    if isinstance(answer, (bytes, bytearray)):
        return ("bytes", bytes(answer))
    if isinstance(answer, (int, float)):
        return ("number", round(float(answer), 6))
    if isinstance(answer, str):
        return ("text", " ".join(answer.strip().strip("'\"").lower().split()))
    return ("other", repr(answer))


QUIZZES: dict[str, list[Question]] = {
    "01": [
        Question((b"",), "recv() returns b'' (no bytes at all) once the other side has "
                 "closed: that is how a reader knows the reply is over.",
                 "What does recv() return at the end of a stream? Try it on the closed socket above."),
        Question(("b",), "A cell runs to the end before the next one can start: a server "
                 "waiting for connections in the cell itself would block the notebook, "
                 "and your client cell would never run.",
                 "Think about what a cell that never finishes does to the cells after it."),
        Question((2,), "One connection per request: the login is one, the email another.",
                 "Count the requests; each gets a connection of its own."),
    ],
    "02": [
        Question(("c",), "The session id is the only proof of who you are in every later "
                 "frame: whoever can guess it can act as you.",
                 "What does a command frame carry instead of your password?"),
        Question(("a",), "random's Mersenne Twister is rebuilt from 624 outputs; secrets "
                 "draws from the operating system's unpredictable source.",
                 "Look again at clone_random: what did it need?"),
        Question((False,), "Each hash has its own random salt, so the same password "
                 "hashes differently for every user (and every time it is set).",
                 "Compare the two hashes of the same password above."),
    ],
    "03": [
        Question((40,), "A SHA-1 is 160 bits: 40 hexadecimal digits.",
                 "Count the characters after the '#', or compute len(checksum(b'x'))."),
        Question(("last", "the last"), "The checksum is always exactly 40 hex digits at the "
                 "end, so the last '#' is the separator and any '#' before it is content.",
                 "Which '#' can never be part of a field?"),
        Question(("b",), "TCP is a byte stream: it keeps no message boundaries, so the "
                 "receiver reads until the frame is complete (or the sender closes).",
                 "Did one recv(1024) return the 100 KB frame?"),
    ],
    "04": [
        Question((0.9375,), "1 - 0.5**4 = 0.9375: all four attempts must fail for the "
                 "mail to be lost, and that happens with probability 0.5**4.",
                 "The mail is lost only if every one of the 4 attempts is corrupted."),
        Question(("b",), "A sum only sees the total; a bit lost in one byte and gained "
                 "in another leaves the total unchanged. SHA-1 changes completely.",
                 "Look at the two flips of the same bit in two bytes above."),
        Question((False,), "Anyone can recompute a SHA-1: it detects accidents, not "
                 "tampering. Against an attacker you need a key (an HMAC) or TLS.",
                 "Does computing SHA-1 need a secret?"),
    ],
    "05": [
        Question(("c",), "The mail was stored before the reply was lost; the client "
                 "could not know, sent again, and the server stored it again.",
                 "Where was the mail when the OK disappeared?"),
        Question((2,), "Two numbers are enough for a stop-and-wait sender: the receiver "
                 "only has to tell 'the next one' from 'the one I already have'.",
                 "How many mails can be unacknowledged at once in stop-and-wait?"),
        Question(("a",), "TCP's checksum and sequence numbers protect each hop's bytes, "
                 "but a connection that breaks after the server stored the mail leaves the "
                 "client unsure: SMTP can deliver a message twice (RFC 1047).",
                 "Can TCP know whether the server stored the mail before the connection broke?"),
    ],
}


@dataclass(repr=False)
class Quiz(Shown):
    """The result of checking a notebook's self-check answers."""

    lines: list[tuple[str, str]]      # (mark, text)

    @property
    def text(self) -> str:
        return "\n".join(f"{mark} {text}" for mark, text in self.lines)

    def _repr_html_(self) -> str:
        import html
        colour = {"✓": "#1a7f37", "✗": "#b91c1c", "·": "#6b7280"}
        rows = "".join(
            f'<div style="color:{colour[m]}"><b>{m}</b> {html.escape(t)}</div>' for m, t in self.lines
        )
        return f'<div style="font-family:sans-serif;line-height:1.5">{rows}</div>'


def quiz(notebook: str, *answers) -> Quiz:
    """Check the answers to a notebook's self-check questions.

    An answer left as ``None`` is "not answered yet"; a right one shows why
    it is right; a wrong one gets a hint (never the answer)."""
    questions = QUIZZES[notebook]
    if len(answers) != len(questions):
        raise ValueError(f"notebook {notebook} has {len(questions)} questions, got {len(answers)} answers")
    lines = []
    for i, (q, answer) in enumerate(zip(questions, answers), 1):
        if answer is None:
            lines.append(("·", f"Question {i}: not answered yet (set answer_{i} above, then run this cell again)"))
        elif _norm(answer) in {_norm(a) for a in q.accepted}:
            lines.append(("✓", f"Question {i}: right. {q.explanation}"))
        else:
            lines.append(("✗", f"Question {i}: not yet ({answer!r}). Hint: {q.hint}"))
    done = sum(m == "✓" for m, _ in lines)
    lines.append(("·", f"{done} of {len(questions)} right"))
    return Quiz(lines)
