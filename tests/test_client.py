"""MailClient over real sockets: commands, retries, transcripts, errors."""

from __future__ import annotations

import socket
import struct

import pytest

from conftest import USERS
from mailkit import (BitFlipChannel, LoginFailed, MailClient, NotLoggedIn, REPLIES,
                     RetriesExhausted, ServerError, ServerUnreachable)


def test_every_command_round_trip(server, alice, bob):
    tricky = [
        ("Re: 50% off #1", "a:b#c%3A\nline two 😀"),
        ("%3A literal %25", "ends with #"),
        ("", ""),
        ("emoji 📨", "naïve café — ünïcödé"),
    ]
    for subject, body in tricky:
        assert alice.send("bob", subject, body) == REPLIES.EMAIL_SENT
    got = [(m.subject, m.body) for m in bob.messages_from("alice")]
    assert got == tricky
    assert bob.count() == 4
    assert bob.delete("alice", "Re: 50% off #1") == 1
    assert bob.count() == 3
    assert [m.sender for m in bob.dump()] == ["alice"] * 3
    assert bob.messages_from("carol") == []


def test_100_kb_body_round_trips(alice, bob):
    body = "0123456789abcdef:#%\n" * 5200
    alice.send("bob", "big", body)
    assert bob.messages_from("alice")[0].body == body


def test_transcript_records_every_attempt(server, alice):
    alice.channel = BitFlipChannel().script((20, 1))
    alice.send("bob", "s", "b")
    login, first, second = alice.transcript
    assert (login.command, login.attempt, login.outcome) == ("login", 1, "OK")
    assert (first.command, first.attempt, first.outcome, first.flips) == ("email", 1, "KO", ((20, 1),))
    assert first.corrupted and first.request != first.intended
    assert (second.attempt, second.outcome, second.reply) == (2, "OK", b"OK: Email Sent")
    assert second.request == second.intended == first.intended
    assert all(e.duration > 0 and e.started > 0 for e in alice.transcript)


def test_flipped_bit_gets_ko_then_the_retry_succeeds_once(server, alice, bob):
    alice.channel = BitFlipChannel().script((5, 0), (30, 7))
    assert alice.send("bob", "third time lucky", "b") == REPLIES.EMAIL_SENT
    assert [e.outcome for e in alice.transcript[1:]] == ["KO", "KO", "OK"]
    assert bob.count() == 1


@pytest.mark.parametrize("retries", [3, 0, 1, 5])
def test_every_attempt_corrupted_raises_after_1_plus_retries(server, retries):
    client = MailClient(*server.address, retries=retries, channel=BitFlipChannel(rate=1.0, seed=9))
    client.login("alice", "wonderland")
    with pytest.raises(RetriesExhausted, match=f"email failed after {retries + 1} attempts?") as info:
        client.send("bob", "s", "b")
    assert len(info.value.attempts) == retries + 1
    assert [e.outcome for e in client.transcript[1:]] == ["KO"] * (retries + 1)


def test_named_errors_are_raised_at_once_not_retried(alice):
    with pytest.raises(ServerError, match="unknown recipient 'nobody'") as info:
        alice.send("nobody", "s", "b")
    assert info.value.reply == "ERROR: unknown recipient 'nobody'"
    assert len(alice.transcript) == 2


def test_wrong_password(server):
    client = MailClient(*server.address)
    with pytest.raises(LoginFailed, match="wrong username or password"):
        client.login("alice", "nope")
    assert client.session_id is None and len(client.transcript) == 1


def test_commands_before_login_say_so(server):
    with pytest.raises(NotLoggedIn, match="log in before 'count'"):
        MailClient(*server.address).count()


def test_server_down_is_a_clear_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                                  # nothing listens there now
    client = MailClient("127.0.0.1", port)
    with pytest.raises(ServerUnreachable, match=f"nothing is listening at 127.0.0.1:{port}"):
        client.login("alice", "wonderland")


def test_a_connection_closed_without_reply_is_retried():
    """A server that hangs up once without answering: the client tries again."""
    listener = socket.create_server(("127.0.0.1", 0))
    hung_up = []

    import threading

    def serve():
        for reply in (None, b"OK:0123456789"):
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                if reply is None:
                    hung_up.append(True)
                else:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = MailClient(*listener.getsockname())
    assert client.login("alice", "wonderland") == "0123456789"
    thread.join(5)
    listener.close()
    assert hung_up == [True]
    assert [e.outcome for e in client.transcript] == ["no reply", "OK"]


def test_logoff_then_commands_need_a_new_login(alice):
    alice.logoff()
    with pytest.raises(NotLoggedIn):
        alice.count()
    alice.login("alice", USERS["alice"])
    assert alice.count() == 0


# -- servers that do not close (the 2017 server), and what is never resent ----------


class ScriptedServer:
    """A listening socket whose connections each run one script
    ``script(conn)``; the connections are kept open until ``close()``."""

    def __init__(self, *scripts):
        import threading
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self.requests: list[bytes] = []
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, args=(scripts,), daemon=True)
        self.thread.start()

    def _run(self, scripts):
        for script in scripts:
            conn, _ = self.sock.accept()
            self.conns.append(conn)
            self.requests.append(conn.recv(65536))
            script(conn)

    def close(self):
        self.thread.join(10)
        for conn in self.conns:
            conn.close()
        self.sock.close()


def test_a_reply_from_a_server_that_never_closes_is_complete_after_a_quiet_time():
    srv = ScriptedServer(lambda c: c.sendall(b"OK:0123456789"),          # login: complete at once
                         lambda c: c.sendall(b"Total emails recived: 7"))  # then quiet, never closed
    try:
        client = MailClient(*srv.address, timeout=5)
        assert client.login("alice", "wonderland") == "0123456789"
        assert client.count() == 7
    finally:
        srv.close()
    assert [e.attempt for e in client.transcript] == [1, 1]


def test_a_mailkit_listing_that_pauses_is_read_until_the_close():
    import threading
    from mailkit import Message
    from mailkit.protocol import format_messages
    text = format_messages([Message("alice", "bob", "Hi", "body " * 50, 0.0)]).encode()

    def slow(conn):                     # half now, the rest after more than QUIET_S, then close
        conn.sendall(text[:60])
        threading.Event().wait(0.6)
        conn.sendall(text[60:])
        conn.close()

    srv = ScriptedServer(slow)
    try:
        client = MailClient(*srv.address, timeout=5)
        client.session_id, client.user = "0123456789", "bob"
        [m] = client.dump()
        assert (m.sender, m.subject, m.body) == ("alice", "Hi", "body " * 50)
    finally:
        srv.close()


def test_a_request_is_never_resent_once_reply_bytes_arrived():
    def half_then_reset(conn):          # some bytes, then a reset (SO_LINGER 0)
        conn.sendall(b"OK: Em")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    srv = ScriptedServer(half_then_reset)
    try:
        client = MailClient(*srv.address, timeout=5)
        client.session_id, client.user = "0123456789", "alice"
        try:
            client.send("bob", "Once", "only")
        except OSError:
            pass
    finally:
        srv.close()
    assert len(srv.requests) == 1 and len(client.transcript) == 1


def test_a_2017_listing_parses_to_messages():
    srv = ScriptedServer(lambda c: c.sendall(
        b"All emails recived:\nSender: alice\nSubject: Hi\nMessage: two\nlines\nMon Nov 30 10:00:00 2026\n \n"
        b"Sender: carol\nSubject: Yo\nMessage: x\nnot a date\n \n"))
    try:
        client = MailClient(*srv.address, timeout=5)
        client.session_id, client.user = "0123456789", "bob"
        first, second = client.dump()
    finally:
        srv.close()
    assert (first.sender, first.recipient, first.subject, first.body) == ("alice", "bob", "Hi", "two\nlines")
    assert first.sent_at > 0 and second.sent_at == 0.0
    assert (second.sender, second.subject, second.body) == ("carol", "Yo", "x")
