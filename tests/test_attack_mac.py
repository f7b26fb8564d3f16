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


def test_a_mac_does_not_stop_a_replay():
    """Without the key, the link sends an accepted tagged frame again, and
    the server stores the mail twice: a MAC proves a frame unchanged, not new."""
    with MailServer(USERS, responder=MacResponder(MailStore(":memory:"))) as server, \
            RewritingLink(server.address, "noon", "five") as link:
        alice = MacClient(*link.address)
        alice.login("alice", "wonderland")
        assert alice.send("bob", "Pay", "Please pay Trudy 10 pounds") == "OK: Email Sent"
        assert link.key is None and link.rewritten == []
        assert link.replay() == b"OK: Email Sent"
        bob = MacClient(*server.address)
        bob.login("bob", "builder")
        assert [m.body for m in bob.dump()] == ["Please pay Trudy 10 pounds"] * 2
    with MailServer(USERS) as server, RewritingLink(server.address, "noon", "five") as link:
        with pytest.raises(LookupError):
            link.replay()                               # nothing accepted yet


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


# -- notebook 10's helpers (mailkit.course.security) ------------------------------------


def test_hmac_by_hand_is_rfc_2104():
    from mailkit.course.security import hmac_by_hand

    for key, data in ((b"Jefe", b"what do ya want for nothing?"), (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key"),
                      (b"", b""), (b"k" * 64, b"exactly a block")):
        assert hmac_by_hand(key, data) == hmac.new(key, data, hashlib.sha256).hexdigest()


def test_changed_bytes_marks_exactly_what_changed():
    from mailkit.course.security import ChangedBytes

    before = make_frame("0123456789", "email", "bob", "Lunch", "Meet me at noon")
    after = before.replace(b"noon", b"five")
    view = ChangedBytes(before, after)
    assert view.changed == {i for i in range(len(after)) if before[i] != after[i]}
    assert len(view.changed) == 4 and view.text.endswith(f"4 of {len(after)} bytes changed")
    assert view.text.count("^^") == 4 and view._repr_html_().count("<span") == 8   # hex and text of each


def test_path_view_and_form_say_what_crossed():
    from mailkit.course.security import PathForm, PathView, login_result, tls_ladder
    from mailkit.attack import Tap

    form = PathForm(USERS)
    try:
        clear = form.run("alice", "wonderland", tls=False)
        assert clear.leaked and clear.text.splitlines()[1].endswith("in clear: alice:wonderland")
        secret = form.run("alice", "wrong password", tls=True)
        assert not secret.leaked and "the server said: KO" in secret.text
        assert "TLS records: handshake" in secret.text and "wrong password" not in secret.text
        form.password.value = "wonderland"
        form.send.click()
        assert "the password crossed in clear" in form.result.value and form.last.leaked
    finally:
        form.widget.close()
    with MailServer(USERS) as server, Tap(server.address) as tap:
        assert login_result(tap.address) == "logged in"
        assert login_result(tap.address, password="nope") == "the server said: KO: wrong username or password"
    assert PathView(tap).text.count("connection") == 4
    assert "[alice:wonderland]" in tls_ladder().text


def test_quiz_10_accepts_its_answers():
    from mailkit.course import quiz
    import mailkit.course.security  # noqa: F401  (registers quiz 10)

    assert repr(quiz("10", "b", "c", "a")).endswith("3 of 3 right")
    assert "✗ Question 1" in repr(quiz("10", "a", "c", "a"))


def test_stop_security_stops_servers_links_and_taps():
    from mailkit.attack import Tap
    from mailkit.course.security import stop_security

    server = MailServer(USERS).start()
    link = RewritingLink(server.address, "a", "b").start()
    tap = Tap(server.address).start()
    assert stop_security() == 3
    assert not (server.running or link.running or tap.running)
