"""Captures of TCP exchanges that never happened, for lab 7.

Recording real segments needs root (:mod:`mailkit.capture`), and a recording
is the same on every run.  Lab 7's grader needs a *new* capture per run,
with answers only it knows: so it makes one up.  :func:`made_up_capture`
draws an exchange from a random generator (initial sequence numbers,
ports, MSS, how the request is cut into segments, which side closes first,
where a refused connection attempt sits) and builds it segment by segment
with :func:`mailkit.pcap.tcp_frame`, keeping the numbers TCP would keep
(RFC 9293: a SYN and a FIN each take one sequence number, data takes one per
byte, an ACK names the next byte expected).  It returns the frames and the
:class:`Truth`, the answers the grader compares with.

The exchange is the course's own: a client connects, sends one mail frame
(in several segments when it is longer than the MSS), and the server
answers ``OK: Email Sent``; then either the client half-closes first (as
mailkit's client does) or the server closes first (as the 2017 client,
which never half-closes, lets it).  Besides it, a client tries a port
nobody listens on and gets a RST (RFC 9293 section 3.10.7.1: ``<SEQ=0>
<ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>``).

The times are those of a capture taken at the client, on a path with a
round-trip time and a rate drawn for the capture: a segment from the server
that answers the client arrives one RTT (give or take 10 %) after the
client's last segment, and the client's data segments leave one after
another, each L/R after the one before.  (Where the capture simplifies: the
client sends the next part of its request only after the server's ACK of
the last two, so the transfer proceeds in rounds of two segments.)  The
timing has a generator of its own, seeded from the two ISNs, so that it
draws nothing from *rng*: every other answer is what it was before the
times were modelled.
"""

from __future__ import annotations

import os
import random
import stat
import tempfile
from dataclasses import dataclass

from mailkit import pcap
from mailkit.protocol import make_frame

__all__ = ["Truth", "made_up_capture", "write_capture", "capture_bytes", "same", "close",
           "example_capture", "EXAMPLE_SEED"]

EXAMPLE_SEED = 7            # the capture of lab 7's visible checks
HOST = "127.0.0.1"
START = 1_796_000_000.0     # a time in 2026: the capture's first frame
MSS_CHOICES = (536, 1024, 1200, 1400, 1460)   # small MSS: a mail frame takes a few segments
REPLY = b"OK: Email Sent"
RTT_RANGE = (0.010, 0.080)  # seconds: a path across a city to one across a continent
RATES = (1e6, 2e6, 5e6, 10e6)   # bits per second: slow enough that L/R shows in the times
# A timestamp in a classic pcap file has microseconds: a time computed from two of
# them is exact to 2 us; the checks allow that much and no more.
TIME_RESOLUTION = 1e-6


@dataclass(frozen=True)
class Truth:
    """What a capture made by :func:`made_up_capture` holds: lab 7's answers."""

    client_isn: int          # the client's SYN's sequence number, as on the wire
    server_isn: int          # the SYN-ACK's
    request_segments: int    # segments from the client that carried request bytes
    request_bytes: int
    closed_first: str        # "client" or "server": who sent the first FIN
    refused_port: int        # the port the refused SYN went to
    refused_isn: int         # that SYN's sequence number
    client_mss: int
    server_mss: int
    handshake_rtt: float = 0.0       # seconds from the client's SYN to the SYN-ACK
    throughput: float = 0.0          # request bytes per second: first request segment to its last ACK


class _Side:
    """One end of a made-up connection: its address and its next sequence number."""

    def __init__(self, port: int, isn: int):
        self.port, self.next = port, isn


def _segments(size: int, mss: int, rng: random.Random) -> list[int]:
    """How a sender cuts *size* bytes: full segments of *mss* bytes, but
    now and then a shorter one (the application wrote in pieces)."""
    out, left = [], size
    while left:
        n = min(left, mss)
        if left > mss and rng.random() < 0.25:
            n = rng.randint(mss // 3, mss - 1)
        out.append(n)
        left -= n
    return out


def made_up_capture(rng: random.Random, *, closes_first: str | None = None,
                    refused_first: bool | None = None) -> tuple[list[tuple[float, bytes]], Truth]:
    """Frames ``(time, bytes)`` of one made-up mail exchange and one refused
    connection, and the answers.  *closes_first* ("client" or "server") and
    *refused_first* fix what is otherwise drawn from *rng*."""
    closes_first = closes_first or rng.choice(("client", "server"))
    if refused_first is None:
        refused_first = rng.random() < 0.5
    client_mss, server_mss = rng.sample(MSS_CHOICES, 2)    # never equal: an answer the wrong way round is never right
    server_port = rng.choice((2525, 2526, 8025)) if rng.random() < 0.5 else rng.randint(1024, 30000)
    client = _Side(rng.randint(32768, 60999), rng.randrange(2**32))
    server = _Side(server_port, rng.randrange(2**32))
    if rng.random() < 0.2:      # now and then a number that wraps past 2**32 during the exchange
        client.next = 2**32 - rng.randint(1, 3000)
    isns = (client.next, server.next)
    body = "".join(rng.choice("abcdefghij klmnop") for _ in range(rng.randint(200, 5000)))
    request = make_frame(f"{rng.randrange(10**10):010d}", "email", "bob", f"note {rng.randrange(1000)}", body)
    clock = [START + rng.random()]
    frames: list[tuple[float, bytes]] = []
    ip_ids = {"c": rng.randrange(65536), "s": rng.randrange(65536)}

    timing = random.Random(isns[0] * 2**32 + isns[1])      # draws nothing from rng
    rtt, rate = timing.uniform(*RTT_RANGE), timing.choice(RATES)
    last = {"who": None}
    when: dict[str, float] = {}

    def send(who: str, src: _Side, dst: _Side, flags: int, payload: bytes = b"", options: bytes = b"",
             ack: int | None = None, window: int = 65483, mark: str | None = None) -> None:
        clock[0] += rng.uniform(0.00001, 0.0003)
        if who == "s" and last["who"] == "c":
            clock[0] += rtt * timing.uniform(0.9, 1.1)      # the answer comes back one RTT later
        elif who == "c" and last["who"] == "c" and payload:
            clock[0] += len(payload) * 8 / rate              # back to back: L/R apart
        last["who"] = who
        clock[0] = round(clock[0], 6)                        # what a pcap timestamp holds
        if mark:
            when.setdefault(mark, clock[0])
            when[mark + " last"] = clock[0]
        ack_no = dst.next if ack is None else ack
        frames.append((clock[0], pcap.tcp_frame(
            src=HOST, dst=HOST, sport=src.port, dport=dst.port, seq=src.next,
            ack=ack_no if flags & pcap.ACK else 0, flags=flags, window=window, options=options,
            payload=payload, ip_id=ip_ids[who])))
        ip_ids[who] = (ip_ids[who] + 1) % 65536
        src.next = (src.next + len(payload) + bool(flags & pcap.SYN) + bool(flags & pcap.FIN)) % 2**32

    # the refused attempt: a SYN to a closed port, answered by RST, ACK
    refused_port = rng.randint(1024, 65000)
    while refused_port == server_port:
        refused_port = rng.randint(1024, 65000)
    lonely = _Side(rng.randint(32768, 60999), rng.randrange(2**32))
    while lonely.port == client.port:
        lonely.port = rng.randint(32768, 60999)
    refused_isn = lonely.next
    closed = _Side(refused_port, 0)

    def refused() -> None:
        send("c", lonely, closed, pcap.SYN, options=pcap.mss_option(client_mss), window=65495)
        send("s", closed, lonely, pcap.RST | pcap.ACK, window=0)

    if refused_first:
        refused()
    # the three-way handshake
    send("c", client, server, pcap.SYN, options=pcap.mss_option(client_mss), window=65495, mark="syn")
    send("s", server, client, pcap.SYN | pcap.ACK, options=pcap.mss_option(server_mss), window=65483,
         mark="syn-ack")
    send("c", client, server, pcap.ACK)
    # the request, cut to the server's MSS, and the server's ACKs (one per two segments)
    sizes = _segments(len(request), server_mss, rng)
    at = 0
    for i, n in enumerate(sizes):
        final = i == len(sizes) - 1
        send("c", client, server, pcap.ACK | (pcap.PSH if final else 0), request[at:at + n], mark="data")
        at += n
        if i % 2 == 1 or final:
            send("s", server, client, pcap.ACK, mark="data-ack")
    # the reply and the close
    if closes_first == "client":
        send("c", client, server, pcap.FIN | pcap.ACK)        # shutdown(SHUT_WR): "that was all"
        send("s", server, client, pcap.ACK)
        send("s", server, client, pcap.PSH | pcap.ACK, REPLY)
        send("c", client, server, pcap.ACK)
        send("s", server, client, pcap.FIN | pcap.ACK)
        send("c", client, server, pcap.ACK)
    else:
        send("s", server, client, pcap.PSH | pcap.ACK, REPLY)
        send("c", client, server, pcap.ACK)
        send("s", server, client, pcap.FIN | pcap.ACK)        # the server closes after its reply
        send("c", client, server, pcap.ACK)
        send("c", client, server, pcap.FIN | pcap.ACK)
        send("s", server, client, pcap.ACK)
    if not refused_first:
        refused()
    truth = Truth(client_isn=isns[0], server_isn=isns[1], request_segments=len(sizes),
                  request_bytes=len(request), closed_first=closes_first, refused_port=refused_port,
                  refused_isn=refused_isn, client_mss=client_mss, server_mss=server_mss,
                  handshake_rtt=round(when["syn-ack"] - when["syn"], 6),
                  throughput=len(request) / round(when["data-ack last"] - when["data"], 6))
    return frames, truth


def write_capture(path, rng: random.Random, **choices) -> Truth:
    """Write a made-up capture to *path*; return its answers."""
    frames, truth = made_up_capture(rng, **choices)
    pcap.write_pcap(path, frames)
    return truth


def capture_bytes(rng: random.Random, **choices) -> tuple[bytes, Truth]:
    """A made-up capture as the bytes of a pcap file, and its answers."""
    frames, truth = made_up_capture(rng, **choices)
    return pcap.pcap_bytes(frames), truth


def same(answer, expected) -> bool:
    """Whether a student's *answer* (back from the kernel as plain data) is
    *expected*: a tuple may come back as a list; a bool is not a number."""
    if isinstance(expected, tuple):
        return (isinstance(answer, (tuple, list)) and len(answer) == len(expected)
                and all(same(a, e) for a, e in zip(answer, expected)))
    return type(answer) is type(expected) and answer == expected


def close(answer, expected: float, *, spread: float) -> bool:
    """Whether *answer* is a number (not a bool) within *spread* of *expected*."""
    return (isinstance(answer, (int, float)) and not isinstance(answer, bool)
            and abs(answer - expected) <= spread)


def example_capture(path=None) -> str:
    """Lab 7's example capture (the same on every run), written to *path*,
    or, if None, to ``mailkit-lab07-<uid>/example.pcap`` in the temporary
    folder (one folder per user, only theirs, written again on each call:
    a kernel that is killed leaves nothing new behind); returns the path."""
    if path is None:
        path = os.path.join(_own_folder(), "example.pcap")
    data, _ = capture_bytes(random.Random(EXAMPLE_SEED), closes_first="client", refused_first=False)
    fd, part = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".part")
    with os.fdopen(fd, "wb") as f:          # then renamed: a reader never sees half a file
        f.write(data)
    os.replace(part, path)
    return str(path)


def _own_folder() -> str:
    """This user's folder for the example: created 0700 if missing; if the
    name is taken by anything but our own private folder (a file, a link,
    someone else's), a fresh temporary folder instead."""
    folder = os.path.join(tempfile.gettempdir(), f"mailkit-lab07-{os.getuid()}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return tempfile.mkdtemp(prefix="mailkit-lab07-")
    return folder
