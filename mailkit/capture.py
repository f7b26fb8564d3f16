"""The TCP underneath: capture real segments on loopback, ask the kernel
about a live connection, and list the sockets of a port.

* :class:`Sniffer` records the frames of the loopback interface ``lo`` that
  belong to given ports, with an ``AF_PACKET`` raw socket: Linux only, and
  only for root or a process with ``CAP_NET_RAW`` (:func:`can_capture`).
  No tcpdump needed; the frames are saved with :func:`mailkit.pcap.write_pcap`.
* :func:`record` plays the course's scripted exchange (a login, a 100 KB
  mail, the same mail with an Ethernet-sized MSS, a refused connection)
  against a real :class:`~mailkit.server.MailServer` while a sniffer
  records it.  ``make capture`` (``python -m mailkit.capture record``)
  saves it as ``notebooks/captures/mailkit-exchange.pcap``, the capture
  notebook 08 reads.
* :func:`tcp_info` unpacks ``getsockopt(IPPROTO_TCP, TCP_INFO)``: the
  kernel's RTT estimate, RTO, congestion window (Linux, no root needed).
* :func:`socket_states` reads ``/proc/net/tcp`` for given ports only (never
  a system-wide listing): where a closed connection waits in TIME_WAIT.

Standard library only.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import pcap
from . import protocol as P
from .client import MailClient
from .server import MailServer

__all__ = [
    "can_capture", "Sniffer", "record", "Recording", "SCRIPT", "BODY", "USERS", "ETHERNET_MSS",
    "exchange", "TcpInfo", "tcp_info", "wait_acknowledged", "SocketState", "socket_states", "settled_states",
    "Shape", "shape", "DEFAULT_CAPTURE", "segments_needed",
]

ETH_P_ALL = 0x0003              # every protocol (linux/if_ether.h)
PACKET_OUTGOING = 4             # a frame this host sent (linux/if_packet.h); on lo each frame
                                # is seen twice, going out and coming in: keep the second only
SNIFF_BUFFER = 8 * 1024 * 1024  # kernel buffer for the raw socket, so a 100 KB burst is not dropped
ETHERNET_MSS = 1460             # 1500-byte Ethernet MTU - 20 (IPv4 header) - 20 (TCP header)
DEFAULT_CAPTURE = Path(__file__).resolve().parent.parent / "notebooks" / "captures" / "mailkit-exchange.pcap"

USERS = {"alice": "wonderland", "bob": "builder"}
# The 100 KB body: plain text without '#' or ':', so it travels byte for byte.
_LINE = "the quick brown fox jumps over the lazy dog, line {:05d}\n"
BODY = "".join(_LINE.format(i) for i in range(100_000 // len(_LINE.format(0)) + 1))[:100_000]
SUBJECT = "A long mail"

# What the recorded exchange is made of, in order (one TCP connection each).
SCRIPT = (
    ("login", "alice logs in (mailkit's own MailClient)"),
    ("email", "a 100 KB mail to bob (MailClient), loopback's MSS"),
    ("email, MSS 1460", "the same frame on a socket with TCP_MAXSEG = 1460, as on Ethernet"),
    ("refused", "a connection to a port where nobody listens"),
)


# --------------------------------------------------------------------------
# Capturing on lo


def can_capture(interface: str = "lo") -> bool:
    """Whether this process may open a raw packet socket on *interface*
    (Linux, as root or with CAP_NET_RAW)."""
    if not hasattr(socket, "AF_PACKET"):
        return False
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except OSError:
        return False
    try:
        s.bind((interface, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


# A classic BPF program (the language of tcpdump's filters, run by the kernel on
# every frame): keep IPv4/TCP frames, not fragments, whose source or destination
# port is A or B.  Without it the kernel would queue every frame of lo (other
# programs' too) for this socket, and on a busy machine some of ours could be dropped.
_BPF = (  # (code, jump if true, jump if false, k)
    (0x28, 0, 0, 12),            # ldh [12]          the EtherType
    (0x15, 0, 10, 0x0800),       # jne #IPv4 -> drop
    (0x30, 0, 0, 23),            # ldb [23]          the IP protocol
    (0x15, 0, 8, 6),             # jne #TCP -> drop
    (0x28, 0, 0, 20),            # ldh [20]          flags and fragment offset
    (0x45, 6, 0, 0x1FFF),        # jset #0x1fff -> drop (a fragment)
    (0xB1, 0, 0, 14),            # ldxb 4*([14]&0xf) the IP header length
    (0x48, 0, 0, 14),            # ldh [x+14]        the source port
    (0x15, 4, 0, "A"),           # jeq #A -> keep
    (0x15, 3, 0, "B"),           # jeq #B -> keep
    (0x48, 0, 0, 16),            # ldh [x+16]        the destination port
    (0x15, 1, 0, "A"),           # jeq #A -> keep
    (0x15, 0, 1, "B"),           # jne #B -> drop
    (0x06, 0, 0, 0x40000),       # keep: ret #262144 (the whole frame)
    (0x06, 0, 0, 0),             # drop: ret #0
)
SO_ATTACH_FILTER = 26            # asm-generic/socket.h
SO_RCVBUFFORCE = 33              # asm-generic/socket.h: SO_RCVBUF past rmem_max (CAP_NET_ADMIN)
SOL_PACKET, PACKET_STATISTICS = 263, 6


def _attach_filter(sock: socket.socket, ports) -> None:
    """Let the kernel drop every frame that is not TCP to or from *ports* (two at most)."""
    import ctypes

    a, b = (sorted(ports) * 2)[:2]
    program = b"".join(struct.pack("HBBI", code, jt, jf, {"A": a, "B": b}.get(k, k))
                       for code, jt, jf, k in _BPF)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(_BPF), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _ports_of(frame: bytes) -> tuple[int, int] | None:
    """The TCP ports of an Ethernet/IPv4 frame, cheaply (None if not TCP)."""
    if len(frame) < 34 + 4 or frame[12:14] != b"\x08\x00" or frame[23] != pcap.IPPROTO_TCP:
        return None
    start = 14 + (frame[14] & 0x0F) * 4
    return struct.unpack("!HH", frame[start:start + 4]) if len(frame) >= start + 4 else None


class Sniffer:
    """Record the frames on *interface* whose TCP source or destination port
    is one of *ports*, in a background thread, until :meth:`stop`.

    Use it as a context manager.  ``frames`` is the list of ``(time, bytes)``
    seen so far; :meth:`wait_for` waits (boundedly) until a condition on the
    parsed segments holds, so that a recording stops only once the last
    segment has come round, not after a guessed pause."""

    POLL_S = 0.05               # how often the reader checks whether it should stop

    def __init__(self, ports, interface: str = "lo"):
        self.ports = set(ports)
        self.interface = interface
        self.frames: list[tuple[float, bytes]] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._sock = None
        self._thread = None
        self.drops = 0

    def start(self) -> "Sniffer":
        if self._sock is not None:
            return self
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except (AttributeError, OSError) as exc:
            raise PermissionError(
                "a live capture needs Linux and root or CAP_NET_RAW "
                f"({type(exc).__name__}: {exc}); read the committed capture instead") from exc
        try:
            if len(self.ports) <= 2:
                _attach_filter(s, self.ports)
            try:    # root may pass net.core.rmem_max (SO_RCVBUF alone is capped at it)
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SNIFF_BUFFER)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SNIFF_BUFFER)
            s.bind((self.interface, 0))
            s.settimeout(self.POLL_S)
        except OSError:
            s.close()
            raise
        self._sock = s
        self._thread = threading.Thread(target=self._read, name="mailkit-sniffer", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                frame, addr = self._sock.recvfrom(pcap.SNAPLEN)
            except socket.timeout:
                continue
            except OSError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            ports = _ports_of(frame)
            if ports and (ports[0] in self.ports or ports[1] in self.ports):
                with self._changed:
                    self.frames.append((time.time(), frame))
                    self._changed.notify_all()

    def segments(self) -> list[pcap.Segment]:
        with self._changed:
            frames = list(self.frames)
        return [s for when, f in frames if (s := pcap.parse_frame(f, when)) is not None]

    def wait_for(self, condition, timeout: float = 5.0) -> bool:
        """Wait until ``condition(segments)`` is true (at most *timeout*
        seconds); return whether it became true."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if condition([s for when, f in self.frames
                              if (s := pcap.parse_frame(f, when)) is not None]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)

    def stop(self) -> list[tuple[float, bytes]]:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None and self._sock.fileno() != -1:
            # frames the kernel had to drop because this socket's buffer was full
            stats = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            self.drops += struct.unpack("II", stats)[1]
            self._sock.close()
        return self.frames

    def __enter__(self) -> "Sniffer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------
# One request on a socket we own (TCP_MAXSEG, TCP_INFO)


def exchange(address, data: bytes, *, mss: int | None = None, timeout: float = 10.0):
    """One request, one reply, like :func:`mailkit.client.request_once`, on a
    socket we set up ourselves: with *mss*, ``TCP_MAXSEG`` is set before
    ``connect()`` (so the SYN announces it).  Return ``(reply, info)`` where
    *info* is the :class:`TcpInfo` of the connection right after the
    request was sent, while it was established."""
    with _client_socket(mss, timeout) as sock:
        return _exchange_on(sock, address, data)


def _client_socket(mss: int | None, timeout: float, bind: str | None = None) -> socket.socket:
    """A TCP socket with *mss* set; bound to (*bind*, port 0) if given, so
    that its port is known before ``connect()``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if mss is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        if bind is not None:
            sock.bind((bind, 0))
    except OSError:
        sock.close()
        raise
    return sock


def _exchange_on(sock: socket.socket, address, data: bytes):
    sock.connect(tuple(address))
    sock.sendall(data)
    info = tcp_info(sock)
    sock.shutdown(socket.SHUT_WR)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks), info


# --------------------------------------------------------------------------
# The scripted exchange


def _finished(conv: pcap.Conversation) -> bool:
    """Both FINs sent, and the FIN that came second acknowledged."""
    if conv.refused:
        return True
    fins = [r for r in conv.rows if r.segment.has(pcap.FIN)]
    if {r.sender for r in fins} != {"client", "server"}:
        return False
    last_fin = max(fins, key=lambda r: r.number)
    want = last_fin.seq + last_fin.segment.seq_space
    return any(r.sender != last_fin.sender and r.ack is not None and r.ack >= want
               and r.number > last_fin.number for r in conv.rows)


@dataclass
class Recording:
    """What :func:`record` made: the frames of the script's connections
    (and only those), and the ports it used.

    ``left_out`` names, one line each, the connections on the same ports
    that are not the script's: an attempt the client made again because
    the first got no reply (a busy machine), or another program's
    connection to one of the ports (a port scan)."""

    frames: list[tuple[float, bytes]]
    server_port: int
    refused_port: int
    complete: bool           # every connection was seen to its end, no frame dropped
    left_out: tuple[str, ...] = ()

    @property
    def segments(self) -> list[pcap.Segment]:
        return [s for when, f in self.frames if (s := pcap.parse_frame(f, when)) is not None]


class _Script:
    """How to tell the script's connections among everything on its ports:
    by their ports where the script chose them, else by their bytes (the
    request the client sent and the reply it got, on the server's port)."""

    def __init__(self, server_port: int):
        self.server_port = server_port
        self.wanted: list = []      # per SCRIPT entry: ("port", client port, server port) or ("bytes", sent, reply)

    def by_port(self, client_port: int, server_port: int) -> None:
        self.wanted.append(("port", client_port, server_port))

    def by_bytes(self, attempt) -> None:
        """The connection of *attempt* (a :class:`~mailkit.trace.Exchange`, the one that got the reply)."""
        self.wanted.append(("bytes", attempt.request, attempt.reply))

    def _is(self, want, conv: pcap.Conversation) -> bool:
        if want[0] == "port":
            return (conv.client[1], conv.server[1]) == want[1:]
        return (conv.server[1] == self.server_port and conv.payload("client") == want[1]
                and conv.payload("server") == want[2])

    def find(self, convs) -> list:
        """The script's connections in :data:`SCRIPT` order (None where not seen yet)."""
        found: list = [None] * len(self.wanted)
        # those known by their ports first: a retry cannot look like them
        for i in sorted(range(len(self.wanted)), key=lambda i: self.wanted[i][0] != "port"):
            found[i] = next((c for c in convs if self._is(self.wanted[i], c)
                             and not any(c is f for f in found)), None)
        return found

    def seen_to_the_end(self, segments) -> bool:
        found = self.find(pcap.conversations(segments))
        return len(found) == len(SCRIPT) and all(c is not None and _finished(c) for c in found)


def _left_out(conv: pcap.Conversation) -> str:
    """One line about a connection that is not the script's."""
    up, down = len(conv.payload("client")), len(conv.payload("server"))
    what = "refused" if conv.refused else f"{up} bytes sent, {down} bytes of reply"
    return f"port {conv.client[1]} -> {conv.server[1]}: {len(conv.rows)} segments, {what}"


def record(path=None, *, timeout: float = 10.0, interference=None) -> Recording:
    """Play :data:`SCRIPT` against a new server on 127.0.0.1 (port 0) while
    a :class:`Sniffer` records lo; save it to *path* as pcap if given.

    Only the script's connections are kept, told apart by their ports (the
    client's too): a retried attempt of the client, or another program's
    connection to the same ports, is left out and named in
    :attr:`Recording.left_out`.  *interference*, if given, is called with
    ``(server address, refused address)`` while the sniffer runs, before
    the script (tests: traffic that is not the script's).

    Needs root or CAP_NET_RAW (``PermissionError`` otherwise)."""
    # A port that is bound but not listening: the kernel refuses connections
    # to it, and while we hold it no one else can take it.
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    try:
        with MailServer(users=USERS) as server:
            host, port = server.address
            script = _Script(port)
            with Sniffer({port, refused_port}) as sniffer:
                if interference is not None:
                    interference((host, port), ("127.0.0.1", refused_port))
                client = MailClient(host, port)
                client.login("alice", USERS["alice"])
                script.by_bytes(client.transcript[-1])
                client.send("bob", SUBJECT, BODY)
                script.by_bytes(client.transcript[-1])
                frame = P.make_frame(client.session_id, "email", "bob", SUBJECT, BODY)
                with _client_socket(ETHERNET_MSS, timeout, bind=host) as sock:
                    script.by_port(sock.getsockname()[1], port)
                    reply, _ = _exchange_on(sock, (host, port), frame)
                if not reply.startswith(b"OK"):
                    raise RuntimeError(f"the server did not accept the mail: {reply[:60]!r}")
                with _client_socket(None, timeout, bind="127.0.0.1") as sock:
                    script.by_port(sock.getsockname()[1], refused_port)
                    try:
                        sock.connect(("127.0.0.1", refused_port))
                        raise RuntimeError(f"port {refused_port} accepted a connection; expected a refusal")
                    except ConnectionRefusedError:
                        pass
                complete = sniffer.wait_for(script.seen_to_the_end, timeout)
            parsed = [(when, f, s) for when, f in sniffer.frames if (s := pcap.parse_frame(f, when)) is not None]
            complete = complete and sniffer.drops == 0
    finally:
        closed.close()
    convs = pcap.conversations([s for _, _, s in parsed])
    ours = [c for c in script.find(convs) if c is not None]
    keep = {r.number for c in ours for r in c.rows}
    frames = [(when, f) for number, (when, f, _) in enumerate(parsed, 1) if number in keep]
    left_out = tuple(_left_out(c) for c in convs if not any(c is o for o in ours))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        pcap.write_pcap(path, frames)
    return Recording(frames, port, refused_port, complete, left_out)


# --------------------------------------------------------------------------
# The shape of a recording: what stays the same from run to run


@dataclass(frozen=True)
class Shape:
    """What every run of :data:`SCRIPT` must have in common, whatever the
    ports, ISNs, times and the kernel's way of cutting the data.

    Who closes first is *not* part of it: the server answers a command
    frame as soon as its checksum verifies, so its reply and its FIN may
    overtake the client's FIN (see notebook 08, section 5)."""

    connections: tuple       # per connection: (opening flags, bytes each way, who sent a FIN)

    @property
    def text(self) -> str:
        lines = []
        for (name, _), (flags, up, down, fins) in zip(SCRIPT, self.connections):
            lines.append(f"{name:<16} {' / '.join(flags):<24} client sent {up:>6} bytes, "
                         f"server {down:>2}; FIN from {' and '.join(fins) or 'nobody'}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text

    def difference(self, other: "Shape", them: str = "the committed capture") -> str:
        """One line saying how this shape differs from *other* ("" if it does not)."""
        if len(self.connections) != len(other.connections):
            return f"{len(self.connections)} connections, {them} {len(other.connections)}"
        shown = (lambda v: " / ".join(v), str, str, lambda v: " and ".join(v) or "nobody")
        labels = ("opening", "client sent", "server sent", "FIN from")
        differ = []
        for (name, _), mine, theirs in zip(SCRIPT, self.connections, other.connections):
            fields = [f"{label} {show(a)} ({them}: {show(b)})"
                      for label, show, a, b in zip(labels, shown, mine, theirs) if a != b]
            if fields:
                differ.append(f"{name}: {', '.join(fields)}")
        return "; ".join(differ)


def _opening(conv: pcap.Conversation) -> tuple:
    """The flags of the handshake: the client's first SYN, the server's
    first SYN-ACK (or the RST that refuses), the client's first segment
    after it.  A SYN or SYN-ACK sent again because its answer was late
    (RFC 6298: after the RTO, 1 s for a SYN) is the same step, counted once."""
    rows = conv.rows
    syn = next((r for r in rows if r.sender == "client" and r.segment.has(pcap.SYN)), None)
    if syn is None:
        return tuple(r.segment.flag_names for r in rows[:3])
    answer = next((r for r in rows if r.sender == "server"
                   and (r.segment.has(pcap.RST) or r.segment.has(pcap.SYN))), None)
    if answer is None or answer.segment.has(pcap.RST):
        return tuple(r.segment.flag_names for r in (syn, answer) if r is not None)
    third = next((r for r in rows if r.sender == "client" and r.number > answer.number
                  and not r.segment.has(pcap.SYN)), None)
    return tuple(r.segment.flag_names for r in (syn, answer, third) if r is not None)


def shape(segments) -> Shape:
    """The :class:`Shape` of a capture of :data:`SCRIPT`."""
    out = []
    for conv in pcap.conversations(segments):
        fins = tuple(who for who in ("client", "server")
                     if any(r.segment.has(pcap.FIN) for r in conv.sent_by(who)))
        out.append((_opening(conv), len(conv.payload("client")), len(conv.payload("server")), fins))
    return Shape(tuple(out))


# --------------------------------------------------------------------------
# TCP_INFO: what the kernel knows about a connection


# struct tcp_info from linux/tcp.h: 8 one-byte fields, then 32-bit fields.
# The first 104 bytes have had this layout since Linux 2.6; later kernels append.
_TCP_INFO_FORMAT = "8B24I"
_TCP_INFO_FIELDS = (
    "state", "ca_state", "retransmits", "probes", "backoff", "options", "wscale", "app_limited",
    "rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets",
    "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv",
    "pmtu", "rcv_ssthresh", "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering",
    "rcv_rtt", "rcv_space", "total_retrans",
)
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING"}


@dataclass(frozen=True)
class TcpInfo:
    """The first 104 bytes of Linux's ``struct tcp_info``.  Times are in
    microseconds (``rto``, ``rtt``, ``rttvar``), windows in segments
    (``snd_cwnd``), sizes in bytes."""

    state: int
    ca_state: int
    retransmits: int         # retransmissions of the segment now timing out
    probes: int
    backoff: int
    options: int
    wscale: int
    app_limited: int
    rto: int                 # the retransmission timeout now in force, µs
    ato: int
    snd_mss: int
    rcv_mss: int
    unacked: int
    sacked: int
    lost: int
    retrans: int
    fackets: int
    last_data_sent: int
    last_ack_sent: int
    last_data_recv: int
    last_ack_recv: int
    pmtu: int
    rcv_ssthresh: int
    rtt: int                 # smoothed RTT (SRTT of RFC 6298), µs
    rttvar: int              # RTT variation (RTTVAR of RFC 6298), µs
    snd_ssthresh: int
    snd_cwnd: int            # congestion window, in segments
    advmss: int
    reordering: int
    rcv_rtt: int
    rcv_space: int
    total_retrans: int       # retransmissions over the connection's life

    @property
    def state_name(self) -> str:
        return TCP_STATES.get(self.state, str(self.state))


def tcp_info(sock: socket.socket) -> TcpInfo:
    """The kernel's ``TCP_INFO`` for a connected TCP socket (Linux)."""
    if not hasattr(socket, "TCP_INFO"):
        raise OSError("TCP_INFO is Linux's: this system does not have it")
    size = struct.calcsize(_TCP_INFO_FORMAT)
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, size)
    if len(raw) < size:
        raise OSError(f"TCP_INFO gave {len(raw)} bytes, expected {size}")
    return TcpInfo(*struct.unpack(_TCP_INFO_FORMAT, raw[:size]))


def wait_acknowledged(sock: socket.socket, timeout: float = 5.0) -> TcpInfo:
    """The socket's :class:`TcpInfo` once everything it sent has been
    acknowledged (``unacked == 0``), waiting at most *timeout* seconds, so
    that what it shows no longer depends on when the last ACK came."""
    deadline = time.monotonic() + timeout
    while (info := tcp_info(sock)).unacked and time.monotonic() < deadline:
        time.sleep(0.001)
    return info


# --------------------------------------------------------------------------
# /proc/net/tcp: the sockets of some ports


@dataclass(frozen=True)
class SocketState:
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str

    def __str__(self) -> str:
        (lh, lp), (rh, rp) = self.local, self.remote
        far = f"{rh}:{rp}" if rp else "*"
        return f"{lh}:{lp} -> {far}  {self.state}"


def _address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    # the kernel prints the IPv4 address as a host-order 32-bit number in hex
    return socket.inet_ntoa(struct.pack("=I", int(host, 16))), int(port, 16)


def socket_states(ports, table: str = "/proc/net/tcp", *, between: bool = False) -> list[SocketState]:
    """The IPv4 TCP sockets whose local or remote port is one of *ports*
    (and no others), as ``/proc/net/tcp`` lists them; the same as
    ``ss -tan '( sport = :P or dport = :P )'``.

    With *between*, only the sockets of connections between these ports:
    the local port is one of *ports* and so is the remote one (or there is
    none: a listening socket).  Give a server's port and a client's port,
    and older connections of other programs to a port that was reused
    stay out of the list."""
    ports = set(ports)
    found = {}
    for line in _read_table(table).splitlines()[1:]:       # after the column titles
        cols = line.split()
        local, remote = _address(cols[1]), _address(cols[2])
        if between:
            wanted = local[1] in ports and (remote[1] in ports or remote[1] == 0)
        else:
            wanted = local[1] in ports or remote[1] in ports
        if wanted:
            # one socket per pair of endpoints (the kernel may list a socket twice
            # while it moves from one state to the next)
            found[local, remote] = SocketState(local, remote, TCP_STATES.get(int(cols[3], 16), cols[3]))
    return sorted(found.values(),
                  key=lambda s: (s.state != "LISTEN", s.local[1] not in ports, s.local, s.remote))


def _read_table(table: str) -> str:
    """The whole table in as few reads as possible: the kernel builds it while
    it is read, and resuming between two reads may repeat or skip a line."""
    fd = os.open(table, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 22):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")
    finally:
        os.close(fd)


def settled_states(ports, timeout: float = 5.0, *, between: bool = False) -> list[SocketState]:
    """:func:`socket_states` once every connection on *ports* has finished
    closing (no socket left half-way, in FIN_WAIT or LAST_ACK), waiting at
    most *timeout* seconds for the last ACK to be processed."""
    passing = {"FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK", "CLOSE_WAIT", "SYN_SENT", "SYN_RECV"}
    deadline = time.monotonic() + timeout
    before = None
    while True:
        states = socket_states(ports, between=between)
        # settled: nothing half-way, and the same list twice in a row
        if (states == before and not any(s.state in passing for s in states)) \
                or time.monotonic() > deadline:
            return states
        before = states
        time.sleep(0.01)


# --------------------------------------------------------------------------
# make capture


def segments_needed(length: int, mss: int, options: int = 12) -> int:
    """How many full-size segments *length* payload bytes need when each
    segment carries MSS minus the *options* every data segment repeats
    (12 bytes: the timestamps of RFC 7323, padded)."""
    return math.ceil(length / (mss - options))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailkit.capture",
                                     description="Record notebook 08's capture on loopback.")
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("record", help="play the scripted exchange and save it as pcap")
    rec.add_argument("path", nargs="?", default=str(DEFAULT_CAPTURE))
    args = parser.parse_args(argv)
    try:
        recording = record(args.path)
    except PermissionError as exc:
        print(f"cannot capture: {exc}", file=sys.stderr)
        return 2
    segs = recording.segments
    print(f"{args.path}: {len(recording.frames)} frames, {len(pcap.conversations(segs))} connections"
          f"{'' if recording.complete else ' (INCOMPLETE: a connection was not seen to its end)'}")
    print(shape(segs))
    for line in recording.left_out:
        print(f"left out (not the script's): {line}")
    print("closed first: " + ", ".join(f"{name}: {c.first_fin or '-'}"
                                        for (name, _), c in zip(SCRIPT, pcap.conversations(segs))))
    return 0 if recording.complete else 1


if __name__ == "__main__":
    sys.exit(main())
