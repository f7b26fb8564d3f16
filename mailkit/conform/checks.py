"""The checks a server must pass, each named by the section it tests.

Sections are headings of docs/protocol.md (``"Handshake"``) or of
PROTOCOL.md (``"PROTOCOL.md: Flaws of 2017"``).  Required checks are what
the docs say a server does; the others (``required=False``, run with
``--strict``) are what a server SHOULD do: be liberal in what it accepts
(RFC 1122, 1.2.2) and use mailkit's exact reply texts.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time

from .. import protocol as P
from .context import SESSION_RE, Context, check
from .wire import CLOSE_WAIT_S, QUIET_S, NotApplicable

# How many logins the session-id check looks at, and how close two ids may be.
ID_SAMPLES = 4             # 3 differences: enough to see a counter or a clock
ID_MIN_DISTANCE = 10_000     # two random ten-digit ids are this close with chance 2e-6
LARGE_BODY = 100_000         # PROTOCOL.md: "a 100 KB body arrives whole"
# While one client is silent, another's request is answered; a server that
# finished with the quiet one first AND took this long serves one at a time
# (mailkit's idle timeout is 2 s; a server that waits for ever never answers).
BESIDE_SILENT_S = 1.5


def _not_ko_not_ok(ctx: Context, answer, what: str, section: str) -> None:
    if answer.kind == "none":
        ctx.fail(f"{what}: no reply ({answer.ending})", "a reply that names the error", section)
    if answer.text.strip() == "KO":
        ctx.fail(f"{what} got exactly KO", "a reply that names the error, not exactly KO "
                 "(KO means 'damaged, send again'; sending this again will not help)", section)
    if answer.kind == "OK":
        ctx.fail(f"{what} got {answer.text[:80]!r}", "an error reply (ERROR: ...)", section)


# -- the handshake ------------------------------------------------------------------


@check("login/ok", "Handshake", noise=True)
def login_ok(ctx: Context) -> None:
    """The right password, sent as a 2017 client does (no terminator, no
    half-close), gets ``OK:`` and a ten-digit session id."""
    ctx.login(ctx.sender, note=f"log in as {ctx.sender}, unterminated, no half-close")


@check("login/half-closed", "When is a request complete?")
def login_half_closed(ctx: Context) -> None:
    """A login followed by a half-close (as mailkit's client sends it) is answered."""
    ctx.login(ctx.sender, note=f"log in as {ctx.sender}, then half-close", half_close=True)


@check("login/bad-password", "Handshake")
def login_bad_password(ctx: Context) -> None:
    """A wrong password gets ``KO`` (or ``KO:`` and a reason)."""
    user = ctx.sender
    answer = ctx.wire.ask(f"{user}:{ctx.target.users[user]}x{ctx.token()}".encode(),
                          f"log in as {user} with a wrong password", retry=False)
    if answer.text.split(":")[0].strip() != "KO":
        ctx.fail(f"got {answer.text[:80]!r} ({answer.ending})",
                 "KO, or KO: and a reason (a 2017 client looks at the part before ':')")


@check("login/unknown-user", "Handshake")
def login_unknown_user(ctx: Context) -> None:
    """A user that does not exist gets ``KO`` (or ``KO:`` and a reason)."""
    answer = ctx.wire.ask(f"nobody{ctx.token()}:pw".encode(), "log in as a user that does not exist",
                          retry=False)
    if answer.text.split(":")[0].strip() != "KO":
        ctx.fail(f"got {answer.text[:80]!r} ({answer.ending})", "KO, or KO: and a reason")


@check("session/ids-unpredictable", "Handshake")
def session_ids(ctx: Context) -> None:
    """Session ids are distinct and not guessable from earlier ones: four
    logins give four ids, no two within 10,000 of each other, not counting up."""
    ids = [int(ctx.login(ctx.sender, note=f"log in as {ctx.sender} (id {i + 1} of {ID_SAMPLES})"))
           for i in range(ID_SAMPLES)]
    diffs = [b - a for a, b in zip(ids, ids[1:])]
    if len(set(ids)) < len(ids) or any(abs(d) < ID_MIN_DISTANCE for d in diffs) or len(set(diffs)) == 1:
        ctx.fail(f"session ids {ids} (differences {diffs})",
                 f"ids from a secure random source (Python's secrets): no two within "
                 f"{ID_MIN_DISTANCE:,}, no counter, no clock")


@check("session/logoff", "Frames", noise=True)
def session_logoff(ctx: Context) -> None:
    """``logoff`` gets a reply starting with ``OK``; the session id is then
    refused with a named error (not ``KO``)."""
    sid = ctx.login(ctx.sender, note=f"log in as {ctx.sender} (a session to end)")
    answer = ctx.wire.ask(P.make_frame(sid, "logoff"), "logoff", half_close=True)
    if not answer.text.startswith("OK"):
        ctx.fail(f"logoff got {answer.text[:80]!r} ({answer.ending})", "a reply starting with OK")
    after = ctx.wire.ask(P.make_frame(sid, "count"), "count with the ended session", half_close=True)
    _not_ko_not_ok(ctx, after, "count after logoff", "Replies")


# -- frames and replies ---------------------------------------------------------------


@check("frame/count", "Frames", noise=True)
def frame_count(ctx: Context) -> None:
    """``count`` gets a success reply."""
    ctx.expect_ok(ctx.command(ctx.recipient, "count"), "count")


@check("frame/help", "Frames", noise=True)
def frame_help(ctx: Context) -> None:
    """``help`` gets a success reply that names every command."""
    answer = ctx.expect_ok(ctx.command(ctx.sender, "help"), "help")
    missing = [name for name in P.COMMANDS if name not in answer.text]
    if missing:
        ctx.fail(f"help does not name {missing}", f"all of {list(P.COMMANDS)}")


@check("frame/checksum-mismatch", "Replies", noise=True)
def frame_checksum_mismatch(ctx: Context) -> None:
    """A frame whose content does not match its checksum gets exactly ``KO``,
    and nothing happens: the mail it carried is not delivered."""
    token = ctx.token()
    good = P.make_frame(ctx.session(ctx.sender), "email", ctx.recipient, f"damaged {token}", "body")
    damaged = good.replace(b"damaged", b"dAmaged", 1)           # one bit: 0x61 -> 0x41
    answer = ctx.wire.ask(damaged, "an email frame with one flipped bit", half_close=True, retry=False)
    if answer.text != "KO":
        ctx.fail(f"got {answer.text[:80]!r} ({answer.ending})", "exactly KO, and nothing else")
    if token in ctx.inbox_from_sender("did the damaged mail arrive? (it must not)"):
        ctx.fail("the damaged mail was delivered", "nothing happens after KO")


@check("frame/bad-session-id", "Replies", noise=True)
def frame_bad_session(ctx: Context) -> None:
    """A well-formed frame with a session id nobody was given gets a named
    error, not ``KO`` (sending it again will not help)."""
    ctx.session(ctx.sender)
    sid = "1000000007" if ctx.sessions[ctx.sender] != "1000000007" else "1000000009"
    answer = ctx.wire.ask(P.make_frame(sid, "count"), "count with a session id nobody was given",
                          half_close=True)
    _not_ko_not_ok(ctx, answer, "a frame with a wrong session id", "Replies")


@check("frame/unknown-command", "Replies", noise=True)
def frame_unknown_command(ctx: Context) -> None:
    """A well-formed frame with an unknown command gets a named error, not ``KO``."""
    content = f"{ctx.session(ctx.sender)}:fly".encode()
    answer = ctx.wire.ask(content + b"#" + P.checksum(content).encode(), "the unknown command 'fly'",
                          half_close=True)
    _not_ko_not_ok(ctx, answer, "an unknown command", "Replies")


# -- email and its fields ---------------------------------------------------------------


def _delivered(ctx: Context, subject: str, body: str, *, pieces: int = 1, what: str = "") -> None:
    ctx.email(subject, body, pieces=pieces, note=what or None)
    listing = ctx.inbox_from_sender()
    for text, name in ((subject, "subject"), (body, "body")):
        if text not in listing:
            ctx.fail(f"the {name} {text[:60]!r} is not in {ctx.recipient}'s messages from "
                     f"{ctx.sender} (got {listing[:200]!r})", f"the {name} exactly as sent")


@check("email/deliver", "Frames", noise=True)
def email_deliver(ctx: Context) -> None:
    """An ``email`` gets a reply starting with ``OK``, and the recipient's
    ``getmsg`` lists its subject and body."""
    token = ctx.token()
    _delivered(ctx, f"Hello {token}", f"How are you? {token}")


@check("email/unknown-recipient", "Replies", noise=True)
def email_unknown_recipient(ctx: Context) -> None:
    """Mail to a user that does not exist gets a named error, not ``KO``."""
    answer = ctx.command(ctx.sender, "email", f"nobody{ctx.token()}", "s", "b")
    _not_ko_not_ok(ctx, answer, "mail to an unknown recipient", "Replies")


@check("email/hash-in-subject", "#, : and % inside fields", noise=True)
def email_hash_subject(ctx: Context) -> None:
    """A ``#`` in a subject travels as it is; the checksum follows the LAST ``#``."""
    token = ctx.token()
    _delivered(ctx, f"C# tips {token}", f"body {token}")


@check("email/hash-in-body", "#, : and % inside fields", noise=True)
def email_hash_body(ctx: Context) -> None:
    """A ``#`` in a body (``see issue #42``) needs no escape."""
    token = ctx.token()
    _delivered(ctx, f"issue {token}", f"see issue #42 {token}")


@check("email/colon-in-subject", "#, : and % inside fields", noise=True)
def email_colon_subject(ctx: Context) -> None:
    """A ``:`` in a subject travels as ``#3A`` (``Re: lunch`` as ``Re#3A lunch``)
    and comes back as ``:``."""
    token = ctx.token()
    _delivered(ctx, f"Re: lunch {token}", f"body {token}")


@check("email/colon-in-body", "#, : and % inside fields", noise=True)
def email_colon_body(ctx: Context) -> None:
    """The last field keeps every ``:`` (``at 12:30: bring 100%``)."""
    token = ctx.token()
    _delivered(ctx, f"times {token}", f"at 12:30: bring 100% {token}")


@check("email/utf8", "Transport", noise=True)
def email_utf8(ctx: Context) -> None:
    """Text is UTF-8: ``Grüße ✓`` comes back as sent."""
    token = ctx.token()
    _delivered(ctx, f"Grüße ✓ {token}", f"héllo wörld ✓ {token}")


@check("delmsg/deletes", "Frames", noise=True)
def delmsg_deletes(ctx: Context) -> None:
    """``delmsg`` gets a success reply and the message is gone."""
    token = ctx.token()
    ctx.email(f"gone {token}", "body")
    ctx.expect_ok(ctx.command(ctx.recipient, "delmsg", ctx.sender, f"gone {token}"), "delmsg")
    if token in ctx.inbox_from_sender("is the deleted mail gone?"):
        ctx.fail("the deleted mail is still listed", "it is gone")


@check("delmsg/not-there", "Replies", noise=True)
def delmsg_not_there(ctx: Context) -> None:
    """Deleting a message that is not there gets a named error, not ``KO``."""
    answer = ctx.command(ctx.recipient, "delmsg", ctx.sender, f"never sent {ctx.token()}")
    _not_ko_not_ok(ctx, answer, "delmsg of a message that is not there", "Replies")


# -- a byte stream ------------------------------------------------------------------------


@check("stream/request-in-pieces", "When is a request complete?", noise=True)
def stream_pieces(ctx: Context) -> None:
    """A frame that arrives in four pieces, 30 ms apart, is read whole (TCP
    is a byte stream: one ``recv`` is not one message)."""
    token = ctx.token()
    _delivered(ctx, f"pieces {token}", f"sent in four pieces {token}", pieces=4,
               what="an email frame in 4 pieces, 30 ms apart")


@check("stream/large-frame", "When is a request complete?", noise=True)
def stream_large(ctx: Context) -> None:
    """A 100 KB body arrives whole (one ``recv(1024)`` is not the frame)."""
    token = ctx.token()
    body = (token + " ") * (LARGE_BODY // (len(token) + 1))
    ctx.email(f"large {token}", body, note=f"an email with a {len(body):,}-byte body")
    listing = ctx.inbox_from_sender()
    if body not in listing:
        ctx.fail(f"the {len(body):,}-byte body is not in the listing "
                 f"(sha1 of the body {hashlib.sha1(body.encode()).hexdigest()[:12]}; "
                 f"the listing has {listing.count(token)} copies of the token)",
                 "the whole body, byte for byte")


# -- replies on the wire -----------------------------------------------------------------


@check("reply/closes-after-reply", "Transport")
def reply_closes(ctx: Context) -> None:
    """After its reply the server closes the connection ("reads the reply
    until the server closes"): a client that waits for the close must not wait for ever."""
    frame = P.make_frame(ctx.session(ctx.recipient), "count")
    with ctx.wire.open("count, half-closed; then wait for the close") as conn:
        answer = conn.send(frame, half_close=True).read(until_close=CLOSE_WAIT_S)
    if answer.ending != "closed":
        ctx.fail(f"got {answer.text[:60]!r}, then the connection stayed open "
                 f"{CLOSE_WAIT_S:g} s more ({answer.ending})", "the server closes after its reply")


@check("reply/one-piece", "mailkit's client, against any server (a 2017 one too)")
def reply_one_piece(ctx: Context) -> None:
    """A reply does not pause for 0.25 s or more before it ends: a client
    that reads until bytes came and then nothing for 0.25 s (mailkit's, with
    a 2017 server) would take the first piece for the whole reply."""
    frame = P.make_frame(ctx.session(ctx.sender), "help")
    with ctx.wire.open("help; read every piece of the reply until the close") as conn:
        answer = conn.send(frame, half_close=True).read(quiet=1.0)
    slow = [g for g in answer.gaps if g >= QUIET_S]
    if slow:
        ctx.fail(f"the reply came in {len(answer.gaps) + 1} pieces, with a pause of "
                 f"{max(slow):.2f} s", f"no pause of {QUIET_S} s or more inside a reply "
                 "(send it in one go, then close)")


# -- a resend after KO -------------------------------------------------------------------


def _damaged_checksum(frame: bytes) -> bytes:
    """*frame* with its last checksum digit changed: intact content, bad checksum."""
    return frame[:-1] + (b"1" if frame.endswith(b"0") else b"0")


@check("retry/resend-after-KO-same-socket", "A resend after KO, on the same connection")
def retry_same_socket(ctx: Context) -> None:
    """A 2017 client resends after exactly ``KO`` on the SAME socket, once:
    the server keeps the connection open for it and answers the resend."""
    token = ctx.token()
    frame = P.make_frame(ctx.session(ctx.sender), "email", ctx.recipient, f"resent {token}", "body")
    with ctx.wire.open("an email with a damaged checksum, no half-close (as a 2017 client)") as conn:
        first = conn.send(_damaged_checksum(frame)).read()
        if first.text != "KO":
            ctx.fail(f"got {first.text[:80]!r} ({first.ending})", "exactly KO", "Replies")
        if first.ending == "closed":
            ctx.fail("the server closed right after KO", "the connection stays open for one resend")
        try:
            again = conn.send(frame, note="the same email resent on the same socket").read()
        except OSError as exc:
            ctx.fail(f"the resend could not be sent: {exc}", "the connection stays open for one resend")
    if not again.text.startswith("OK"):
        ctx.fail(f"the resend got {again.text[:80]!r} ({again.ending})",
                 "the resend is answered like any request (OK: Email Sent)")


@check("retry/resent-mail-stored-once", "A resend after KO, on the same connection")
def retry_stored_once(ctx: Context) -> None:
    """A mail sent with a bad checksum, then again on the same socket, is
    delivered once: the ``KO``'d copy did nothing."""
    token = ctx.token()
    frame = P.make_frame(ctx.session(ctx.sender), "email", ctx.recipient, f"once {token}", "body")
    with ctx.wire.open("an email with a damaged checksum, no half-close") as conn:
        conn.send(_damaged_checksum(frame)).read()
        try:
            conn.send(frame, note="the same email resent on the same socket").read()
        except OSError:
            pass
    listing = ctx.inbox_from_sender()
    n = listing.count(f"once {token}")
    if n != 1:
        ctx.fail(f"{ctx.recipient} has {n} copies of the mail", "exactly 1 copy")


@check("retry/KO-then-close-when-half-closed", "A resend after KO, on the same connection")
def retry_half_closed(ctx: Context) -> None:
    """To a client that half-closed after its damaged frame (it cannot
    resend on that socket), the server says ``KO`` and closes."""
    frame = _damaged_checksum(P.make_frame(ctx.session(ctx.sender), "count"))
    with ctx.wire.open("count with a damaged checksum, then half-close") as conn:
        answer = conn.send(frame, half_close=True).read(until_close=CLOSE_WAIT_S)
    if answer.text != "KO" or answer.ending != "closed":
        ctx.fail(f"got {answer.text[:60]!r}, {answer.ending}", "exactly KO, then the close")


# -- many clients ---------------------------------------------------------------------------


@check("concurrency/two-sessions", "PROTOCOL.md: Flaws of 2017 that mailkit fixes compatibly")
def two_sessions(ctx: Context) -> None:
    """Two users logged in at once both work: a second login neither ends
    the first session nor crashes the server."""
    a = ctx.session(ctx.sender)              # logged in earlier, and still open
    b = ctx.login(ctx.recipient, note=f"{ctx.recipient} logs in, while {ctx.sender}'s session runs")
    for user, sid in ((ctx.sender, a), (ctx.recipient, b)):
        answer = ctx.wire.ask(P.make_frame(sid, "count"), f"{user}: count", half_close=True)
        ctx.expect_ok(answer, f"{user}'s count, both sessions open")


@check("concurrency/silent-client", "PROTOCOL.md: Flaws of 2017 that mailkit fixes compatibly")
def silent_client(ctx: Context) -> None:
    """While one client has sent half a frame and gone quiet, another
    client's ``help`` is answered, without waiting for the quiet one to be
    timed out first (a server that serves one client at a time does that,
    or never answers at all)."""
    half = P.make_frame(ctx.session(ctx.sender), "count")[:20]
    with ctx.wire.open("a client sends half a frame and goes quiet") as quiet:
        quiet.send(half)
        started = time.monotonic()
        with ctx.wire.open("meanwhile another client asks for help") as other:
            other.send(P.make_frame(ctx.session(ctx.recipient), "help"), half_close=True)
            answer = other.read()
        took = time.monotonic() - started
        quiet_done = _finished(quiet.sock)
    if answer.kind != "OK":
        ctx.fail(f"the second client got {answer.text[:60]!r} ({answer.ending})",
                 "an answer while the first client is quiet (one thread or one selector per connection)")
    if quiet_done and took >= BESIDE_SILENT_S:
        ctx.fail(f"the second client was answered only after {took:.1f} s, once the server had "
                 "finished with the quiet one", "an answer while the first client is still quiet "
                 "(one thread or one selector per connection)")


def _finished(sock: socket.socket) -> bool:
    """True if the server already answered or closed *sock* (bytes or EOF waiting)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


# -- durability --------------------------------------------------------------------------


@check("durability/after-OK", "Limits of a class server", restarts=True)
def durability(ctx: Context) -> None:
    """An ``OK`` to an email means the mail is on disk: the server is killed
    (SIGKILL) right after the ``OK``, started again, and the mail is there."""
    if not getattr(ctx.target, "can_restart", False):
        raise NotApplicable("needs the server started by the suite (conform server -- COMMAND)")
    token = ctx.token()
    ctx.email(f"durable {token}", f"body {token}")
    ctx.target.restart()
    ctx.wire.address = ctx.target.address
    ctx.sessions.clear()
    if f"durable {token}" not in ctx.inbox_from_sender("after the restart: is the mail there?"):
        ctx.fail("the mail that got OK is gone after a restart", "an OK means the mail is on disk")


# -- SHOULDs (--strict) --------------------------------------------------------------------


@check("login/newline-terminated", "When is a request complete?", required=False)
def login_newline(ctx: Context) -> None:
    """A login ending in a newline (typed into ``nc``) is answered at once."""
    user = ctx.sender
    answer = ctx.wire.ask(f"{user}:{ctx.target.users[user]}\n".encode(), f"log in as {user}, with a newline")
    if not SESSION_RE.fullmatch(answer.text):
        ctx.fail(f"got {answer.text[:80]!r} ({answer.ending})", "OK: and a session id")


@check("frame/trailing-newline", "Trailing newlines and uppercase hex", required=False)
def frame_newline(ctx: Context) -> None:
    """A frame followed by one newline is accepted (a server is liberal in
    what it accepts; a client sends none)."""
    answer = ctx.wire.ask(P.make_frame(ctx.session(ctx.recipient), "count") + b"\n",
                          "count, with a newline after the checksum")
    ctx.expect_ok(answer, "a frame with a trailing newline")


@check("frame/uppercase-checksum", "Trailing newlines and uppercase hex", required=False)
def frame_upper(ctx: Context) -> None:
    """A checksum in uppercase hex (right, but ``%02X``) does not get a bare
    ``KO``, which a client would retry for nothing: mailkit names the
    mistake (``ERROR: checksum in uppercase hex ...``); accepting it is fine too."""
    frame = P.make_frame(ctx.session(ctx.recipient), "count")
    answer = ctx.wire.ask(frame[:-40] + frame[-40:].upper(), "count, checksum in uppercase hex",
                          half_close=True, retry=False)
    if answer.kind not in ("OK", "ERROR"):
        ctx.fail(f"got {answer.text[:60]!r} ({answer.ending})",
                 "an error that says to send lowercase (ERROR: checksum in uppercase hex ...), or OK")


@check("frame/damaged-separator", "When is a request complete?", required=False)
def frame_separator(ctx: Context) -> None:
    """A frame whose ``#`` was flipped (it never looks complete) still gets
    ``KO`` once the idle timeout passes, not silence."""
    frame = P.make_frame(ctx.session(ctx.recipient), "count")
    damaged = frame[:-41] + bytes([frame[-41] ^ 0x08]) + frame[-40:]
    answer = ctx.wire.ask(damaged, "count with its '#' flipped to '+', no half-close")
    if answer.text != "KO":
        ctx.fail(f"got {answer.text[:60]!r} ({answer.ending})", "KO after the idle timeout")


@check("reply/exact-texts", "Reply grammar", required=False)
def reply_texts(ctx: Context) -> None:
    """mailkit's reply texts: ``OK: Email Sent``, ``OK: N message(s)``
    (singular for 1), errors starting ``ERROR:``."""
    before = ctx.command(ctx.recipient, "count").text
    m = re.fullmatch(r"OK: (\d+) messages?", before)
    if not m or (int(m.group(1)) == 1) != before.endswith("message"):
        ctx.fail(f"count got {before!r}", "OK: N messages (OK: 1 message)", "Reply grammar")
    sent = ctx.command(ctx.sender, "email", ctx.recipient, f"exact {ctx.token()}", "b").text
    if sent != "OK: Email Sent":
        ctx.fail(f"email got {sent!r}", "OK: Email Sent", "Reply grammar")
    after = ctx.command(ctx.recipient, "count").text
    n = int(m.group(1)) + 1
    want = f"OK: {n} message{'' if n == 1 else 's'}"
    if after != want:
        ctx.fail(f"count got {after!r}", want, "Reply grammar")
    err = ctx.command(ctx.sender, "getmsg", f"nobody{ctx.token()}").text
    if not err.startswith("ERROR: "):
        ctx.fail(f"getmsg of an unknown user got {err[:60]!r}", "ERROR: and the reason", "Reply grammar")


@check("reply/listing", "Message listings (getmsg, dump)", required=False)
def reply_listing(ctx: Context) -> None:
    """A ``getmsg`` listing is mailkit's (headers, ``Length`` in BYTES, the
    body), so mailkit's client reads it back exactly."""
    token = ctx.token()
    body = f"naïve café ✓\nFrom: not a header {token}"
    ctx.email(f"listing {token}", body)
    text = ctx.inbox_from_sender()
    try:
        messages = P.parse_messages(text)
    except P.RemoteProtocolError as exc:
        ctx.fail(f"the listing does not parse: {exc}", "the layout of 'Message listings'")
    if not any(m.body == body and m.subject == f"listing {token}" for m in messages):
        ctx.fail("the mail is not in the parsed listing with its exact body",
                 f"Length: {len(body.encode())} (bytes, not the {len(body)} characters) and the body")
