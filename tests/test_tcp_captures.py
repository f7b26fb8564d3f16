"""mailkit.pcap's writer (tcp_frame, pcap_bytes) and lab 7's made-up
captures (mailkit.labs.tcp_captures), read back with mailkit.pcap's own
reader and with scapy (a test dependency only), which must agree."""

from __future__ import annotations

import random

import pytest

from mailkit import pcap
from mailkit.labs import tcp_captures as T


def test_tcp_frame_round_trips_through_the_reader(tmp_path):
    frame = pcap.tcp_frame(src="127.0.0.2", dst="127.0.0.1", sport=51000, dport=2525, seq=2**32 - 1,
                           ack=17, flags=pcap.SYN | pcap.ACK, window=1234,
                           options=pcap.mss_option(1400), payload=b"hello", ip_id=99)
    path = tmp_path / "one.pcap"
    assert pcap.write_pcap(path, [(1.25, frame)]) == 1
    assert path.read_bytes() == pcap.pcap_bytes([(1.25, frame)])
    [s] = pcap.read_segments(path)
    assert (s.src, s.dst, s.sport, s.dport) == ("127.0.0.2", "127.0.0.1", 51000, 2525)
    assert (s.seq, s.ack, s.flags, s.window, s.ip_id, s.time) == (2**32 - 1, 17, pcap.SYN | pcap.ACK, 1234, 99, 1.25)
    assert s.options == (("MSS", 1400),) and s.payload == b"hello"
    assert pcap.internet_checksum(s.ip_header) == 0 and pcap.tcp_checksum_ok(s)


def test_tcp_frame_pads_options_and_refuses_too_many():
    s = pcap.parse_frame(pcap.tcp_frame(src="127.0.0.1", dst="127.0.0.1", sport=1, dport=2, seq=0,
                                        flags=pcap.SYN, options=b"\x01\x01\x01"))
    assert len(s.tcp_header) == 24 and s.options == (("NOP", None),) * 3
    with pytest.raises(ValueError, match="at most 40"):
        pcap.tcp_frame(src="127.0.0.1", dst="127.0.0.1", sport=1, dport=2, seq=0, flags=0, options=b"\x01" * 41)
    with pytest.raises(ValueError, match="not an IPv4 address"):
        pcap.tcp_frame(src="localhost", dst="127.0.0.1", sport=1, dport=2, seq=0, flags=0)


def test_a_damaged_byte_breaks_the_tcp_checksum():
    frame = bytearray(pcap.tcp_frame(src="127.0.0.1", dst="127.0.0.1", sport=1, dport=2, seq=0,
                                     flags=pcap.ACK, payload=b"mail"))
    frame[-1] ^= 0x01
    assert not pcap.tcp_checksum_ok(pcap.parse_frame(bytes(frame)))


@pytest.mark.parametrize("seed", range(12))
def test_made_up_captures_keep_tcps_numbers(seed, tmp_path):
    """Read back with mailkit's reader: every answer in the Truth is what
    the segments say, and every sequence number follows from the one before."""
    path = tmp_path / "c.pcap"
    truth = T.write_capture(path, random.Random(seed))
    segments = pcap.read_segments(path)
    assert all(pcap.tcp_checksum_ok(s) and pcap.internet_checksum(s.ip_header) == 0 for s in segments)
    mail, refused = sorted(pcap.conversations(segments), key=lambda c: c.refused)
    assert refused.refused and not mail.refused
    syn, syn_ack = mail.rows[0].segment, mail.rows[1].segment
    assert (syn.seq, syn_ack.seq, syn_ack.ack) == (truth.client_isn, truth.server_isn, (truth.client_isn + 1) % 2**32)
    assert len(mail.data_rows("client")) == truth.request_segments
    assert len(mail.payload("client")) == truth.request_bytes
    assert mail.payload("server") == T.REPLY
    assert mail.first_fin == truth.closed_first
    assert mail.mss == {"client": truth.client_mss, "server": truth.server_mss}
    assert all(r.segment.length <= truth.server_mss for r in mail.data_rows("client"))
    assert refused.server[1] == truth.refused_port and refused.rows[0].segment.seq == truth.refused_isn
    rst = refused.rows[-1].segment
    assert rst.flags == pcap.RST | pcap.ACK and rst.ack == (truth.refused_isn + 1) % 2**32 and rst.seq == 0
    # each side's next sequence number is the last one plus the space it used
    for who in ("client", "server"):
        rows = mail.sent_by(who)
        for a, b in zip(rows, rows[1:]):
            assert b.seq == a.seq + a.segment.seq_space
    # the last ACK of each side acknowledges everything the other side sent
    last_ack = {r.sender: r.ack for r in mail.rows if r.ack is not None}
    assert last_ack["server"] == 1 + truth.request_bytes + 1
    assert last_ack["client"] == 1 + len(T.REPLY) + 1


def test_draws_cover_every_case_and_choices_are_kept():
    truths = [T.made_up_capture(random.Random(seed))[1] for seed in range(40)]
    assert {t.closed_first for t in truths} == {"client", "server"}
    assert len({t.request_segments for t in truths}) >= 3
    assert len({t.client_isn for t in truths}) == 40
    _, truth = T.made_up_capture(random.Random(1), closes_first="server", refused_first=True)
    assert truth.closed_first == "server"
    frames, _ = T.made_up_capture(random.Random(1), closes_first="server", refused_first=True)
    assert pcap.parse_frame(frames[1][1]).flags == pcap.RST | pcap.ACK


def test_the_example_is_the_same_on_every_run(tmp_path):
    a, b = T.example_capture(tmp_path / "a.pcap"), T.example_capture(tmp_path / "b.pcap")
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert a.endswith("a.pcap")


@pytest.mark.parametrize("seed", range(4))
def test_scapy_reads_a_made_up_capture_the_same_way(seed, tmp_path):
    """An independent parser agrees field by field, and finds both checksums right."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    path = tmp_path / "c.pcap"
    T.write_capture(path, random.Random(seed))
    ours = pcap.read_segments(path)
    packets = rdpcap(str(path))
    assert len(packets) == len(ours)
    for p, s in zip(packets, ours):
        ip, tcp = p[IP], p[TCP]
        assert (ip.src, ip.dst, tcp.sport, tcp.dport) == (s.src, s.dst, s.sport, s.dport)
        assert (tcp.seq, tcp.ack, int(tcp.flags), tcp.window) == (s.seq, s.ack, s.flags, s.window)
        assert bytes(tcp.payload) == s.payload
        assert [v for k, v in tcp.options if k == "MSS"] == [v for k, v in s.options if k == "MSS"]
        assert float(p.time) == pytest.approx(s.time, abs=1e-6)
        # scapy computes the checksums itself when asked to rebuild: they match ours
        ip_sum, tcp_sum = ip.chksum, tcp.chksum
        del ip.chksum, tcp.chksum
        rebuilt = IP(bytes(ip))
        assert (rebuilt.chksum, rebuilt[TCP].chksum) == (ip_sum, tcp_sum)
