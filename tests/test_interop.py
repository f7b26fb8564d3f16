"""Byte-for-byte interoperation with 2017-style programs (tests/legacy2017.py).

A 2017 client drives every command against ``python -m mailkit serve``;
mailkit's client talks to a 2017 server.
"""

from __future__ import annotations

import re

import pytest

from legacy2017 import Client2017, Server2017, sha1
from conftest import USERS
from mailkit import LoginFailed, MailClient, REPLIES
from mailkit.protocol import make_frame, parse_messages


@pytest.fixture
def served(serve_process):
    return serve_process("--quiet")


def test_2017_client_drives_every_command(served):
    alice, bob = Client2017(*served.address), Client2017(*served.address)
    assert re.fullmatch(r"OK:\d{10}", alice.login("alice", "wonderland"))
    assert bob.login("bob", "wonderland").split(":")[0] == "KO"       # 2017 clients look before ':'
    assert bob.login("bob", "builder").startswith("OK:")
    assert "email:RECIPIENT:SUBJECT:BODY" in alice.command("help")
    assert alice.command("email", "bob", "Hello", "How are you?") == REPLIES.EMAIL_SENT
    assert alice.command("email", "bob", "Again", "Second mail") == REPLIES.EMAIL_SENT
    assert bob.command("count") == "OK: 2 messages"
    listing = bob.command("getmsg", "alice")
    assert [m.subject for m in parse_messages(listing)] == ["Hello", "Again"]
    assert "How are you?" in listing                          # readable when printed
    assert bob.command("delmsg", "alice", "Hello") == "OK: 1 message deleted"
    assert [m.body for m in parse_messages(bob.command("dump"))] == ["Second mail"]
    assert bob.command("logoff") == REPLIES.LOGGED_OFF
    assert bob.command("count").startswith("ERROR: unknown session id")
    assert alice.command("email", "nobody", "s", "b") == "ERROR: unknown recipient 'nobody'"


def test_2017_client_bytes_are_exactly_mailkits_frames(served):
    """Plain text travels byte-identical: what the 2017 client sends is what
    mailkit's own client would send."""
    old = Client2017(*served.address)
    old.login("alice", "wonderland")
    old.command("email", "bob", "Plain subject", "plain body, no specials")
    assert old.sent[0] == b"alice:wonderland"
    assert old.sent[1] == make_frame(old.session_id, "email", "bob", "Plain subject", "plain body, no specials")


def test_hash_in_a_2017_body_now_works_because_the_checksum_follows_the_last_hash(served):
    old = Client2017(*served.address)
    old.login("alice", "wonderland")
    assert old.command("email", "bob", "Issue #42", "see #42 and # more") == REPLIES.EMAIL_SENT
    reader = MailClient(*served.address)
    reader.login("bob", "builder")
    [message] = reader.messages_from("alice")
    assert (message.subject, message.body) == ("Issue #42", "see #42 and # more")


def test_colon_in_a_2017_body_is_kept(served):
    old = Client2017(*served.address)
    old.login("alice", "wonderland")
    assert old.command("email", "bob", "Times", "meet at 10:30: room 4") == REPLIES.EMAIL_SENT
    reader = MailClient(*served.address)
    reader.login("bob", "builder")
    assert reader.messages_from("alice")[0].body == "meet at 10:30: room 4"


def test_a_corrupted_2017_frame_gets_ko_and_its_retry_succeeds(served):
    old = Client2017(*served.address)
    old.login("alice", "wonderland")
    content = f"{old.session_id}:count"
    bad = f"{content}#{sha1(content + 'x')}"
    assert old._exchange(bad) == "KO"
    assert old.command("count") == "OK: 0 messages"


# -- mailkit's client against a 2017 server ---------------------------------------


def test_mailkit_client_talks_to_a_2017_server():
    with Server2017(USERS) as old:
        client = MailClient(*old.address)
        sid = client.login("alice", "wonderland")
        assert re.fullmatch(r"\d{10}", sid)
        assert client.send("bob", "Hello", "from mailkit") == "OK: Email Sent"
        assert old.received[-1] == make_frame(sid, "email", "bob", "Hello", "from mailkit")
        assert "email" in client.help()
        bob = MailClient(*old.address)
        bob.login("bob", "builder")
        assert bob.count() == 1                                   # "1": a bare number
        assert bob.command("getmsg", "alice").text == "Hello: from mailkit"
        assert bob.logoff() == "OK"


def test_a_2017_servers_bare_ko_on_login_is_a_failed_login_not_a_retry():
    with Server2017(USERS) as old:
        client = MailClient(*old.address)
        with pytest.raises(LoginFailed, match="KO"):
            client.login("alice", "wrong")
        assert len(client.transcript) == 1
