"""Tests for mailkit.protocol: pure functions, bytes in and out, no sockets."""
from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import assume, given, settings, strategies as st

from mailkit import protocol as P
from mailkit.protocol import (
    COMMANDS, MAX_REQUEST_BYTES, ChecksumMismatch, Command, Handshake,
    LocalProtocolError, MalformedRequest, Message, RemoteProtocolError,
    RequestReader, RequestTooLarge, UnknownCommand,
)

PROTOCOL_PY = Path(P.__file__).resolve()
SID = "0123456789"
FORBIDDEN = ("socket", "threading", "selectors", "asyncio", "sqlite3")

# Text that UTF-8 can carry (no lone surrogates), '#', ':', '%', newlines and emoji included.
any_text = st.text(st.characters(codec="utf-8"))
# Written out here rather than taken from mailkit, so the test is an independent oracle.
usernames = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,31}", fullmatch=True)


def sha1_hex(content: bytes) -> str:
    return hashlib.sha1(content).hexdigest()


def frame_2017(content: str) -> bytes:
    """A frame exactly as a 2017 client builds it: content, '#', SHA-1 of content."""
    raw = content.encode("utf-8")
    return raw + b"#" + sha1_hex(raw).encode("ascii")


def raw_frame(content: bytes) -> bytes:
    """Any bytes with a correct checksum after them."""
    return content + b"#" + sha1_hex(content).encode("ascii")


# -- purity -----------------------------------------------------------------

_ISOLATED_IMPORT = textwrap.dedent("""
    import importlib.util, json, sys
    path, forbidden = sys.argv[1], sys.argv[2].split(",")
    before = sorted(m for m in forbidden if m in sys.modules)
    spec = importlib.util.spec_from_file_location("_protocol_alone", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    after = sorted(m for m in forbidden if m in sys.modules)
    print(json.dumps([before, after]))
""")


def _modules_pulled_in(path: Path) -> tuple[list[str], list[str]]:
    """Load one .py file on its own (not through mailkit/__init__.py, which
    imports the whole core) in a fresh, isolated interpreter (-I: no user
    site, no PYTHONPATH; -S: no site-packages .pth hooks) and report which
    forbidden modules were loaded before and after."""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _ISOLATED_IMPORT, str(path), ",".join(FORBIDDEN)],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    before, after = json.loads(out.stdout)
    return before, after


def test_protocol_imports_no_io_modules_even_transitively():
    before, after = _modules_pulled_in(PROTOCOL_PY)
    assert before == [], "the interpreter loaded them at startup: the check would prove nothing"
    assert after == [], f"importing mailkit/protocol.py pulled in {after}"


def test_the_isolated_import_check_can_fail(tmp_path):
    # Control: the same harness on a module that does import selectors must see it.
    impure = tmp_path / "impure.py"
    impure.write_text("import selectors\n")
    assert _modules_pulled_in(impure) == ([], ["selectors"])


def test_protocol_source_imports_only_stdlib_and_nothing_from_mailkit():
    tree = ast.parse(PROTOCOL_PY.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "protocol is the lowest layer: no relative imports"
            imported.add(node.module.split(".")[0])
    assert not imported & set(FORBIDDEN)
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


# -- checksum and byte identity with a 2017 client --------------------------

def test_checksum_is_lowercase_hex_sha1():
    content = b"0123456789:count"
    assert P.checksum(content) == hashlib.sha1(content).hexdigest()
    assert len(P.checksum(content)) == P.CHECKSUM_LEN == 40
    assert P.checksum(content) == P.checksum(content).lower()
    frame = P.make_frame(SID, "count")
    assert frame == content + b"#" + hashlib.sha1(content).hexdigest().encode()


def test_make_frame_email_is_byte_identical_to_2017():
    r, s, b = "bob", "Hello there", "How are you? Fine, thanks."
    assert P.make_frame(SID, "email", r, s, b) == frame_2017(f"{SID}:email:{r}:{s}:{b}")


# Plain fields for every command: no '#' or ':' anywhere ('%' is plain text).
PLAIN_FIELDS = {
    "help": (), "count": (), "dump": (), "logoff": (),
    "getmsg": ("alice",),
    "email": ("bob", "Lunch on Friday", "See you at noon. Bring the slides!"),
    "delmsg": ("alice", "Lunch on Friday"),
}


def test_plain_fields_cover_every_command():
    assert set(PLAIN_FIELDS) == set(COMMANDS)
    for name, fields in PLAIN_FIELDS.items():
        assert len(fields) == len(COMMANDS[name].fields)


@pytest.mark.parametrize("name", sorted(PLAIN_FIELDS))
def test_every_command_is_byte_identical_to_2017(name):
    fields = PLAIN_FIELDS[name]
    assert P.make_frame(SID, name, *fields) == frame_2017(":".join((SID, name, *fields)))


def test_make_handshake_is_byte_identical_to_2017():
    assert P.make_handshake("alice", "pw") == b"alice:pw"
    assert P.make_handshake("bob", "builder") == b"bob:builder"


def test_last_field_keeps_colon_and_hash_verbatim():
    frame = P.make_frame(SID, "email", "bob", "hi", "a:b#c")
    assert frame == frame_2017(f"{SID}:email:bob:hi:a:b#c")
    assert b"a:b#c#" in frame
    assert P.parse_request(frame).fields == ("bob", "hi", "a:b#c")


def test_last_field_of_delmsg_keeps_colon_verbatim():
    frame = P.make_frame(SID, "delmsg", "bob", "Re: Re: lunch")
    assert frame == frame_2017(f"{SID}:delmsg:bob:Re: Re: lunch")


@pytest.mark.parametrize("subject, on_wire", [
    ("Re: lunch", "Re#3A lunch"),           # ':' in a non-last field travels as #3A
    ("a:b:c", "a#3Ab#3Ac"),
    ("C# tips", "C# tips"),                 # '#' without ':' travels as it is
    ("Issue #23 fixed", "Issue #23 fixed"),  # and so does a 2017 client's '#23'
    ("Re: C#", "Re#3A C#23"),               # with a ':', '#' travels as #23
    ("#3A", "#233A"),                       # text that would read as escaped is escaped
    ("Flat #233A", "Flat #23233A"),
    ("#3a", "#3a"),                         # only '#3A' marks an escaped field
    ("100% sure", "100% sure"),             # '%' is plain text: never touched
    ("50%25 off", "50%25 off"),             # not even where it looks like URL escaping
    ("%3A", "%3A"),
])
def test_subject_escaping_on_the_wire(subject, on_wire):
    frame = P.make_frame(SID, "email", "bob", subject, "body")
    assert frame == frame_2017(f"{SID}:email:bob:{on_wire}:body")
    assert P.parse_request(frame).fields == ("bob", subject, "body")


@settings(max_examples=300, deadline=None)
@given(subject=st.text(st.characters(codec="utf-8", exclude_characters=":#")), body=any_text)
def test_anything_a_2017_client_could_send_is_byte_identical(subject, body):
    """PROTOCOL.md: text without '#' and ':' travels exactly as a 2017 client
    sends it; the last field travels exactly as it is, whatever it holds."""
    assert P.make_frame(SID, "email", "bob", subject, body) == frame_2017(f"{SID}:email:bob:{subject}:{body}")


# A 2017 subject: no ':' (it would end the field), but '#' now gets through.
subjects_2017 = st.lists(st.one_of(st.characters(codec="utf-8", exclude_characters=":"),
                                   st.sampled_from(["#", "#23", "#3", "#2", "3A", "23", "A"]))).map("".join)
ESCAPED_MARK = re.compile("#(?:23)*3A")


@settings(max_examples=400, deadline=None)
@given(subject=subjects_2017, body=any_text)
def test_a_2017_subject_with_hash_is_read_as_sent_unless_it_holds_the_mark(subject, body):
    """The #23 question (docs/protocol.md): a 2017 client's frame, '#' and all,
    is read back exactly as sent, except a subject holding '#3A' (or
    '#23'... before '3A'), the one documented incompatibility."""
    parsed = P.parse_request(frame_2017(f"{SID}:email:bob:{subject}:{body}"))
    assert (parsed.fields[1] == subject) == (not ESCAPED_MARK.search(subject))
    assert parsed.fields[2] == body
    if not ESCAPED_MARK.search(subject):   # and mailkit sends the very same bytes
        assert P.make_frame(SID, "email", "bob", subject, body) == frame_2017(f"{SID}:email:bob:{subject}:{body}")


def test_the_one_incompatibility_and_the_reported_case():
    def read(subject):
        return P.parse_request(frame_2017(f"{SID}:email:bob:{subject}:b")).fields[1]
    assert read("Issue #23 fixed") == "Issue #23 fixed"      # issue 12: was "Issue # fixed"
    assert read("C# and #3a") == "C# and #3a"
    assert read("Flat #3A") == "Flat :"                     # documented: holds the mark


# -- round trips (hypothesis) -----------------------------------------------

@settings(max_examples=300, deadline=None)
@given(recipient=usernames, subject=any_text, body=any_text)
def test_email_frame_roundtrip(recipient, subject, body):
    frame = P.make_frame(SID, "email", recipient, subject, body)
    assert P.parse_request(frame) == Command(SID, "email", (recipient, subject, body))


@settings(max_examples=300, deadline=None)
@given(sender=usernames, subject=any_text)
def test_delmsg_frame_roundtrip(sender, subject):
    frame = P.make_frame(SID, "delmsg", sender, subject)
    assert P.parse_request(frame) == Command(SID, "delmsg", (sender, subject))


@settings(max_examples=200, deadline=None)
@given(sender=st.one_of(usernames, any_text))
def test_getmsg_frame_roundtrip(sender):
    frame = P.make_frame(SID, "getmsg", sender)
    assert P.parse_request(frame) == Command(SID, "getmsg", (sender,))


@settings(max_examples=300, deadline=None)
@given(user=usernames, password=any_text)
def test_handshake_roundtrip(user, password):
    # A password may not look like a frame tail, nor end in a line break
    # (a handshake typed by hand ends in one, and the parser drops it).
    assume(not re.search(r"#[0-9a-f]{40}\Z", password) and not password.endswith(("\n", "\r")))
    assert P.parse_request(P.make_handshake(user, password)) == Handshake(user, password)


# Text rich in the characters that escaping is about.
escape_prone = st.text(st.sampled_from(["%", ":", "2", "3", "A", "a", "#", "x"]))


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(any_text, escape_prone))
def test_escape_field_roundtrips_and_removes_colons(text):
    escaped = P.escape_field(text)
    assert P.unescape_field(escaped) == text
    assert ":" not in escaped


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_characters=":#")))
def test_escape_field_is_identity_without_colon_and_hash(text):
    assert P.escape_field(text) == text


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(any_text, escape_prone))
def test_escape_field_changes_text_only_if_it_holds_a_colon_or_the_mark(text):
    escaped = P.escape_field(text)
    assert (escaped == text) == (":" not in text and not ESCAPED_MARK.search(text))
    assert (P.unescape_field(text) == text) or ESCAPED_MARK.search(text)


# -- parse_request errors ---------------------------------------------------

GOOD = P.make_frame(SID, "email", "bob", "Hello", "How are you?")
_BAD_DIGEST = sha1_hex(b"something else")


def _with_checksum(frame: bytes, digest: str) -> bytes:
    return frame[: -P.CHECKSUM_LEN] + digest.encode()


def _nonhex(frame: bytes) -> bytes:
    return frame[:-5] + b"g" + frame[-4:]


ERROR_CASES = [
    # (id, request bytes, exception type, fragments of the message)
    ("checksum mismatch", _with_checksum(GOOD, _BAD_DIGEST), ChecksumMismatch,
     ["checksum mismatch: frame says", _BAD_DIGEST[:4], sha1_hex(GOOD[:-41])[:4]]),
    ("flipped '#'", GOOD[:-41] + bytes([ord("#") ^ 0b1000]) + GOOD[-40:], ChecksumMismatch,
     ["checksum mismatch"]),
    ("non-hex in checksum", _nonhex(GOOD), ChecksumMismatch, ["checksum mismatch"]),
    ("uppercase checksum of other content", GOOD[:-40] + _BAD_DIGEST.upper().encode(), ChecksumMismatch,
     ["checksum mismatch"]),
    ("two line ends after the frame", GOOD + b"\n\n", MalformedRequest, ["incomplete frame"]),
    ("truncated, no '#'", GOOD[:-41], MalformedRequest, ["incomplete frame"]),
    ("short truncated", GOOD[:20], MalformedRequest, ["incomplete frame"]),
    ("unknown command", raw_frame(b"0123456789:fetch:bob"), UnknownCommand,
     ["unknown command", "'fetch'", "help"]),
    ("too few fields", raw_frame(b"0123456789:email:bob:hi"), MalformedRequest,
     ["email takes 3 field(s)", "email:RECIPIENT:SUBJECT:BODY", "got 2"]),
    ("no fields for getmsg", raw_frame(b"0123456789:getmsg"), MalformedRequest,
     ["getmsg:SENDER", "got 0"]),
    ("short session id", raw_frame(b"12345:count"), MalformedRequest, ["10-digit session id"]),
    ("not UTF-8", raw_frame(b"0123456789:email:bob:hi:\xff\xfe"), MalformedRequest,
     ["not UTF-8", "0xff"]),
    ("handshake without ':'", b"alice", MalformedRequest, ["expected USERNAME:PASSWORD", "'alice'"]),
    ("handshake not UTF-8", b"al\xffce:pw", MalformedRequest, ["not UTF-8"]),
    ("empty request", b"", MalformedRequest, ["empty request"]),
    ("blank request", b" \r\n", MalformedRequest, ["empty request"]),
    ("too large", b"a:" + b"x" * MAX_REQUEST_BYTES, RequestTooLarge,
     [f"over the limit of {MAX_REQUEST_BYTES}"]),
]


@pytest.mark.parametrize("data, exc_type, fragments",
                         [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_parse_request_errors(data, exc_type, fragments):
    with pytest.raises(exc_type) as info:
        P.parse_request(data)
    assert isinstance(info.value, RemoteProtocolError)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message


def test_checksum_mismatch_carries_both_digests():
    with pytest.raises(ChecksumMismatch) as info:
        P.parse_request(_with_checksum(GOOD, _BAD_DIGEST))
    assert info.value.claimed == _BAD_DIGEST
    assert info.value.actual == sha1_hex(GOOD[:-41])


@pytest.mark.parametrize("frame", [
    GOOD,
    P.make_frame(SID, "count"),
    P.make_frame(SID, "delmsg", "al:ice", "Re: 50%25 #1"),
], ids=["email", "count", "delmsg"])
def test_every_single_bit_flip_is_a_checksum_mismatch(frame):
    # The promise behind KO-and-retry: whatever bit a noisy wire flips, the
    # server answers KO (ChecksumMismatch), never a different error or a command.
    # (Issue 22's uppercase-hex error needs two uppercase letters: one flip
    # makes at most one.)
    others = []
    for byte in range(len(frame)):
        for bit in range(8):
            damaged = bytearray(frame)
            damaged[byte] ^= 1 << bit
            try:
                P.parse_request(bytes(damaged))
            except ChecksumMismatch:
                continue
            except RemoteProtocolError as exc:
                others.append((byte, bit, type(exc).__name__))
            else:
                others.append((byte, bit, "accepted"))
    assert others == []


@pytest.mark.parametrize("content", [b"0123456789:count:x", b"0123456789:logoff:now",
                                     b"0123456789:help:"])
def test_extra_fields_on_a_zero_field_command_are_refused(content):
    with pytest.raises(MalformedRequest, match="takes 0 field"):
        P.parse_request(raw_frame(content))


FULLWIDTH_SID = "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"  # "０１２…９"


def test_make_frame_refuses_a_non_ascii_session_id():
    with pytest.raises(LocalProtocolError):
        P.make_frame(FULLWIDTH_SID, "count")


def test_parse_request_refuses_a_non_ascii_session_id():
    with pytest.raises(MalformedRequest):
        P.parse_request(raw_frame(f"{FULLWIDTH_SID}:count".encode()))


@pytest.mark.parametrize("args, fragment", [
    (("123", "count"), "10 digits"),
    (("abcdefghij", "count"), "10 digits"),
    (("01234567890", "count"), "10 digits"),
    ((SID, "fetch"), "unknown command 'fetch'"),
    ((SID, "email", "bob"), "email takes 3 field(s)"),
    ((SID, "count", "x"), "count takes 0 field(s)"),
    ((SID, "delmsg", "bob", "hi", "extra"), "got 3"),
])
def test_make_frame_refuses_what_the_protocol_cannot_carry(args, fragment):
    with pytest.raises(LocalProtocolError, match=re.escape(fragment)) as info:
        P.make_frame(*args)
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize("user, password", [
    ("1alice", "pw"), ("", "pw"), ("al ice", "pw"), ("al:ice", "pw"),
    ("alice", "x#" + "a" * 40),
])
def test_make_handshake_refusals(user, password):
    with pytest.raises(LocalProtocolError):
        P.make_handshake(user, password)


# -- replies ----------------------------------------------------------------

@pytest.mark.parametrize("data, kind", [
    (b"KO", "KO"),
    (b"KO\n", "KO"),
    (b"KO: wrong username or password", "ERROR"),
    (b"ERROR: unknown recipient 'zed'", "ERROR"),
    (b"OK: Email Sent", "OK"),
    (b"OK:1234567890", "OK"),
    (b"OK: Logged off", "OK"),
    (b"3", "OK"),                     # a 2017 server's reply to count
    (b"OK: 1 message\n--- message 1 of 1 ---", "OK"),
])
def test_parse_reply_kinds(data, kind):
    reply = P.parse_reply(data)
    assert reply.kind == kind
    assert reply.ok == (kind == "OK")


def test_ok_reply_text_is_kept_whole():
    # A listing's body lengths count bytes, so the text of an OK reply must not be stripped.
    assert P.parse_reply(b"OK: 1 message\n  body  \n").text == "OK: 1 message\n  body  \n"


# -- message listings -------------------------------------------------------

_TRAPS = ["--- message 2 of 2 ---", "Length: 5", "\n", "\r\n", "\n\n", "From: eve",
          "Subject: x", "Date: 2017-01-01 00:00:00 UTC", "OK: 9 messages", "\\n", "\\"]
tricky_text = st.lists(st.one_of(st.sampled_from(_TRAPS), any_text), max_size=6).map("".join)
messages = st.builds(
    Message, sender=usernames, recipient=usernames, subject=tricky_text, body=tricky_text,
    sent_at=st.integers(min_value=0, max_value=4_102_444_800),  # 1970 .. 2100, whole seconds
)


@settings(max_examples=200, deadline=None)
@given(batch=st.lists(messages, max_size=4), title=st.sampled_from(["", " from bob"]))
def test_listing_roundtrip(batch, title):
    text = P.format_messages(batch, title=title)
    assert P.parse_messages(text) == batch
    # the same text after a trip over the wire, through the client's reply parser
    assert P.parse_messages(P.parse_reply(text.encode("utf-8")).text) == batch


def test_listing_keeps_seconds_and_drops_fractions():
    m = Message("alice", "bob", "s", "b", 1_500_000_000.75)
    (back,) = P.parse_messages(P.format_messages([m]))
    assert back.sent_at == 1_500_000_000


@pytest.mark.parametrize("text", [
    "OK: Email Sent", "3", "", "ERROR: unknown user 'zed'", "KO",
    "OK: 2 messages\n--- message 1 of 2 ---\nFrom: a\n",      # cut short
    "OK: 1 message\nFrom: a\n",                                # no marker
    "OK: 1 message\n--- message 1 of 1 ---\nFrom: a\nTo: b\nDate: yesterday\nSubject: s\nLength: 1\n\nx",
])
def test_parse_messages_refuses_a_non_listing(text):
    with pytest.raises(RemoteProtocolError):
        P.parse_messages(text)


_ONE = P.format_messages([Message("alice", "bob", "s", "short body", 0)])


@pytest.mark.parametrize("damaged", [
    _ONE.replace("Length: 10", "Length: 100"),   # the reply was cut short
    _ONE.replace("Length: 10", "Length: 3"),     # a flipped digit in Length
], ids=["length too big", "length too small"])
def test_parse_messages_refuses_a_body_that_does_not_match_its_length(damaged):
    with pytest.raises(RemoteProtocolError):
        P.parse_messages(damaged)


# -- RequestReader ----------------------------------------------------------

IDLE, QUIET, SETTLE = "idle", "quiet", "settle"
FRAME = P.make_frame(SID, "email", "bob", "Hello", "How are you?")
WRONG_SUM = _with_checksum(FRAME, _BAD_DIGEST)
FLIPPED_HASH = FRAME[:-41] + bytes([FRAME[-41] ^ 0b1000]) + FRAME[-40:]   # '#' -> '+'

READER_CASES = [
    # (id, pieces fed one after another, patience expected after each piece)
    ("nothing yet", [], []),
    ("half-close only", [b""], [0]),
    ("handshake then half-close", [b"alice:pw", b""], [QUIET, 0]),
    ("whole frame", [FRAME], [0]),
    ("frame in 3 pieces", [FRAME[:15], FRAME[15:-20], FRAME[-20:]], [IDLE, IDLE, 0]),
    ("frame, 3 pieces, then close", [FRAME[:1], FRAME[1:-1], FRAME[-1:], b""], [IDLE, IDLE, 0, 0]),
    ("handshake", [b"alice:pw"], [QUIET]),
    ("handshake typed by hand", [b"alice:pw\n"], [0]),
    ("handshake with CRLF", [b"alice:pw\r\n"], [0]),
    ("handshake in pieces", [b"ali", b"ce:", b"pw"], [IDLE, QUIET, QUIET]),
    ("wrong checksum", [WRONG_SUM], [SETTLE]),
    ("flipped '#'", [FLIPPED_HASH], [IDLE]),
    ("frame prefix", [FRAME[:-41]], [IDLE]),
    ("frame prefix up to '#'", [FRAME[:-40]], [IDLE]),
    ("session id only", [SID.encode()], [IDLE]),
]


def _expected(value, reader: RequestReader) -> float:
    return {IDLE: reader.idle_timeout,
            QUIET: min(RequestReader.QUIET_S, reader.idle_timeout),
            SETTLE: min(RequestReader.SETTLE_S, reader.idle_timeout)}.get(value, value)


@pytest.mark.parametrize("idle_timeout", [RequestReader.IDLE_TIMEOUT_S, 0.3, 0.01])
@pytest.mark.parametrize("pieces, expected",
                         [c[1:] for c in READER_CASES], ids=[c[0] for c in READER_CASES])
def test_reader_patience(pieces, expected, idle_timeout):
    reader = RequestReader(idle_timeout=idle_timeout)
    assert reader.patience() == reader.idle_timeout == idle_timeout   # empty: wait
    seen = []
    for piece in pieces:
        reader.feed(piece)
        seen.append(reader.patience())
    assert seen == [_expected(e, reader) for e in expected]
    assert reader.data == b"".join(pieces)
    assert len(reader) == len(reader.data)


def test_reader_constants_are_ordered():
    # quiet < settle < idle: a handshake is answered soonest, a flipped '#' last
    assert 0 < RequestReader.QUIET_S < RequestReader.SETTLE_S < RequestReader.IDLE_TIMEOUT_S


@pytest.mark.parametrize("pieces", [[b"x" * 11], [b"x" * 6, b"x" * 5], [b"12345", b"67890", b"1"]])
def test_reader_raises_past_max_bytes(pieces):
    reader = RequestReader(max_bytes=10)
    with pytest.raises(RequestTooLarge, match="over the limit of 10 bytes"):
        for piece in pieces:
            reader.feed(piece)


def test_reader_accepts_exactly_max_bytes():
    reader = RequestReader(max_bytes=10)
    reader.feed(b"x" * 6)
    reader.feed(b"x" * 4)
    assert len(reader) == 10


def _ends_validly(data: bytes) -> bool:
    content, sep, digest = data[:-41], data[-41:-40], data[-40:]
    return sep == b"#" and sha1_hex(content).encode() == digest


@settings(max_examples=200, deadline=None)
@given(body=any_text, cuts=st.lists(st.integers(min_value=0), min_size=2, max_size=2))
def test_reader_completes_a_split_frame_only_at_its_end(body, cuts):
    frame = P.make_frame(SID, "email", "bob", "Hello", body)
    a, b = sorted(c % (len(frame) + 1) for c in cuts)
    reader = RequestReader()
    for piece in (frame[:a], frame[a:b], frame[b:]):
        if piece:
            reader.feed(piece)
        done = reader.patience() == 0
        assert done == _ends_validly(reader.data)
    assert reader.data == frame and reader.patience() == 0


# -- issue 22's decision: a server accepts one trailing line end and an uppercase checksum --


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_one_line_end_after_a_frame_is_accepted_and_completes_it_at_once(ending):
    assert P.parse_request(GOOD + ending) == P.parse_request(GOOD)
    reader = P.RequestReader()
    reader.feed(GOOD + ending)
    assert reader.patience() == 0.0


def test_an_uppercase_checksum_gets_an_error_that_says_so_at_once():
    upper = GOOD[:-40] + GOOD[-40:].upper()
    assert upper != GOOD and P.uppercase_checksum(upper)
    with pytest.raises(P.UppercaseChecksum, match="uppercase hex: send its 40 hex digits in lowercase"):
        P.parse_request(upper)
    reader = P.RequestReader()
    reader.feed(upper + b"\n")
    assert reader.patience() == 0.0         # no 2 s wait for it
    damaged = bytearray(upper)
    damaged[12] ^= 1                         # a bit of the command name: damage, so KO
    with pytest.raises(ChecksumMismatch):
        P.parse_request(bytes(damaged))


def test_one_uppercase_letter_is_a_flipped_bit_and_gets_ko():
    i = next(i for i in range(len(GOOD) - 40, len(GOOD)) if chr(GOOD[i]) in "abcdef")
    one = GOOD[:i] + GOOD[i:i + 1].upper() + GOOD[i + 1:]
    assert not P.uppercase_checksum(one)
    with pytest.raises(ChecksumMismatch):
        P.parse_request(one)


def test_normalize_frame_leaves_handshakes_and_lowercase_frames_alone():
    assert P.normalize_frame(b"alice:wonderland\n") == b"alice:wonderland\n"
    assert P.normalize_frame(GOOD) == GOOD
    assert P.normalize_frame(GOOD + b"\r\n") == GOOD
    assert P.normalize_frame(b"0123456789:count\n") == b"0123456789:count\n"   # no checksum: unchanged


# -- docs/protocol.md's SHA-1 test vectors are right (issue 22) ---------------------------


def _vectors() -> list[tuple[str, int, str]]:
    text = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    section = text.split("### SHA-1 test vectors", 1)[1].split("\n## ", 1)[0]
    return [(m.group(1), int(m.group(2)), m.group(3))
            for m in re.finditer(r"^\| `([^`]*)` \| (\d+) \| `([0-9a-f]{40})` \|$", section, re.M)]


def test_the_sha1_test_vectors_in_the_docs_are_right():
    rows = _vectors()
    assert len(rows) == 6
    for content, size, digest in rows:
        assert len(content.encode("utf-8")) == size, content
        assert P.checksum(content.encode("utf-8")) == digest, content
    assert P.make_frame("0123456789", "count") == b"0123456789:count#" + rows[1][2].encode()
    assert P.make_frame("0123456789", "email", "bob", "Re: lunch", "at 12:30: bring #4") == \
        rows[4][0].encode() + b"#" + rows[4][2].encode()


def test_a_frame_the_reader_verified_is_not_hashed_again_and_no_other_is_trusted(monkeypatch):
    """The server's RequestReader checks a frame's SHA-1 to know it is
    complete; parse_request then skips its own SHA-1 for that very object
    (protocol._last_verified), and only for it."""
    frame = P.make_frame("1234567890", "email", "bob", "subject", "x" * 100)
    hashed = []
    monkeypatch.setattr(P, "checksum", lambda content: hashed.append(content) or hashlib.sha1(content).hexdigest())
    assert P.verifies(frame)
    assert P.parse_request(frame).fields == ("bob", "subject", "x" * 100) and hashed == []
    flipped = frame[:30] + bytes([frame[30] ^ 1]) + frame[31:]      # another object, one bit off
    with pytest.raises(P.ChecksumMismatch):
        P.parse_request(flipped)
    same = bytes(bytearray(frame))                                  # equal bytes, another object: hashed
    assert P.parse_request(same).fields[0] == "bob" and len(hashed) == 2
    changing = bytearray(frame)                  # a bytearray can change after it was verified
    assert P.verifies(changing)
    changing[30] ^= 1
    with pytest.raises(P.ChecksumMismatch):
        P.parse_request(changing)
