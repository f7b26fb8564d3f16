"""Helpers for notebook 08, "The TCP underneath": the committed capture,
its pictures, the exercises' checks and the self-check questions.

The capture itself is read with :mod:`mailkit.pcap` (stdlib ``struct``)
and recorded with :mod:`mailkit.capture` (``make capture``).  The notebook's
printed outputs always come from the committed capture, so they are the
same on every run; only :func:`record_again` captures live, and what it
prints does not depend on ports, sequence-number bases or timing.

(Its self-check questions are in :data:`mailkit.course.QUIZZES` under
``"08"``, with the other notebooks' questions.)
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import capture as C
from . import pcap
from .pictures import Ladder, Shown

__all__ = [
    "load_capture", "Capture", "segment_ladder", "data_summary", "wire_view", "handshake_view",
    "TcpInfoView", "live_tcp_info", "states_view", "login", "closing_first_server",
    "try_bind", "checksum_view", "check_next_seq", "check_checksum", "check_tcp_checksum",
    "tcp_checksum_cases", "record_again", "record_button",
    "download", "wireshark_filter", "CAPTURE_NAME",
]

CAPTURE_NAME = "captures/mailkit-exchange.pcap"      # relative to notebooks/

# What the record button says without root or CAP_NET_RAW: in short lines, so that
# an output area never has to break it (JupyterLab breaks a long line mid-word).
NOT_ALLOWED = ("live capture is not allowed here: it needs Linux, and root or\n"
               "CAP_NET_RAW. Everything above comes from the committed capture.")


# --------------------------------------------------------------------------
# The committed capture


@dataclass(repr=False)
class Capture(Shown):
    """The frames of a pcap file, parsed, one :class:`~mailkit.pcap.Conversation`
    per connection, named after :data:`mailkit.capture.SCRIPT`."""

    name: str
    frames: list
    segments: list
    conversations: list

    def connection(self, name: str) -> pcap.Conversation:
        names = [n for n, _ in C.SCRIPT]
        if name not in names:
            raise KeyError(f"no connection {name!r}; the capture has {names}")
        return self.conversations[names.index(name)]

    @property
    def text(self) -> str:
        lines = [f"{self.name}: {len(self.frames)} frames, {len(self.segments)} TCP segments, "
                 f"{len(self.conversations)} connections"]
        for i, ((name, what), conv) in enumerate(zip(C.SCRIPT, self.conversations), 1):
            first, last = conv.rows[0].number, conv.rows[-1].number
            lines.append(f"  {i}. {name:<16} segments {first:>2}-{last:<2}  {what}")
        return "\n".join(lines)


def load_capture(path=None) -> Capture:
    """Read the committed capture (``notebooks/captures/mailkit-exchange.pcap``)
    or the pcap file at *path*."""
    if path is None:
        path = Path(CAPTURE_NAME)
        if not path.exists():
            path = C.DEFAULT_CAPTURE
    path = Path(path)
    frames = pcap.read_pcap(path)
    segments = [s for when, f in frames if (s := pcap.parse_frame(f, when)) is not None]
    convs = pcap.conversations(segments)
    if len(convs) != len(C.SCRIPT):
        raise ValueError(f"{path.name}: {len(convs)} connections, expected {len(C.SCRIPT)} "
                         "(record it again with `make capture`)")
    return Capture(path.name, frames, segments, convs)


@dataclass(repr=False)
class Download(Shown):
    """A link to a file next to the notebook (relative, so it works in
    JupyterLab, in Voila and in an exported HTML page alike)."""

    path: str
    size: int

    @property
    def text(self) -> str:
        return f"{self.path} ({self.size} bytes)"

    def _repr_html_(self) -> str:
        import html
        p = html.escape(self.path, quote=True)
        return (f'<a href="{p}" download>Download the capture: {html.escape(Path(self.path).name)}</a> '
                f"({self.size} bytes, pcap)")


def download(path=CAPTURE_NAME) -> Download:
    """A link to the capture file, for saving it and opening it in Wireshark."""
    return Download(str(path), Path(path).stat().st_size if Path(path).exists()
                    else C.DEFAULT_CAPTURE.stat().st_size)


def wireshark_filter(capture: Capture) -> Shown:
    """A Wireshark display filter that shows exactly this capture's connections."""
    ports = []
    for conv in capture.conversations:
        if conv.server[1] not in ports:
            ports.append(conv.server[1])
    return Text(" || ".join(f"tcp.port == {p}" for p in ports))


# --------------------------------------------------------------------------
# Pictures and views


def _preview(payload: bytes) -> str:
    """A payload as a short label: a frame up to its first fields, a login
    without its password."""
    text = payload.decode("utf-8", "replace")
    if "#" not in text and text.count(":") == 1 and not text.startswith(("OK", "KO")):
        return text.partition(":")[0] + ":••••••"       # USERNAME:PASSWORD: never drawn
    text = text.replace("\n", "\\n")
    return text if len(text) <= 30 else text[:29] + "…"


def _note(conv: pcap.Conversation, row: pcap.Row, previous: pcap.Row | None) -> str:
    s = row.segment
    if s.has(pcap.RST):
        return "nobody listens: connect() raises ConnectionRefusedError"
    if s.has(pcap.SYN) and not s.has(pcap.ACK):
        return f"connect(): announces MSS {dict(s.options).get('MSS')}"
    if s.has(pcap.SYN):
        return f"its own ISN; ack = client's ISN + 1; MSS {dict(s.options).get('MSS')}"
    if s.has(pcap.FIN):
        return ("shutdown(SHUT_WR): that was all I send" if row.sender == "client"
                else "close() after the reply")
    if s.length:
        return f"{s.length} bytes: {_preview(s.payload)}" if s.length < 1000 else f"{s.length} bytes of the frame"
    if previous is not None and previous.segment.has(pcap.SYN):
        return "the connection is open"
    return f"acknowledges everything before byte {row.ack}"


def segment_ladder(conv: pcap.Conversation, title: str | None = None):
    """A connection as the course's sequence diagram: one arrow per segment,
    its flags and relative seq/ack numbers on the arrow, what it is for
    underneath."""
    steps, previous = [], None
    for row in conv.rows:
        s = row.segment
        src, dst = ("client", "server") if row.sender == "client" else ("server", "client")
        kind = "ERROR" if s.has(pcap.RST) else ("OK" if row.sender == "server" and s.length else "ink")
        steps.append((src, dst, row.label, kind, _note(conv, row, previous)))
        previous = row
    return Ladder(["client", "server"], steps, title=title)


@dataclass(repr=False)
class Text(Shown):
    text: str


def _option_text(name: str, value) -> str:
    """An option as Wireshark's Info column writes it: the window scale as
    its multiplier (the option carries the shift count, RFC 7323 section 2.2)."""
    if value is None:
        return name
    if name == "WS" and isinstance(value, int):
        return f"WS={2 ** value} (shift {value})"
    return f"{name}={value}"


def handshake_view(conv: pcap.Conversation) -> Text:
    """The three segments of the handshake: absolute and relative numbers,
    and the options each side announced."""
    lines = []
    for row in conv.rows[:3]:
        s = row.segment
        opts = ", ".join(_option_text(name, value) for name, value in s.options
                         if name not in ("NOP", "TS"))
        if any(n == "TS" for n, _ in s.options):
            opts = f"{opts}, timestamps" if opts else "timestamps"
        ack = f"ack {s.ack:>10} (relative {row.ack})" if row.ack is not None else ""
        lines.append(f"{row.sender:>6} [{s.flag_names}]".ljust(18) +
                     f"seq {s.seq:>10} (relative {row.seq})  {ack}".rstrip())
        if opts:
            lines.append(f"{'':18}options: {opts}")
    return Text("\n".join(lines))


def data_summary(conv: pcap.Conversation) -> Text:
    """How the client's data travelled: segments, sizes, against the MSS."""
    rows = conv.data_rows("client")
    total = sum(r.segment.length for r in rows)
    mss = conv.mss["server"]                 # what the client may send is the server's MSS...
    if conv.mss["client"] is not None and conv.mss["client"] < mss:
        mss = conv.mss["client"]             # ...or less, if the client set TCP_MAXSEG
    per_segment = mss - 12
    sizes = " + ".join(str(r.segment.length) for r in rows)
    lines = [
        f"the client sent {total} bytes in {len(rows)} data segments: {sizes}",
        f"MSS in force: {mss} bytes, {per_segment} per segment after 12 bytes of TCP timestamps",
        f"the largest segment: {max(r.segment.length for r in rows)} bytes; "
        f"at least {C.segments_needed(total, mss)} segments of {per_segment} would do",
        f"the server acknowledged up to byte {max(r.ack for r in conv.sent_by('server'))} "
        f"= {total} data bytes + 1 for the SYN + 1 for the FIN",
    ]
    return Text("\n".join(lines))


def wire_view(conv: pcap.Conversation) -> Text:
    """For each data segment the loopback capture shows, how many segments
    an Ethernet link (MSS 1460, 1448 bytes of data each) would carry."""
    per = C.ETHERNET_MSS - 12
    lines, wire = [], 0
    for r in conv.data_rows("client"):
        n = C.segments_needed(r.segment.length, C.ETHERNET_MSS)
        wire += n
        lines.append(f"{r.number:>4} seq={r.seq:<6} len={r.segment.length:<6} = {n:>2} segment(s) "
                     f"of at most {per} bytes on Ethernet")
    lines.append(f"captured on lo: {len(conv.data_rows('client'))} frames; on an Ethernet wire: "
                 f"{wire} segments")
    return Text("\n".join(lines))


def checksum_view(capture: Capture) -> Text:
    """The IPv4 header checksums (all must verify) and the TCP checksums
    (on lo only the pseudo-header part is filled in: checksum offload)."""
    ip_ok = sum(pcap.internet_checksum(s.ip_header) == 0 for s in capture.segments)
    tcp_ok = [row for conv in capture.conversations for row in conv.rows if pcap.tcp_checksum_ok(row.segment)]
    complete = ", ".join(f"#{r.number} [{r.segment.flag_names}]" for r in tcp_ok) or "none"
    return Text("\n".join([
        f"IPv4 header checksums that verify: {ip_ok} of {len(capture.segments)}",
        f"TCP checksums that verify: {len(tcp_ok)} of {len(capture.segments)} ({complete})",
    ]))


# --------------------------------------------------------------------------
# Live: TCP_INFO, socket states, TIME_WAIT


@dataclass(repr=False)
class TcpInfoView(Shown):
    info: C.TcpInfo
    algorithm: str

    @property
    def text(self) -> str:
        i = self.info
        return "\n".join([
            f"state           {i.state_name}",
            f"rtt             {i.rtt / 1000:.3f} ms   smoothed round-trip time (SRTT of RFC 6298)",
            f"rttvar          {i.rttvar / 1000:.3f} ms   its variation (RTTVAR)",
            f"rto             {i.rto / 1000:.3f} ms   the retransmission timeout in force",
            f"retransmits     {i.retransmits}          now; over the connection's life: {i.total_retrans}",
            f"snd_cwnd        {i.snd_cwnd} segments  congestion window ({self.algorithm})",
            f"RTO >= 200 ms (Linux's floor; RFC 6298 says at least 1 s): {i.rto >= 200_000}",
        ])


def live_tcp_info(address, data: bytes) -> TcpInfoView:
    """Send *data* to *address* on a new connection and show the kernel's
    TCP_INFO of it, taken once the request is acknowledged, while the
    connection is still established."""
    with socket.create_connection(tuple(address), timeout=10) as sock:
        sock.sendall(data)
        info = C.wait_acknowledged(sock)
        algorithm = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return TcpInfoView(info, algorithm.split(b"\0", 1)[0].decode())


def states_view(ports) -> Text:
    """The sockets of the connections between *ports* (a server's port and
    its clients' ports) once every close has finished, from
    ``/proc/net/tcp``: these ports only, nobody else's sockets."""
    states = C.settled_states(ports, between=True)
    return Text("\n".join(str(s) for s in states) or "(no sockets on these ports)")


def login(address, user: str, password: str) -> int:
    """Log in on a new connection the way mailkit's client does (send,
    ``shutdown(SHUT_WR)``, read until the server closes); return the
    client's port, so that its socket can be looked up afterwards."""
    from .protocol import make_handshake
    with socket.create_connection(tuple(address), timeout=10) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(make_handshake(user, password))
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return client_port


def closing_first_server(*, reuse: bool = False) -> tuple[int, int]:
    """A one-connection server that closes FIRST (the opposite of mailkit):
    it accepts one client, sends ``hello``, closes, and is gone.  Return the
    port it listened on and its client's port; the server's side of the
    connection is now in TIME_WAIT.  With *reuse*, its listening socket sets
    SO_REUSEADDR before ``bind()`` (as :class:`~mailkit.server.MailServer`
    does), and the connection it accepts inherits it."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuse:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client_port = client.getsockname()[1]
    conn, _ = listener.accept()
    listener.close()
    conn.sendall(b"hello")
    conn.close()                         # the server's FIN goes first
    while client.recv(1024):             # the client reads to the end ...
        pass
    client.close()                       # ... and closes second
    C.settled_states([port, client_port], between=True)
    return port, client_port


def try_bind(port: int, *, reuse: bool) -> str:
    """Try to listen on 127.0.0.1:*port* again, with or without SO_REUSEADDR."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        return f"listening on port {port} again"
    except OSError as exc:
        return f"{type(exc).__name__}: [Errno {exc.errno}] {exc.strerror}"
    finally:
        s.close()


# --------------------------------------------------------------------------
# Your turn: checks


@dataclass(repr=False)
class Verdict(Shown):
    mark: str
    message: str

    @property
    def text(self) -> str:
        return f"{self.mark} {self.message}"


def check_next_seq(next_seq, capture: Capture) -> Verdict:
    """Run the student's ``next_seq(row)`` on every segment of the capture
    that is followed by another segment from the same side, and compare it
    with the sequence number that segment really carried."""
    tried = 0
    for conv in capture.conversations:
        for who in ("client", "server"):
            rows = conv.sent_by(who)
            for row, after in zip(rows, rows[1:]):
                got = next_seq(row)
                if got is None:
                    return Verdict("·", "not answered yet: next_seq() returns None")
                tried += 1
                if got != after.seq:
                    return Verdict("✗", f"not yet: after #{row.number} {row.label} you said "
                                   f"{got!r}, but #{after.number} carries seq={after.seq}. Hint: "
                                   "what uses sequence numbers besides payload bytes? (RFC 9293 "
                                   "section 3.4, and section 2 above.)")
    return Verdict("✓", f"right: next_seq() predicted all {tried} following sequence numbers.")


def check_checksum(internet_checksum, capture: Capture) -> Verdict:
    """Run the student's ``internet_checksum(data)`` over every IPv4 header
    of the capture (each must give 0) and over one header with its checksum
    field zeroed (it must give the field's value)."""
    headers = [s.ip_header for s in capture.segments]
    first = headers[0]
    zeroed = first[:10] + b"\x00\x00" + first[12:]
    want = int.from_bytes(first[10:12], "big")
    got = internet_checksum(zeroed)
    if got is None:
        return Verdict("·", "not answered yet: internet_checksum() returns None")
    if got != want:
        return Verdict("✗", f"not yet: for the first header with its checksum field zeroed you "
                       f"computed {got!r}, the sender wrote {want} (0x{want:04x}). Hint: add the "
                       "16-bit big-endian words, fold every carry out of bit 16 back in, and "
                       "return the complement, masked to 16 bits (RFC 1071 section 4.1).")
    bad = [i for i, h in enumerate(headers, 1) if internet_checksum(h) != 0]
    if bad:
        return Verdict("✗", f"not yet: over the whole header of segment #{bad[0]}, checksum "
                       "included, the result should be 0. Hint: do you fold the carries "
                       "until none is left?")
    return Verdict("✓", f"right: 0x{want:04x} for the first header, and all {len(headers)} "
                   "headers verify to 0.")


def _ones_sum(data: bytes, *, folds: int | None = None) -> int:
    """RFC 1071's one's-complement sum of 16-bit big-endian words (an odd
    last byte padded with a zero), the carries folded back in *folds* times
    (``None``: until none is left)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    done = 0
    while total >> 16 and (folds is None or done < folds):
        total = (total & 0xFFFF) + (total >> 16)
        done += 1
    return total


def _pseudo_header(src: bytes, dst: bytes, length: int) -> bytes:
    """TCP's pseudo-header over IPv4 (RFC 9293 section 3.1): source and
    destination address, a zero byte, the protocol (6) and the TCP length."""
    return src + dst + bytes([0, 6]) + length.to_bytes(2, "big")


def _tcp_checksum(src: bytes, dst: bytes, segment: bytes, *, folds: int | None = None) -> int:
    return ~_ones_sum(_pseudo_header(src, dst, len(segment)) + segment, folds=folds) & 0xFFFF


@dataclass(frozen=True)
class TcpChecksumCase:
    name: str            # "#7 [PSH, ACK]" or "a made-up segment"
    src: bytes           # the IPv4 source address, 4 bytes
    dst: bytes
    segment: bytes       # TCP header, its checksum field zeroed, then the payload
    want: int


def tcp_checksum_cases(capture: Capture) -> list[TcpChecksumCase]:
    """Every TCP segment of the capture, with its checksum field zeroed,
    and one made-up segment (the first one's header and addresses, then
    ten bytes) whose sum carries again after the first fold."""
    cases = []
    for conv in capture.conversations:
        for row in conv.rows:
            s = row.segment
            segment = s.tcp_header[:16] + b"\x00\x00" + s.tcp_header[18:] + s.payload
            cases.append(TcpChecksumCase(f"#{row.number} [{s.flag_names}]", s.ip_header[12:16],
                                         s.ip_header[16:20], segment, 0))
    # A sum of words plus 0xFFFF words keeps (low half + high half) the same, so the
    # made-up segment ends in one word w chosen to make the low half 0xFFFF: then
    # the first fold carries again.
    first = cases[0]
    body = first.segment + b"\xff\xff" * 4
    partial = _ones_sum(_pseudo_header(first.src, first.dst, len(body) + 2) + body + b"\x00\x00", folds=0)
    segment = body + (0xFFFF - (partial & 0xFFFF)).to_bytes(2, "big")
    assert _tcp_checksum(first.src, first.dst, segment, folds=1) != _tcp_checksum(first.src, first.dst, segment)
    cases.append(TcpChecksumCase(f"a made-up segment (#1's header, then 10 bytes chosen so that the "
                                 "sum carries twice)", first.src, first.dst, segment, 0))
    return [TcpChecksumCase(c.name, c.src, c.dst, c.segment, _tcp_checksum(c.src, c.dst, c.segment))
            for c in cases]


def _why_tcp_checksum_differs(case: TcpChecksumCase, got) -> str:
    src, dst, seg = case.src, case.dst, case.segment
    if not isinstance(got, int) or isinstance(got, bool) or not 0 <= got <= 0xFFFF:
        return "return the checksum as an int from 0 to 0xFFFF."
    if got == ~case.want & 0xFFFF:
        return "that is the sum itself; the checksum is its complement."
    if got == ~_ones_sum(seg) & 0xFFFF:
        return "that is the checksum of the segment alone: TCP's covers a pseudo-header too."
    if got == _tcp_checksum(src, dst, seg, folds=1):
        return "a carry folded back in once can carry again."
    if len(seg) % 2 and got in (~_ones_sum(_pseudo_header(src, dst, len(seg)) + seg[:-1]) & 0xFFFF,
                                ~_ones_sum(_pseudo_header(src, dst, len(seg)) + b"\x00" + seg) & 0xFFFF):
        return f"this segment has an odd length ({len(seg)} bytes): how does RFC 1071 pad it?"
    if got in (_tcp_checksum(src, dst, seg[:20]) , ~_ones_sum(_pseudo_header(src, dst, len(seg) - 20)
                                                               + seg) & 0xFFFF,
               ~_ones_sum(_pseudo_header(src, dst, len(seg) + 20) + seg) & 0xFFFF):
        return "check the pseudo-header's length: the TCP header and the data, in bytes."
    return "compare your pseudo-header with RFC 9293's picture, field by field."


def check_tcp_checksum(tcp_checksum, capture: Capture) -> Verdict:
    """Run the student's ``tcp_checksum(src, dst, segment)`` on every TCP
    segment of the capture (checksum field zeroed; three have an odd length)
    and on a made-up segment whose sum carries twice; compare with RFC 9293's
    checksum.  For the RST, the one segment the kernel checksummed whole on
    lo, that is also the value in the capture."""
    cases = tcp_checksum_cases(capture)
    for case in cases:
        try:
            got = tcp_checksum(case.src, case.dst, case.segment)
        except NotImplementedError:
            got = None
        except Exception as exc:                      # the student's code, shown as a hint
            return Verdict("✗", f"not yet: for {case.name} your function raised "
                           f"{type(exc).__name__}: {exc}. Hint: {TCP_CHECKSUM_HINT}")
        if got is None:
            return Verdict("·", "not answered yet: tcp_checksum() returns None or raises "
                           "NotImplementedError")
        if got != case.want:
            return Verdict("✗", f"not yet: for {case.name} you computed {got!r}, the checksum is "
                           f"0x{case.want:04x}: {_why_tcp_checksum_differs(case, got)} "
                           f"Hint: {TCP_CHECKSUM_HINT}")
    odd = sum(len(c.segment) % 2 for c in cases)
    return Verdict("✓", f"right: all {len(cases) - 1} segments of the capture ({odd} of odd length, "
                   "the RST's checksum as its sender wrote it) and a made-up one whose sum "
                   "carries twice.")


TCP_CHECKSUM_HINT = ("RFC 9293 section 3.1 draws the pseudo-header and says what the checksum "
                     "covers; RFC 1071 section 1 gives the sum. Which bytes go in, in which order?")


# --------------------------------------------------------------------------
# Record it again, live


def record_again(capture: Capture) -> Text:
    """Record the scripted exchange live (root or CAP_NET_RAW) and compare
    its shape with the committed capture: the same handshakes, the same
    bytes each way, a FIN from each side.  Segment sizes, ports, ISNs,
    times and who closed first may differ, and are not compared.  The
    script's connections are told apart by their ports: a retried attempt
    or another program's connection to the same ports is left out, and
    one line says so; when the shapes differ, one line says where."""
    if not C.can_capture():
        return Text(NOT_ALLOWED)
    fd, name = tempfile.mkstemp(suffix=".pcap")
    os.close(fd)
    try:
        recording = C.record(name)
        again = load_capture(name)
    except ValueError as exc:           # a connection of the script was not seen at all
        return Text(f"recorded live on lo, but not the whole script: {exc}")
    finally:
        os.unlink(name)
    difference = C.shape(again.segments).difference(C.shape(capture.segments))
    lines = [f"recorded live on lo: {len(again.conversations)} connections, "
             f"every one seen to its end: {recording.complete}",
             f"same shape as the committed capture: {not difference}"]
    if difference:
        lines.append(f"what differed: {difference}")
    if recording.left_out:
        n = len(recording.left_out)
        lines.append(f"left out {n} connection{'s' * (n > 1)} on the same ports that the script did not make "
                     f"(a retry, or another program): {'; '.join(recording.left_out)}")
    return Text("\n".join(lines))


def record_button(capture: Capture):
    """A button that runs :func:`record_again` when the student presses it.

    A live capture needs root or ``CAP_NET_RAW``, which a student's kernel
    may or may not have; what the cell shows before the press is the same
    everywhere, so the committed notebook matches on every machine."""
    import ipywidgets as W          # a front end: only the course needs it

    class RecordButton(W.VBox):
        text = ("[Record live and compare] (needs root or CAP_NET_RAW: records the same "
                "script on lo and compares its shape with the committed capture)")

        def __init__(self):
            self.button = W.Button(description="Record live and compare", button_style="primary",
                                   layout=W.Layout(width="auto"))
            self.output = W.Output()
            self.result = None
            self.button.on_click(lambda _b: self.click())
            super().__init__([self.button, self.output])

        def click(self) -> Text:
            """What the button does: record, compare, show the verdict; return it."""
            self.button.disabled = True
            try:
                self.result = record_again(capture)
            finally:
                self.button.disabled = False
            self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                    "data": {"text/plain": repr(self.result)}},)
            return self.result

        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs)
            data["text/plain"] = self.text
            return data

    return RecordButton()
