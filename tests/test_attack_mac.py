"""Notebook 10's attacker and the HMAC teaching framing (mailkit.attack, mailkit.mac)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from mailkit import MailClient, MailServer, RetriesExhausted, ServerError, checksum, make_frame
from mailkit.attack import RewritingLink
from mailkit.mac import NEEDS_TAG, MacClient, MacResponder, seal, session_key, split_tagged, tag, verify
from mailkit.store import MailStore

USERS = {"alice": "wonderland", "bob": "builder"}


def test_tag_is_rfc_2104_hmac_sha256():
    # RFC 4231, test case 2 (HMAC-SHA-256)
    assert tag(b"Jefe", b"what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    key = session_key("wonderland", "0123456789")
    assert key == hmac.new(b"wonderland", b"mailkit-mac:0123456789", hashlib.sha256).digest()


def test_seal_split_verify():
    key = session_key("wonderland", "0123456789")
    frame = make_frame("0123456789", "email", "bob", "Lunch", "At noon")
    sealed = seal(frame, key)
    content, claimed = split_tagged(sealed)
    assert content == frame[:-41] and len(claimed) == 64
    assert verify(key, sealed)
    assert not verify(session_key("wonderland", "0123456780"), sealed)
    assert not verify(key, sealed.replace(b"noon", b"five"))
    assert not verify(key, frame)                      # a 2017 frame carries no tag
    assert split_tagged(frame) is None


def test_the_attacker_rewrites_a_2017_mail_and_the_server_accepts_it():
    with MailServer(USERS) as server, RewritingLink(server.address, "noon", "five") as link:
        alice = MailClient(*link.address)
        alice.login("alice", "wonderland")
        assert alice.send("bob", "Lunch", "At noon") == "OK: Email Sent"
        bob = MailClient(*server.address)
        bob.login("bob", "builder")
        assert [m.body for m in bob.dump()] == ["At five"]
        (before, after), = link.rewritten
        assert after.endswith(b"#" + checksum(after[:-41]).encode())      # a valid 2017 frame
        assert link.logins()[0].password == "wonderland"


def test_hmac_stops_the_rewrite_until_the_attacker_learns_the_key():
    with MailServer(USERS, responder=MacResponder(MailStore(":memory:"))) as server, \
            RewritingLink(server.address, "noon", "five") as link:
        alice = MacClient(*link.address)
        session = alice.login("alice", "wonderland")
        with pytest.raises(RetriesExhausted) as caught:
            alice.send("bob", "Lunch", "At noon")
        assert [e.outcome for e in caught.value.attempts] == ["KO"] * 4
        bob = MacClient(*server.address)
        bob.login("bob", "builder")
        assert bob.dump() == []                         # neither the mail nor the forgery
        # The login crossed in clear: the attacker computes the key.
        assert link.learn_key() == session_key("wonderland", session)
        assert alice.send("bob", "Lunch", "At noon") == "OK: Email Sent"
        assert [m.body for m in bob.dump()] == ["At five"]
        # A frame with no tag is refused by the teaching server (a plain client).
        plain = MailClient(*server.address)
        plain.login("bob", "builder")
        with pytest.raises(ServerError) as refused:
            plain.count()
        assert refused.value.reply == NEEDS_TAG


def test_a_mac_server_answers_a_forged_tag_with_ko_and_stores_nothing():
    store = MailStore(":memory:")
    responder = MacResponder(store)
    for name, pw in USERS.items():
        store.add_user(name, pw)
    what, reply = responder.respond(b"alice:wonderland", ("10.0.0.1", 1))
    session = reply[3:13]
    frame = make_frame(session, "email", "bob", "Hi", "x")
    assert responder.respond(seal(frame, session_key("wrong", session)), ("10.0.0.1", 1))[1] == "KO"
    assert responder.respond(seal(frame, b"k" * 32), ("10.0.0.1", 1))[1] == "KO"
    done = responder.respond(seal(frame, session_key("wonderland", session)), ("10.0.0.1", 1))[1]
    assert done.result(timeout=10) == "OK: Email Sent"
