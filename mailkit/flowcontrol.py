"""Flow control and Nagle's algorithm on real loopback sockets (notebook 09),
read from the kernel's ``TCP_INFO``: no root, no capture needed.

* :func:`zero_window`: a receiver that stops reading. Its receive buffer
  fills, the window it advertises shrinks to zero (RFC 9293 section 3.8.6),
  the sender's ``send()`` stops taking bytes, and the sender's persist timer
  sends **zero-window probes** (RFC 9293 3.8.6.1; RFC 1122 4.2.2.17), each
  after a longer wait. Once the receiver reads again, the window opens and
  every byte arrives, in order.
* :func:`nagle`: a client that writes a small request in two pieces and then
  reads the reply (write-write-read), on one connection, with and without
  ``TCP_NODELAY``. With Nagle's algorithm (RFC 896; RFC 1122 4.2.3.4) the
  second piece waits until the first is acknowledged, and the server, with
  nothing to send yet, delays its ACK (RFC 1122 4.2.3.2; Linux waits at
  least 40 ms, ``TCP_DELACK_MIN``).

What ``TCP_INFO`` gives beyond the first 104 bytes that
:func:`mailkit.capture.tcp_info` reads (``struct tcp_info`` in
``linux/tcp.h``): ``snd_wnd`` (the peer's advertised window, scaled, in
bytes: Linux 5.4 and later, which this module needs), ``rcv_wnd`` (6.2
and later), ``segs_out``,
``notsent_bytes``, ``rwnd_limited`` (µs the sender spent limited by the
receive window). An older kernel returns fewer bytes: :func:`window_info`
says so. Linux only.

The mail protocol sends one request per connection; the Nagle demonstration
keeps one connection open for several requests, which the 2017 protocol
does not do: a demonstration of TCP, not a protocol change.
"""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time
from dataclasses import dataclass

from . import pcap
from .capture import Sniffer, tcp_info
from .protocol import CHECKSUM_LEN, make_frame

__all__ = ["WindowInfo", "window_info", "ZeroWindow", "zero_window", "zero_window_probes", "NagleRun", "nagle",
           "DELACK_MIN_S"]

# struct tcp_info up to tcpi_rcv_wnd (Linux 6.2): the first 104 bytes (8B24I), then
# pacing_rate, max_pacing_rate, bytes_acked, bytes_received (4Q), segs_out, segs_in,
# notsent_bytes, min_rtt, data_segs_in, data_segs_out (6I), delivery_rate, busy_time,
# rwnd_limited, sndbuf_limited (4Q), delivered, delivered_ce (2I), bytes_sent,
# bytes_retrans (2Q), dsack_dups, reord_seen, rcv_ooopack, snd_wnd, rcv_wnd (5I).
_FORMAT = "=8B24I4Q6I4Q2I2Q5I"
_SIZE = struct.calcsize(_FORMAT)          # 236 bytes
SMALL_BUFFER = 4096        # SO_RCVBUF/SO_SNDBUF for the zero-window demo (Linux doubles it):
                           # a few KB fill at once, so the window closes in milliseconds
PROBES_TO_SEE = 2          # zero-window probes to wait for: the second shows the back-off
WAIT_S = 6.0               # at most this long for them (on loopback: about 0.2 + 0.4 s)
DELACK_MIN_S = 0.040       # Linux's TCP_DELACK_MIN: the shortest delayed-ACK timer
EXCHANGES = 8              # write-write-read exchanges per setting (the median is kept)


@dataclass(frozen=True)
class WindowInfo:
    """What flow control looks like from one socket (sizes in bytes)."""

    snd_wnd: int             # the window the peer advertised: what we may still send
    rcv_wnd: int             # the window we advertise (-1: the kernel does not say, before 6.2)
    probes: int              # zero-window probes sent and not yet answered
    backoff: int             # how often the persist (or retransmission) timer backed off
    unacked: int             # segments in flight
    notsent: int             # bytes in our send buffer not yet sent
    segs_out: int            # segments sent over the connection's life
    rwnd_limited_us: int     # µs spent limited by the peer's receive window


def window_info(sock: socket.socket) -> WindowInfo:
    """The flow-control fields of ``TCP_INFO`` for a connected socket:
    Linux 5.4 or later (``snd_wnd``); ``rcv_wnd`` is -1 before 6.2."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    if len(raw) < _SIZE - 4:
        raise OSError(f"TCP_INFO gave {len(raw)} bytes: its snd_wnd needs Linux 5.4 or later")
    if len(raw) < _SIZE:
        raw += struct.pack("=i", -1)        # no rcv_wnd before Linux 6.2
    v = struct.unpack(_FORMAT.replace("5I", "4Ii"), raw)
    return WindowInfo(snd_wnd=v[-2], rcv_wnd=v[-1], probes=v[3], backoff=v[4], unacked=v[12],
                      notsent=v[38], segs_out=v[36], rwnd_limited_us=v[44])


@dataclass(frozen=True)
class ZeroWindow:
    """What :func:`zero_window` saw; the byte counts depend on the kernel,
    so :attr:`text` prints what holds on any Linux, not the counts."""

    sent_before_blocked: int    # bytes send() took before it would block
    total: int                  # bytes of the mail frame
    windows: tuple              # snd_wnd as the sender filled the window, then 0
    probes_seen: int            # the persist timer's probes, read from backoff
    segs_while_closed: int      # segments the sender sent while the window was 0 (the probes)
    received: int               # bytes the receiver read in the end
    in_order: bool
    segments: tuple = ()        # with capture=True: the segments on lo (root or CAP_NET_RAW)

    @property
    def text(self) -> str:
        return "\n".join([
            f"send() stopped taking bytes before the whole mail was sent: {self.sent_before_blocked < self.total}",
            f"the sender's window (snd_wnd) shrank to zero: {self.windows[-1] == 0}",
            f"zero-window probes sent while the receiver did not read: at least {PROBES_TO_SEE}: "
            f"{self.probes_seen >= PROBES_TO_SEE and self.segs_while_closed >= PROBES_TO_SEE}",
            f"once it read again: every byte arrived, in order: {self.received == self.total and self.in_order}",
        ])

    def __repr__(self) -> str:
        return self.text


def _pair(rcvbuf: int, sndbuf: int, listening=lambda port: None) -> tuple[socket.socket, socket.socket]:
    """A connected (sender, receiver) pair on 127.0.0.1, port 0, with small
    buffers; ``listening(port)`` is called before the sender connects."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)   # the accepted socket inherits it
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listening(listener.getsockname()[1])
        sender = socket.socket()
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sender.connect(listener.getsockname())
        receiver, _ = listener.accept()
    return sender, receiver


def _until(predicate, timeout: float):
    """Poll *predicate* (a TCP_INFO reading) every millisecond until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.001)


def zero_window(data: bytes | None = None, *, rcvbuf: int = SMALL_BUFFER, sndbuf: int = SMALL_BUFFER,
                probes: int = PROBES_TO_SEE, wait: float = WAIT_S, capture: bool = False) -> ZeroWindow:
    """Send *data* (by default a 100 KB mail frame) to a receiver that does
    not read, until the window is zero and the sender has probed it
    *probes* times; then read everything and check it.  With *capture*
    (root or ``CAP_NET_RAW``: :class:`mailkit.capture.Sniffer` raises
    PermissionError otherwise), the segments on ``lo`` are kept too."""
    if data is None:
        data = make_frame("1234567890", "email", "bob", "A long mail", "x" * 100_000)
    sniffers: list = []
    try:
        sender, receiver = _pair(rcvbuf, sndbuf, lambda port: capture and sniffers.append(Sniffer({port}).start()))
        return _fill_and_probe(sender, receiver, data, probes, wait, sniffers)
    finally:
        for sniffer in sniffers:
            sniffer.stop()


def _fill_and_probe(sender, receiver, data, probes, wait, sniffers) -> ZeroWindow:
    with sender, receiver:
        sender.setblocking(False)
        sent, windows, blocked_at = 0, [window_info(sender).snd_wnd], len(data)
        while sent < len(data):
            try:
                sent += sender.send(data[sent:sent + 1024])
            except BlockingIOError:
                blocked_at = sent
                break
            windows.append(window_info(sender).snd_wnd)
        closed = _until(lambda: (i := window_info(sender)).snd_wnd == 0 and i.unacked == 0 and i, wait)
        windows.append(window_info(sender).snd_wnd)
        before = closed.segs_out if closed else 0
        probed = _until(lambda: (i := window_info(sender)).backoff >= probes and i, wait)
        info = probed or window_info(sender)
        segs_while_closed = info.segs_out - before
        if sniffers:       # the sniffer's thread may not have read the last probe yet
            sniffers[0].wait_for(lambda segments: min(_classify(segments)[:2]) >= probes, timeout=wait)
        # Read again: the window opens, the sender sends the rest.
        receiver.settimeout(wait)
        got = bytearray()
        while len(got) < len(data):
            while sent < len(data):
                try:
                    sent += sender.send(data[sent:])
                except BlockingIOError:
                    break
            chunk = receiver.recv(65536)
            if not chunk:
                break
            got += chunk
    segments = tuple(sniffers[0].segments()) if sniffers else ()
    return ZeroWindow(segments=segments, sent_before_blocked=blocked_at,
                      total=len(data), windows=tuple(windows), probes_seen=info.backoff,
                      segs_while_closed=segs_while_closed, received=len(got), in_order=bytes(got) == data)


def _classify(segments) -> tuple[int, int, list]:
    """(zero windows the receiver advertised, the sender's probes, a line per such segment)."""
    if not segments:
        return 0, 0, []
    first = segments[0]
    client = first.sport if first.has(pcap.SYN) and not first.has(pcap.ACK) else first.dport
    isn = {s.sport: s.seq for s in segments if s.has(pcap.SYN)}
    lines, next_byte, zeros, probes = [], None, 0, 0
    for s in segments:
        mine = s.sport == client
        rel_seq = (s.seq - isn.get(s.sport, s.seq)) % 2 ** 32
        note = ""
        if mine and s.length:
            next_byte = max(next_byte or 0, rel_seq + s.length)
        elif mine and next_byte is not None and rel_seq == next_byte - 1 and not s.has(pcap.FIN):
            probes += 1
            note = "  <- zero-window probe"
        elif not mine and s.window == 0 and not s.has(pcap.SYN):
            zeros += 1
            note = "  <- window 0"
        if note:
            lines.append(f"{'sender  ' if mine else 'receiver'} [{s.flag_names}] seq={rel_seq} "
                         f"len={s.length} win={s.window}{note}")
    return zeros, probes, lines


def zero_window_probes(z: ZeroWindow) -> str:
    """What the capture of a :func:`zero_window` run shows: the receiver's
    ACKs with window 0, and the sender's probes.  RFC 9293 3.8.6.1 has the
    sender send new data (an octet) into the zero window now and then;
    Linux's probe (``tcp_xmit_probe_skb``) carries no data and a sequence
    number one below the next byte, an old one, which the receiver must
    answer with an ACK (RFC 9293 3.10.7.4) that states its window."""
    if not z.segments:
        return "no capture: it needs root or CAP_NET_RAW (TCP_INFO above shows the same)"
    zeros, probes, lines = _classify(z.segments)
    return "\n".join([f"captured on lo: {len(z.segments)} segments; {zeros} advertise a zero window; "
                       f"zero-window probes: {probes}", *lines[:12]])


@dataclass(frozen=True)
class NagleRun:
    nodelay: bool
    times: tuple              # seconds per write-write-read exchange
    ato: float                # the server's delayed-ACK timeout from TCP_INFO, seconds

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def text(self) -> str:
        name = "TCP_NODELAY (Nagle off)" if self.nodelay else "Nagle on (the default)"
        return f"{name}: median {self.median * 1000:.2f} ms per exchange, {len(self.times)} exchanges"

    def __repr__(self) -> str:
        return self.text


def _answer_frames(conn: socket.socket, reply: bytes, results: list) -> None:
    """The demonstration server: answer every complete frame on *conn* (kept open)."""
    buffer = b""
    with conn:
        while chunk := conn.recv(4096):
            buffer += chunk
            while (cut := buffer.find(b"#")) >= 0 and len(buffer) >= cut + 1 + CHECKSUM_LEN:
                buffer = buffer[cut + 1 + CHECKSUM_LEN:]
                results.append(tcp_info(conn).ato / 1e6)
                conn.sendall(reply)


def nagle(*, nodelay: bool, split: bool = True, exchanges: int = EXCHANGES) -> NagleRun:
    """*exchanges* times on one loopback connection: write a ``count`` frame
    in two pieces (the command, then ``#`` and the checksum), or in one with
    ``split=False`` (what mailkit's client does), and read the reply."""
    request = make_frame("1234567890", "count")
    head, tail = request[:-(CHECKSUM_LEN + 1)], request[-(CHECKSUM_LEN + 1):]
    reply = b"OK: 2 messages"
    atos: list = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=10) as client:
            conn, _ = listener.accept()
            server = threading.Thread(target=_answer_frames, args=(conn, reply, atos), daemon=True)
            server.start()
            if nodelay:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            times = []
            for _ in range(exchanges):
                start = time.perf_counter()
                if split:
                    client.sendall(head)
                    client.sendall(tail)
                else:
                    client.sendall(request)
                got = b""
                while len(got) < len(reply):
                    got += client.recv(100)
                times.append(time.perf_counter() - start)
            client.shutdown(socket.SHUT_WR)
            server.join(10)
    return NagleRun(nodelay, tuple(times), max(atos) if atos else 0.0)
