"""Issue 12 A1 and A2, the server side of interop with the real 2017 client.

The 2017 client never half-closes: it sends, reads ONE ``recv(1024)``, and
after exactly ``KO`` resends the same frame on the SAME socket, once (see
the last section of PROTOCOL.md).  These tests model that client in a few
lines (:class:`SameSocketClient`) and run against both servers.

No test here times the server: the bounds below are far from the values
they guard against (a reply after the 2 s idle timeout, or never), so that
a loaded machine cannot make them fail while the old behaviour still would.
"""

from __future__ import annotations

import random
import re
import socket
import time

import pytest

from conftest import CHEAP_SCRYPT_N, USERS, raw_request
from mailkit import REPLIES, MailClient, NoisyLink
from mailkit.protocol import KO_RESEND_S, make_frame, make_handshake



class SameSocketClient:
    """The real 2017 client's habits: one send, one recv(1024), and after a
    bare KO one resend on the same socket; then close."""

    def __init__(self, address, timeout: float = 10.0):
        self.address, self.timeout = address, timeout
        self.kos = 0

    def exchange(self, data: bytes, *, pause: float = 0.0) -> str:
        with socket.create_connection(self.address, timeout=self.timeout) as sock:
            if pause:
                time.sleep(pause)               # the request comes after the accept
            sock.sendall(data)
            reply = sock.recv(1024).decode("utf-8", "replace")
            if reply == "KO":
                self.kos += 1
                sock.sendall(data)              # the same frame, the same socket
                reply = sock.recv(1024).decode("utf-8", "replace")
            return reply


# A1's bug answered a late request only when the idle timer fired.  These
# servers wait 20 s for a silent client, so "answered before half of that"
# separates the quiet time (50-100 ms) from the idle timeout by seconds of
# margin, however loaded the machine: a correctness check, not a speed figure.
PATIENT_IDLE_S = 20.0


@pytest.fixture
def patient_server(server_class):
    """A server whose idle timeout (20 s) no quiet time can be mistaken for."""
    with server_class(users=USERS, scrypt_n=CHEAP_SCRYPT_N, idle_timeout=PATIENT_IDLE_S) as srv:
        yield srv


def _flip_last_hex(frame: bytes) -> bytes:
    return frame[:-1] + (b"1" if frame.endswith(b"0") else b"0")


# -- A1: quiet times, for a request that comes after the accept --------------------


def test_a_login_sent_20_ms_after_connecting_is_answered_after_the_quiet_time(patient_server):
    """Before the fix, the loop's timer stayed at the 2 s idle wait it set on
    accept, and every 2017 login took ~2 s (the idle timeout)."""
    client = SameSocketClient(patient_server.address)
    t0 = time.monotonic()
    reply = client.exchange(b"alice:wonderland", pause=0.02)
    took = time.monotonic() - t0
    assert re.fullmatch(r"OK:\d{10}", reply)
    assert took < PATIENT_IDLE_S / 2, f"answered after {took:.2f} s: the idle timeout, not the quiet time"


def test_a_damaged_frame_sent_after_connecting_gets_ko_after_settle_not_idle(patient_server):
    """The same for a frame whose checksum does not match (SETTLE_S, 100 ms)."""
    sid = raw_request(patient_server.address, make_handshake("alice", "wonderland")).decode()[3:]
    bad = _flip_last_hex(make_frame(sid, "count"))
    with socket.create_connection(patient_server.address, timeout=10) as sock:
        time.sleep(0.02)
        t0 = time.monotonic()
        sock.sendall(bad)
        assert sock.recv(1024) == b"KO"
        took = time.monotonic() - t0
    assert took < PATIENT_IDLE_S / 2, f"KO after {took:.2f} s: the idle timeout, not SETTLE_S"


# -- A2: a resend after KO on the same connection -------------------------------------


def test_a_resend_after_ko_on_the_same_socket_is_answered_then_closed(server):
    sid = raw_request(server.address, make_handshake("alice", "wonderland")).decode()[3:]
    frame = make_frame(sid, "email", "bob", "resent", "x")
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(_flip_last_hex(frame))
        assert sock.recv(1024) == b"KO"
        sock.sendall(frame)                       # the 2017 client's resend
        assert sock.recv(1024) == REPLIES.EMAIL_SENT.encode()
        assert sock.recv(1024) == b""             # then the server closes
    bob = MailClient(*server.address)
    bob.login("bob", USERS["bob"])
    assert [m.subject for m in bob.messages_from("alice")] == ["resent"]


def test_only_one_resend_per_connection(server):
    sid = raw_request(server.address, make_handshake("alice", "wonderland")).decode()[3:]
    bad = _flip_last_hex(make_frame(sid, "count"))
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(bad)
        assert sock.recv(1024) == b"KO"
        sock.sendall(bad)
        assert sock.recv(1024) == b"KO"
        assert sock.recv(1024) == b""             # no third chance: closed


def test_a_client_that_closes_after_ko_is_unaffected(server, alice):
    """mailkit's client half-closes, so the server closes after KO at once,
    and the client retries on a new connection as before."""
    frame = _flip_last_hex(make_frame(alice.session_id, "count"))
    assert raw_request(server.address, frame) == b"KO"          # half-closed: closed at once
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(frame)
        assert sock.recv(1024) == b"KO"
    # it left without resending: the server goes on serving everyone
    assert alice.count() == 0


def test_a_connection_left_silent_after_ko_is_closed_after_the_resend_wait(server, alice):
    frame = _flip_last_hex(make_frame(alice.session_id, "count"))
    with socket.create_connection(server.address, timeout=KO_RESEND_S * 5) as sock:
        sock.sendall(frame)
        assert sock.recv(1024) == b"KO"
        assert sock.recv(1024) == b""             # closed, with no reply, after KO_RESEND_S


def test_2017_clients_through_noisy_link_at_5_percent_deliver_each_resent_mail_once(server, capsys):
    """150 mails from 2017-style clients through a NoisyLink flipping a bit in
    5% of frames (seeded).  Every mail whose resend got through is stored
    exactly once; a mail is lost only if both its attempts were damaged."""
    sender = MailClient(*server.address)
    sender.login("alice", USERS["alice"])
    rng = random.Random(2017)
    outcomes = {"sent": 0, "ok": 0, "gave up": 0}
    with NoisyLink(server.address, rate=0.05, seed=11) as link:
        client = SameSocketClient(link.address)
        for i in range(150):
            subject = f"m{i:03d}-{rng.randrange(10**6)}"
            outcomes["sent"] += 1
            reply = client.exchange(make_frame(sender.session_id, "email", "bob", subject, "hello"))
            outcomes["ok" if reply == REPLIES.EMAIL_SENT else "gave up"] += 1
    bob = MailClient(*server.address)
    bob.login("bob", USERS["bob"])
    stored = [m.subject for m in bob.messages_from("alice")]
    duplicated = len(stored) - len(set(stored))
    lost = outcomes["sent"] - len(set(stored))
    with capsys.disabled():
        print(f"\n  [{type(server).__name__}] 2017 client via NoisyLink 5%: sent {outcomes['sent']}, "
              f"KO {client.kos}, delivered once {len(set(stored)) - duplicated}, "
              f"lost {lost}, duplicated {duplicated}")
    assert client.kos > 0, "the link flipped nothing: the test proves nothing"
    assert duplicated == 0
    assert outcomes["ok"] == len(set(stored))       # every OK is a stored mail, and only those
    # A lost mail is one whose frame AND resend were both damaged (~0.25% each).
    assert lost == outcomes["gave up"] <= 3
