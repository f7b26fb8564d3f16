"""Capture files and TCP segments, read with nothing but :mod:`struct`.

Theory of operation.  A capture is a list of *frames*, each the bytes one
network interface saw, with the time it saw them.  On Linux's loopback
interface ``lo`` a frame is a 14-byte Ethernet header (both addresses zero),
an IPv4 header (RFC 791) and a TCP segment (RFC 9293): header, options,
payload.  This module

* reads and writes the classic **pcap** file format (a 24-byte file header,
  then a 16-byte record header before each frame) that tcpdump and
  Wireshark read and write;
* parses a frame into a :class:`Segment` (about forty lines of
  ``struct.unpack``, short enough to read next to RFC 9293's header
  picture), and builds one with :func:`tcp_frame` (the same headers with
  ``struct.pack``, checksums filled in: lab 7's grader writes captures of
  exchanges it made up);
* groups segments into :class:`Conversation` objects, one per connection,
  with **relative** sequence and acknowledgement numbers as Wireshark shows
  them: each side's initial sequence number (ISN) counts as 0, so the
  numbers are the same on every run although the ISNs are random.

Nothing here opens a socket: :mod:`mailkit.capture` records frames live.
Why ``struct`` and not a packet library (scapy, dpkt, pyshark): mailkit's
core uses the standard library only, and a parser a student can read in one
screen teaches the header better than a library call.  The tests compare
this parser with scapy's on the same file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# RFC 1071's sum: over a header whose checksum field is filled in correctly, it is 0.
from .detect import internet_checksum

__all__ = [
    "PCAP_MAGIC", "LINKTYPE_ETHERNET", "write_pcap", "pcap_bytes", "read_pcap", "read_segments", "Segment", "parse_frame", "tcp_frame",
    "mss_option",
    "Row", "Conversation", "conversations", "flags_text", "internet_checksum", "tcp_checksum_ok",
    "FLAG_NAMES",
]

PCAP_MAGIC = 0xA1B2C3D4          # classic pcap, microsecond timestamps
PCAP_MAGIC_NS = 0xA1B23C4D       # the same with nanosecond timestamps (read only)
LINKTYPE_ETHERNET = 1            # what tcpdump records for Linux's lo as well
SNAPLEN = 262144                 # longest frame we keep whole (tcpdump's default)
ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP = 6

# The TCP flags in header order (RFC 9293 section 3.1; CWR and ECE from RFC 3168).
FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


# --------------------------------------------------------------------------
# The pcap file format: "<IHHiIII" file header, "<IIII" per frame


def write_pcap(path, frames) -> int:
    """Write *frames*, ``(time, bytes)`` pairs (time in seconds since the
    epoch), as a classic pcap file of Ethernet frames; return how many."""
    frames = list(frames)
    with open(path, "wb") as f:
        f.write(pcap_bytes(frames))
    return len(frames)


def pcap_bytes(frames) -> bytes:
    """*frames*, ``(time, bytes)`` pairs, as the bytes of a classic pcap file."""
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)]
    for when, frame in frames:
        seconds = int(when)
        micros = min(int(round((when - seconds) * 1_000_000)), 999_999)
        kept = bytes(frame[:SNAPLEN])
        out.append(struct.pack("<IIII", seconds, micros, len(kept), len(frame)))
        out.append(kept)
    return b"".join(out)


def read_pcap(path) -> list[tuple[float, bytes]]:
    """The frames of a pcap file as ``(time, bytes)`` pairs.

    Reads either byte order and micro- or nanosecond timestamps; raises
    ``ValueError`` for anything else (a pcapng file, for one)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{path}: too short for a pcap file header ({len(data)} bytes)")
    for order in "<>":
        magic = struct.unpack(order + "I", data[:4])[0]
        if magic in (PCAP_MAGIC, PCAP_MAGIC_NS):
            break
    else:
        raise ValueError(f"{path}: not a classic pcap file (magic {data[:4].hex()}; "
                         "pcapng? save it as 'Wireshark/tcpdump - pcap')")
    scale = 1e-9 if magic == PCAP_MAGIC_NS else 1e-6
    linktype = struct.unpack(order + "I", data[20:24])[0] & 0xFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected {LINKTYPE_ETHERNET} (Ethernet)")
    frames, pos = [], 24
    while pos + 16 <= len(data):
        seconds, fraction, kept, _original = struct.unpack(order + "IIII", data[pos:pos + 16])
        pos += 16
        if pos + kept > len(data):
            raise ValueError(f"{path}: the last frame is cut short")
        frames.append((seconds + fraction * scale, data[pos:pos + kept]))
        pos += kept
    return frames


# --------------------------------------------------------------------------
# One frame -> one TCP segment


def flags_text(flags: int) -> str:
    """TCP flags as Wireshark writes them: ``"SYN, ACK"``, ``"FIN, ACK"``."""
    order = ("CWR", "ECE", "URG", "FIN", "SYN", "RST", "PSH", "ACK")
    names = [n for n in order if flags & (1 << FLAG_NAMES.index(n))]
    return ", ".join(names) or "none"


@dataclass(frozen=True)
class Segment:
    """One TCP segment as captured: the fields of its IPv4 and TCP headers."""

    time: float
    src: str                 # IPv4 addresses as dotted quads
    dst: str
    sport: int
    dport: int
    seq: int                 # absolute numbers, as on the wire
    ack: int
    flags: int
    window: int              # as sent: multiply by 2**(window scale) after the handshake
    options: tuple           # ((name, value), ...) in the order sent
    payload: bytes
    ip_header: bytes         # the raw IPv4 header, for checking its checksum
    tcp_header: bytes        # the raw TCP header with its options
    ttl: int = 64
    ip_id: int = 0

    @property
    def flag_names(self) -> str:
        return flags_text(self.flags)

    @property
    def length(self) -> int:
        """Payload bytes (Wireshark's ``Len=``)."""
        return len(self.payload)

    @property
    def seq_space(self) -> int:
        """How much sequence space this segment uses: its payload, plus one
        for a SYN and one for a FIN (RFC 9293 section 3.4)."""
        return len(self.payload) + bool(self.flags & SYN) + bool(self.flags & FIN)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


_OPTION_NAMES = {2: "MSS", 3: "WS", 4: "SACK_PERM", 5: "SACK", 8: "TS"}


def _options(raw: bytes) -> tuple:
    """TCP options (RFC 9293 section 3.2; window scale and timestamps: RFC 7323)."""
    out, i = [], 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:                        # end of option list
            break
        if kind == 1:                        # no-operation (padding)
            out.append(("NOP", None))
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break                            # a broken option: stop reading, keep the rest out
        size = raw[i + 1]
        body = raw[i + 2:i + size]
        name = _OPTION_NAMES.get(kind, f"kind {kind}")
        if kind == 2 and len(body) == 2:
            value = struct.unpack("!H", body)[0]
        elif kind == 3 and len(body) == 1:
            value = body[0]
        elif kind == 8 and len(body) == 8:
            value = struct.unpack("!II", body)
        else:
            value = body.hex() or None
        out.append((name, value))
        i += size
    return tuple(out)


def parse_frame(frame: bytes, when: float = 0.0) -> Segment | None:
    """The TCP segment inside an Ethernet frame, or ``None`` if the frame
    carries something else (IPv6, UDP, ARP) or is cut short."""
    if len(frame) < 14 + 20 or struct.unpack("!H", frame[12:14])[0] != ETHERTYPE_IPV4:
        return None
    ip = frame[14:]
    version_ihl, _tos, total, ip_id, _frag, ttl, proto, _csum, src, dst = \
        struct.unpack("!BBHHHBBH4s4s", ip[:20])
    ihl = (version_ihl & 0x0F) * 4           # header length in 32-bit words
    if version_ihl >> 4 != 4 or proto != IPPROTO_TCP or ihl < 20 or len(ip) < total:
        return None
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    sport, dport, seq, ack, offset, flags, window, _tcsum, _urgent = \
        struct.unpack("!HHIIBBHHH", tcp[:20])
    thl = (offset >> 4) * 4                   # data offset: header length in 32-bit words
    if thl < 20 or thl > len(tcp):
        return None
    return Segment(
        time=when, src=".".join(map(str, src)), dst=".".join(map(str, dst)),
        sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=window,
        options=_options(tcp[20:thl]), payload=bytes(tcp[thl:]), ip_header=bytes(ip[:ihl]),
        tcp_header=bytes(tcp[:thl]),
        ttl=ttl, ip_id=ip_id,
    )


def read_segments(path) -> list[Segment]:
    """The TCP segments of a pcap file, in the order captured (frames that
    hold something else are left out)."""
    found = (parse_frame(frame, when) for when, frame in read_pcap(path))
    return [s for s in found if s is not None]


def mss_option(mss: int) -> bytes:
    """The MSS option (kind 2, length 4) as a SYN carries it (RFC 9293 section 3.2)."""
    return struct.pack("!BBH", 2, 4, mss)


def tcp_frame(*, src: str, dst: str, sport: int, dport: int, seq: int, ack: int = 0, flags: int,
              window: int = 65495, options: bytes = b"", payload: bytes = b"", ttl: int = 64,
              ip_id: int = 0) -> bytes:
    """An Ethernet frame holding one IPv4 packet holding one TCP segment,
    as Linux's loopback would carry it: both MAC addresses zero, no IP
    options, Don't Fragment set, both checksums right (RFC 791 for the IP
    header, RFC 9293 section 3.1 for the segment and its pseudo-header).
    *options* are raw TCP option bytes (padded here to a 32-bit boundary
    with end-of-list bytes)."""
    options = bytes(options) + b"\x00" * (-len(options) % 4)
    offset = (20 + len(options)) // 4                # header length in 32-bit words
    if offset > 15:
        raise ValueError(f"{len(options)} bytes of TCP options: at most 40 fit")
    header = struct.pack("!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, offset << 4, flags,
                         window, 0, 0)
    addresses = _address(src) + _address(dst)
    length = len(header) + len(options) + len(payload)
    pseudo = addresses + struct.pack("!BBH", 0, IPPROTO_TCP, length)
    checksum = internet_checksum(pseudo + header + options + payload)
    tcp = header[:16] + struct.pack("!H", checksum) + header[18:] + options + payload
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + length, ip_id, 0x4000, ttl, IPPROTO_TCP, 0) + addresses
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return bytes(12) + struct.pack("!H", ETHERTYPE_IPV4) + ip + tcp


def _address(dotted: str) -> bytes:
    parts = dotted.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise ValueError(f"not an IPv4 address: {dotted!r}")
    return bytes(int(p) for p in parts)


def tcp_checksum_ok(segment: Segment) -> bool:
    """Whether a segment's TCP checksum verifies: RFC 1071's sum over a
    pseudo-header (the two IPv4 addresses, the protocol, the TCP length;
    RFC 9293 section 3.1), the TCP header and the payload gives 0."""
    length = len(segment.tcp_header) + len(segment.payload)
    pseudo = segment.ip_header[12:20] + struct.pack("!BBH", 0, IPPROTO_TCP, length)
    return internet_checksum(pseudo + segment.tcp_header + segment.payload) == 0


# --------------------------------------------------------------------------
# Segments -> connections, with relative numbers


@dataclass
class Row:
    """A segment as one line of a Wireshark-like list: who sent it and its
    relative sequence and acknowledgement numbers."""

    number: int              # 1, 2, ... within the capture
    segment: Segment
    sender: str              # "client" or "server"
    seq: int                 # relative
    ack: int | None          # relative, None when the ACK flag is not set

    @property
    def label(self) -> str:
        s = self.segment
        ack = f" ack={self.ack}" if self.ack is not None else ""
        return f"[{s.flag_names}] seq={self.seq}{ack} len={s.length}"


@dataclass
class Conversation:
    """One TCP connection: the segments both ways, numbered relative to
    each side's initial sequence number."""

    client: tuple[str, int]
    server: tuple[str, int]
    rows: list[Row] = field(default_factory=list)

    @property
    def segments(self) -> list[Segment]:
        return [r.segment for r in self.rows]

    def sent_by(self, who: str) -> list[Row]:
        return [r for r in self.rows if r.sender == who]

    def data_rows(self, who: str) -> list[Row]:
        """The rows from *who* ("client" or "server") that carry payload."""
        return [r for r in self.sent_by(who) if r.segment.length]

    def payload(self, who: str) -> bytes:
        """Every payload byte *who* sent, in sequence order (what the other
        side's ``recv()`` calls returned, joined)."""
        rows = sorted(self.data_rows(who), key=lambda r: r.seq)
        out, next_seq = bytearray(), None
        for r in rows:
            start = 0 if next_seq is None else max(0, next_seq - r.seq)
            out += r.segment.payload[start:]
            next_seq = r.seq + r.segment.length
        return bytes(out)

    @property
    def first_fin(self) -> str | None:
        """Who sent the first FIN, that is, who closed first (and will
        wait in TIME_WAIT afterwards)."""
        return next((r.sender for r in self.rows if r.segment.has(FIN)), None)

    @property
    def refused(self) -> bool:
        """A SYN answered by a RST: nobody listened on the port."""
        return (bool(self.rows) and self.rows[0].segment.flags & (SYN | ACK) == SYN
                and any(r.sender == "server" and r.segment.has(RST) for r in self.rows))

    @property
    def mss(self) -> dict[str, int | None]:
        """The MSS each side announced in its SYN (None if it sent none)."""
        out = {"client": None, "server": None}
        for r in self.rows:
            if r.segment.has(SYN):
                out[r.sender] = dict(r.segment.options).get("MSS")
        return out

    def table(self) -> str:
        """The conversation as Wireshark's packet list would show it (ports
        left out: the first line names them)."""
        (ch, cp), (sh, sp) = self.client, self.server
        lines = [f"client {ch}:{cp}  <->  server {sh}:{sp}"]
        for r in self.rows:
            arrow = "->" if r.sender == "client" else "<-"
            lines.append(f"{r.number:>4}  client {arrow} server  {r.label}")
        return "\n".join(lines)


def conversations(segments) -> list[Conversation]:
    """Group *segments* into connections in the order they opened.

    The client is the side that sent the first SYN (or, for a connection
    whose start was not captured, the first segment).  Relative numbers
    count from the ISN of each side's SYN; a side that sent no SYN (the RST
    that refuses a connection) counts from its first sequence number."""
    found: list[Conversation] = []
    convs: dict[tuple, Conversation] = {}
    bases: dict[tuple, dict[str, int]] = {}
    for number, s in enumerate(segments, 1):
        a, b = (s.src, s.sport), (s.dst, s.dport)
        key = tuple(sorted((a, b)))
        if key not in convs or (s.flags & (SYN | ACK) == SYN and convs[key].rows
                                and _closed(convs[key])):
            # a new connection (or the same ports used again after the old one closed)
            conv = Conversation(client=a, server=b)
            convs[key] = conv
            bases[key] = {}
            found.append(conv)
        conv, base = convs[key], bases[key]
        sender = "client" if a == conv.client else "server"
        other = "server" if sender == "client" else "client"
        if s.has(SYN) or sender not in base:
            base.setdefault(sender, s.seq)
        rel_seq = (s.seq - base[sender]) % 2**32
        rel_ack = None
        if s.has(ACK):
            rel_ack = (s.ack - base[other]) % 2**32 if other in base else s.ack
        conv.rows.append(Row(number, s, sender, rel_seq, rel_ack))
    return found


def _closed(conv: Conversation) -> bool:
    return any(r.segment.has(RST) for r in conv.rows) or \
        {r.sender for r in conv.rows if r.segment.has(FIN)} == {"client", "server"}
