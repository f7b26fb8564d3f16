"""Interop with the real 2017 code, both directions (issue 12, A3-A5).

The doubles (:mod:`mailkit.course.legacy2017`, re-exported by
tests/legacy2017.py) behave as the real 2017 client and server did on the
wire (PROTOCOL.md, last section): the client sends once, reads ONE
``recv(1024)`` and resends after ``KO`` on the same socket; the server keeps
the login connection open for the session, leaves each command's connection
open until the next accept, and crashes on a login line during a session.

* the 2017 client drives every command against mailkit's server(s);
* mailkit's client drives every command against the 2017 server;
* both, through a :class:`~mailkit.NoisyLink` that flips bits at 5%.

No timed assertions: behaviour only ("exactly one copy", "did not crash").
"""

from __future__ import annotations

import collections
import re
import socket
import subprocess
import sys

import pytest

from conftest import USERS
from legacy2017 import Client2017, Server2017, sha1
from mailkit import (
    REPLIES, BitFlipChannel, LoginFailed, MailClient, MailServer, NoisyLink, NoReply,
    RetriesExhausted, ServerError,
)
from mailkit.protocol import make_frame, parse_messages



@pytest.fixture
def old_server():
    with Server2017(USERS, seed=2017) as old:
        yield old
        assert old.crashed is None, f"the 2017 server crashed: {old.crashed!r}"


def inbox(server, user: str) -> list[str]:
    reader = MailClient(*server.address)
    reader.login(user, USERS[user])
    return [m.subject for m in reader.dump()]


# -- the doubles behave as the real 2017 code (PROTOCOL.md, last section) ----------


def _still_open(sock: socket.socket) -> bool:
    """True if the peer has not closed *sock* (nothing to read for 0.3 s)."""
    sock.settimeout(0.3)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True


def test_the_2017_server_keeps_the_login_and_each_command_connection_open(old_server):
    login = socket.create_connection(old_server.address, timeout=5)
    login.sendall(b"alice:wonderland")
    sid = login.recv(1024).decode().partition(":")[2]
    assert re.fullmatch(r"\d{10}", sid) and _still_open(login)
    first = socket.create_connection(old_server.address, timeout=5)
    first.sendall(f"{sid}:count#{sha1(f'{sid}:count')}".encode())
    assert first.recv(1024) == b"Total emails recived: 0"
    assert _still_open(first)                       # open until the next accept()
    logoff = socket.create_connection(old_server.address, timeout=5)
    logoff.sendall(f"{sid}:logoff#{sha1(f'{sid}:logoff')}".encode())
    assert logoff.recv(1024) == b"OK"
    assert not _still_open(first)                   # closed when the next one came
    assert not _still_open(login)                   # the session's connection ends at logoff
    for sock in (login, first, logoff):
        sock.close()


def test_the_2017_server_answers_bare_ko_and_reads_one_recv_1024():
    with Server2017(USERS) as old_server:
        _bare_ko_and_one_recv(old_server)
        assert old_server.crashed is not None and not old_server.running


def _bare_ko_and_one_recv(old_server):
    old = Client2017(*old_server.address, timeout=0.5)
    old.login("alice", "wonderland")

    def one_recv(text: str) -> bytes:
        with socket.create_connection(old_server.address, timeout=5) as sock:
            sock.sendall(text.encode())
            return sock.recv(1024)

    content = f"{old.session_id}:count"
    assert one_recv(f"{content}#{sha1(content + 'x')}") == b"KO"            # bad checksum
    assert one_recv(f"{old.session_id}:nosuch#{sha1(f'{old.session_id}:nosuch')}") == b"KO"
    assert one_recv(f"0123456789:count#{sha1('0123456789:count')}") == b"KO"  # wrong session id
    # The 2017 client resends after KO on the same socket; the 2017 server
    # never reads it (one recv per connection), so the real client hung here.
    with pytest.raises(TimeoutError):
        old.send_frame(f"{content}#{sha1(content + 'x')}".encode())
    assert old.replies[-1] == "KO" and old.sent[-1] == old.sent[-2]
    assert old_server.crashed is None
    # A frame over 1024 bytes is cut, and its first 1024 bytes hold no '#':
    # the server takes them for a login line during a session, and dies.
    try:
        assert old.email("bob", "Long", "x" * 3000) == ""
    except ConnectionError:
        pass
    assert max(old_server.sizes) == 1024 and old_server.mails == []


def test_the_2017_client_resends_once_after_ko_on_the_same_socket():
    import threading
    seen = []
    with socket.create_server(("127.0.0.1", 0)) as srv:
        def serve():
            conn, _ = srv.accept()
            with conn:
                for reply in (b"KO", b"KO"):
                    seen.append(conn.recv(1024))
                    conn.sendall(reply)
                conn.settimeout(0.3)
                try:
                    seen.append(conn.recv(1024))    # b"": it closed after its one resend
                except TimeoutError:
                    seen.append(b"still open")
        thread = threading.Thread(target=serve)
        thread.start()
        old = Client2017(*srv.getsockname()[:2])
        old.session_id = "0123456789"
        assert old.count() == "KO"
        thread.join(5)
    frame = old.frame("count")
    assert seen == [frame, frame, b""] and old.sent == [frame, frame]


# -- the 2017 client against mailkit's server --------------------------------------


def test_2017_client_drives_every_command(server):
    alice, bob = Client2017(*server.address), Client2017(*server.address)
    assert re.fullmatch(r"OK:\d{10}", alice.login("alice", "wonderland"))
    assert bob.login("bob", "wonderland").split(":")[0] == "KO"       # 2017 clients look before ':'
    assert bob.login("bob", "builder").startswith("OK:")
    assert "email:RECIPIENT:SUBJECT:BODY" in alice.help()
    assert alice.email("bob", "Hello", "How are you?") == REPLIES.EMAIL_SENT
    assert alice.email("bob", "Again", "Second mail") == REPLIES.EMAIL_SENT
    assert bob.count() == "OK: 2 messages"
    listing = bob.getmsg("alice")
    assert [m.subject for m in parse_messages(listing)] == ["Hello", "Again"]
    assert "How are you?" in listing                          # readable when printed
    assert bob.delmsg("alice", "Hello") == "OK: 1 message deleted"
    assert [m.body for m in parse_messages(bob.dump())] == ["Second mail"]
    assert bob.logoff() == REPLIES.LOGGED_OFF
    assert bob.count().startswith("ERROR: unknown session id")
    assert alice.email("nobody", "s", "b") == "ERROR: unknown recipient 'nobody'"
    # one connection per request; nothing was answered KO, so nothing was resent
    assert len(alice.sent) == 5 and len(bob.sent) == 8
    assert inbox(server, "bob") == ["Again"]


def test_2017_client_bytes_are_exactly_mailkits_frames(server):
    old = Client2017(*server.address)
    old.login("alice", "wonderland")
    old.email("bob", "Plain subject", "plain body, no specials")
    old.email("bob", "Issue #23 fixed", "see #23")
    assert old.sent[0] == b"alice:wonderland"
    assert old.sent[1] == make_frame(old.session_id, "email", "bob", "Plain subject", "plain body, no specials")
    assert old.sent[2] == make_frame(old.session_id, "email", "bob", "Issue #23 fixed", "see #23")


def test_hash_in_a_2017_subject_and_body_arrives_as_sent(server):
    """The #23 question (docs/protocol.md): mailkit takes the checksum after
    the LAST '#', so a 2017 client's '#' gets through, and '#23' is not
    read as an escape any more (it was: 'Issue # fixed')."""
    old = Client2017(*server.address)
    old.login("alice", "wonderland")
    assert old.email("bob", "Issue #23 fixed", "see #42 and # more") == REPLIES.EMAIL_SENT
    assert old.email("bob", "C# tips", "#3A in a body is plain text") == REPLIES.EMAIL_SENT
    reader = MailClient(*server.address)
    reader.login("bob", "builder")
    got = [(m.subject, m.body) for m in reader.messages_from("alice")]
    assert got == [("Issue #23 fixed", "see #42 and # more"), ("C# tips", "#3A in a body is plain text")]


def test_colon_in_a_2017_body_is_kept(server):
    old = Client2017(*server.address)
    old.login("alice", "wonderland")
    assert old.email("bob", "Times", "meet at 10:30: room 4") == REPLIES.EMAIL_SENT
    reader = MailClient(*server.address)
    reader.login("bob", "builder")
    assert reader.messages_from("alice")[0].body == "meet at 10:30: room 4"


def _corrupted(frame: bytes) -> bytes:
    """*frame* with one bit of its body flipped: the checksum no longer matches."""
    return frame[:30] + bytes([frame[30] ^ 0x01]) + frame[31:]


def test_a_client_that_closes_after_ko_is_unaffected(server):
    old = Client2017(*server.address)
    old.login("alice", "wonderland")
    good = old.frame("email", "bob", "Once", "body")
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(_corrupted(good))
        assert sock.recv(1024) == b"KO"
    assert old.send_frame(good) == REPLIES.EMAIL_SENT
    assert inbox(server, "bob") == ["Once"]


def test_after_ko_the_server_takes_a_resend_on_the_same_socket(server):
    """The 2017 client's one retry: the same frame again, on the same socket."""
    old = Client2017(*server.address)
    old.login("alice", "wonderland")
    good = old.frame("email", "bob", "Resent", "body")
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(_corrupted(good))
        assert sock.recv(1024) == b"KO"
        sock.sendall(good)
        assert sock.recv(1024) == REPLIES.EMAIL_SENT.encode()
    assert inbox(server, "bob") == ["Resent"]


def test_2017_client_against_python_m_mailkit_serve(serve_process):
    served = serve_process("--quiet")
    old = Client2017(*served.address)
    assert old.login("alice", "wonderland").startswith("OK:")
    assert old.email("bob", "Hello", "from 2017") == REPLIES.EMAIL_SENT
    assert old.count() == "OK: 0 messages"
    assert old.logoff() == REPLIES.LOGGED_OFF


# -- mailkit's client against the 2017 server --------------------------------------


def test_mailkit_client_drives_every_command_of_a_2017_server(old_server):
    alice, bob = MailClient(*old_server.address), MailClient(*old_server.address)
    sid = alice.login("alice", "wonderland")
    assert re.fullmatch(r"\d{10}", sid) and old_server.user == "alice"
    assert alice.send("bob", "Hello", "from mailkit") == "OK: Email Sent"
    assert alice.send("alice", "Note", "to self") == "OK: Email Sent"
    assert alice.send("alice", "Note", "again") == "OK: Email Sent"
    assert old_server.received[-3] == make_frame(sid, "email", "bob", "Hello", "from mailkit")
    assert alice.count() == 2                                   # "Total emails recived: 2"
    [note, again] = alice.messages_from("alice")                # "Emails From:alice:\n..."
    assert (note.sender, note.recipient, note.subject, note.body) == ("alice", "alice", "Note", "to self")
    assert again.body == "again" and note.sent_at > 0
    assert [(m.sender, m.subject) for m in alice.dump()] == [("alice", "Note"), ("alice", "Note")]
    assert alice.delete("alice", "Note") == 2                   # "Email deleated. ..." twice
    with pytest.raises(ServerError, match="KO. Email not found."):
        alice.delete("alice", "Note")
    with pytest.raises(ServerError, match="Recipient Name Not Recognized: nobody"):
        alice.send("nobody", "s", "b")
    with pytest.raises(ServerError, match="Sender Name Not Recognized: nobody"):
        alice.messages_from("nobody")
    assert "getmsg:SENDER" in alice.help()
    assert alice.logoff() == "OK"
    assert old_server.user is None
    # one session at a time: bob logs in only now
    bob.login("bob", "builder")
    [hello] = bob.messages_from("alice")
    assert (hello.subject, hello.body, hello.recipient) == ("Hello", "from mailkit", "bob")
    assert bob.count() == 1 and bob.logoff() == "OK"
    # every request went out once: no resends, so no second copies
    assert all(e.attempt == 1 for e in alice.transcript + bob.transcript)
    assert len(old_server.received) == len(alice.transcript) + len(bob.transcript)
    assert [(m.recipient, m.subject) for m in old_server.mails] == [("bob", "Hello")]


def test_a_2017_servers_bare_ko_on_login_is_a_failed_login_not_a_retry(old_server):
    client = MailClient(*old_server.address)
    with pytest.raises(LoginFailed, match="KO"):
        client.login("alice", "wrong")
    assert len(client.transcript) == 1 and len(old_server.received) == 1


def test_a_wrong_session_id_is_a_bare_ko_from_a_2017_server_so_the_client_gives_up(old_server):
    """Documented in mailkit/client.py: four KO, then RetriesExhausted."""
    client = MailClient(*old_server.address)
    client.login("alice", "wonderland")
    client.session_id = "0000000000"
    with pytest.raises(RetriesExhausted, match=r"\(KO, KO, KO, KO\)"):
        client.send("bob", "Lost", "wrong session")
    assert old_server.mails == []


def test_a_hash_in_the_body_breaks_the_2017_parser_and_nothing_is_delivered(old_server):
    client = MailClient(*old_server.address)
    client.login("alice", "wonderland")
    with pytest.raises(RetriesExhausted, match=r"\(KO, KO, KO, KO\)"):
        client.send("bob", "Room", "Meet in room #5")
    assert old_server.mails == []


def test_a_flipped_bit_is_resent_on_a_new_connection_and_delivered_once(old_server):
    client = MailClient(*old_server.address, channel=BitFlipChannel().script((40, 1), None))
    client.login("alice", "wonderland")
    assert client.send("bob", "Hello", "twice flipped? once") == "OK: Email Sent"
    assert [e.outcome for e in client.transcript[1:]] == ["KO", "OK"]
    assert [m.subject for m in old_server.mails] == ["Hello"]


def test_no_reply_is_not_resent_for_an_email():
    """A server that takes a request and never answers: the email may have
    been carried out, so it is not sent again (a 2017 server busy with
    someone else holds new connections in its backlog just like this)."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        client = MailClient(*silent.getsockname()[:2], timeout=0.3)
        client.session_id, client.user = "0123456789", "alice"
        with pytest.raises(NoReply, match="not sent again"):
            client.send("bob", "Once", "only")
        with pytest.raises(RetriesExhausted) as gave_up:   # count changes nothing: it is resent
            client.count()
        assert type(gave_up.value) is RetriesExhausted
    assert [e.command for e in client.transcript] == ["email"] + ["count"] * 4


def test_a_login_during_a_2017_session_crashes_the_2017_server_and_mailkit_never_sends_one():
    """The 2017 server dies on a login line during a session; mailkit's
    client sends a login once (never again on a slow reply), so only a
    second user can bring that about, as in 2017."""
    with Server2017(USERS) as old:
        MailClient(*old.address).login("alice", "wonderland")
        assert old.crashed is None
        old_bob = Client2017(*old.address)
        assert old_bob.login("bob", "builder") == ""            # the server died reading it
        assert old.crashed is not None and not old.running


def test_the_cli_client_talks_to_a_2017_server(old_server):
    """``python -m mailkit client`` uses MailClient, so it works against a
    2017 server too (which never closes a connection)."""
    host, port = old_server.address
    session = "\n".join([
        "alice", "wrong",                 # a failed login (bare KO), then a good one
        "alice", "wonderland",
        "2", "bob", "Menu test", "one line", ".",
        "4", "1", "7",
    ]) + "\n"
    result = subprocess.run([sys.executable, "-m", "mailkit", "client", "--host", host, "--port", str(port)],
                            input=session, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "login failed: KO" in result.stdout
    assert re.search(r"logged in as alice \(session \d{10}\)", result.stdout)
    for reply in ("OK: Email Sent", "Total emails recived: 0", "Commands:", "> OK\n"):
        assert reply in result.stdout
    assert [(m.recipient, m.subject, m.body) for m in old_server.mails] == [("bob", "Menu test", "one line")]


# -- through NoisyLink at 5% ----------------------------------------------------------


MAILS = 60


def _tally(meant: list[str], delivered: list[str]) -> dict:
    counts = collections.Counter(delivered)
    return {"sent": len(meant), "delivered once": sum(counts[s] == 1 for s in meant),
            "duplicated": sum(counts[s] > 1 for s in meant), "lost": sum(counts[s] == 0 for s in meant)}


def _2017_client_through_noise(server, seed: int = 5) -> tuple[dict, dict]:
    with NoisyLink(server.address, rate=0.05, seed=seed, idle_timeout=0.3) as link:
        old = Client2017(*link.address, timeout=10)
        assert old.login("alice", "wonderland").startswith("OK:")
        replies = {}
        for i in range(MAILS):
            try:
                replies[f"noisy {i}"] = old.email("bob", f"noisy {i}", f"body {i}")
            except OSError as exc:
                replies[f"noisy {i}"] = type(exc).__name__
        ko = sum(bool(e.request_flips) for e in link.events)
    return replies, {"KO": ko, **_tally(list(replies), inbox(server, "bob"))}


def test_2017_client_through_5_percent_noise_never_duplicates(server):
    replies, tally = _2017_client_through_noise(server)
    delivered = collections.Counter(inbox(server, "bob"))
    assert tally["KO"] >= 1, "the link should have corrupted some frames"
    assert tally["duplicated"] == 0
    # what the 2017 client was told was sent is there exactly once
    assert all(delivered[s] == 1 for s, r in replies.items() if r == REPLIES.EMAIL_SENT)


def test_2017_client_through_5_percent_noise_delivers_every_mail_once(server):
    """The link corrupts the first copy only; the same-socket resend is passed
    on as sent, so every mail must arrive exactly once."""
    _, tally = _2017_client_through_noise(server)
    assert tally["KO"] >= 1
    assert (tally["delivered once"], tally["duplicated"], tally["lost"]) == (MAILS, 0, 0)


def test_mailkit_client_with_5_percent_flips_against_a_2017_server(old_server):
    """The bits flip on mailkit's side (its BitFlipChannel): every mail is
    delivered exactly once, KO'd copies resent on new connections."""
    n = 24                   # each reply from a 2017 server takes QUIET_S (0.25 s)
    client = MailClient(*old_server.address, channel=BitFlipChannel(rate=0.05, seed=5))
    client.login("alice", "wonderland")
    for i in range(n):
        assert client.send("bob", f"noisy {i}", f"body {i}") == "OK: Email Sent"
    assert any(e.outcome == "KO" for e in client.transcript)
    tally = _tally([f"noisy {i}" for i in range(n)], [m.subject for m in old_server.mails])
    assert (tally["delivered once"], tally["duplicated"], tally["lost"]) == (n, 0, 0)


def test_mailkit_client_through_a_5_percent_noisy_link_to_a_2017_server(old_server):
    with NoisyLink(old_server.address, rate=0.05, seed=5, idle_timeout=0.3) as link:
        client = MailClient(*link.address, timeout=2)
        client.login("alice", "wonderland")
        for i in range(20):
            assert client.send("bob", f"noisy {i}", f"body {i}") == "OK: Email Sent"
        assert any(e.request_flips for e in link.events)
    tally = _tally([f"noisy {i}" for i in range(20)], [m.subject for m in old_server.mails])
    assert (tally["delivered once"], tally["duplicated"], tally["lost"]) == (20, 0, 0)


class _LinkThatStopsWaiting(NoisyLink):
    """A NoisyLink that passes the reply on after at most 0.5 s instead of
    waiting for the server's close (which a 2017 server never does)."""

    REQUEST_DEADLINE_S = 0.5


def test_mailkit_client_through_a_5_percent_noisy_link_that_stops_waiting_for_the_close(old_server):
    n = 12
    with _LinkThatStopsWaiting(old_server.address, rate=0.05, seed=5, idle_timeout=0.3) as link:
        client = MailClient(*link.address)
        client.login("alice", "wonderland")
        for i in range(n):
            assert client.send("bob", f"noisy {i}", f"body {i}") == "OK: Email Sent"
        assert any(e.request_flips for e in link.events)
        assert [e.outcome for e in client.transcript].count("KO") >= 1
    tally = _tally([f"noisy {i}" for i in range(n)], [m.subject for m in old_server.mails])
    assert (tally["delivered once"], tally["duplicated"], tally["lost"]) == (n, 0, 0)
