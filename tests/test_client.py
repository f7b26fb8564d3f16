"""MailClient over real sockets: commands, retries, transcripts, errors."""

from __future__ import annotations

import socket

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
