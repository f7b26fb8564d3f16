"""mailkit.course: the helpers behind the course notebooks."""

from __future__ import annotations

import ast
import json
import random
import re
import secrets
from pathlib import Path

import pytest

from mailkit import MailClient, MailServer, MailStore, NoisyLink, RetriesExhausted, checksum, make_frame
from mailkit.course import (
    FakeClock, SeqClient, SeqServer, Server2017Style, SessionIds2017, analytic_delivery, arrival,
    clone_random, handshake_diagram, parse_2017, quiz, raw_request, rdt21_diagram, simple_sum,
    simulate_delivery, stop_everything, sum_blind_flips, tally, tcp_connection_diagram, threads_diagram,
)
from mailkit.course.sessions import untemper
from mailkit.noise import flip_bits

USERS = {"alice": "wonderland", "bob": "builder"}


@pytest.fixture
def server():
    with MailServer(users=USERS, idle_timeout=0.3) as srv:
        yield srv


# -- sockets and servers ------------------------------------------------------


def test_raw_request_one_request_one_reply(server):
    assert raw_request(server.address, b"alice:wonderland").startswith(b"OK:")
    assert raw_request(server.address, b"alice:x", half_close=False) == b"KO: wrong username or password"


def test_stop_everything_stops_servers_and_links():
    srv = MailServer().start()
    link = NoisyLink(srv.address).start()
    assert stop_everything() >= 2
    assert not srv.running and not link.running
    assert stop_everything() == 0


def test_parse_2017_splits_at_the_first_hash():
    good = make_frame("0123456789", "count")
    assert parse_2017(good)[2] is True
    content, claimed, ok = parse_2017(make_frame("0123456789", "email", "bob", "s", "room #5"))
    assert content.endswith(b"room ") and claimed.startswith("5#") and ok is False


def test_server_2017_style_says_ko_to_a_hash_in_the_body():
    with Server2017Style(users=USERS) as old:
        alice = MailClient(*old.address)
        alice.login("alice", "wonderland")
        assert alice.send("bob", "plain", "no hash here") == "OK: Email Sent"
        with pytest.raises(RetriesExhausted, match=r"\(KO, KO, KO, KO\)"):
            alice.send("bob", "Room", "Meet in room #5")
        assert all(n <= 1024 for n in old.sizes)


def test_server_2017_style_cuts_a_big_frame():
    with Server2017Style(users=USERS) as old:
        alice = MailClient(*old.address)
        alice.login("alice", "wonderland")
        with pytest.raises(OSError):         # its first 1024 bytes hold no '#': the 2017 server dies
            alice.send("bob", "Long", "x" * 100_000)
        assert max(old.sizes) <= 1024
        assert old.mails == [] and old.crashed is not None


def test_fake_clock_expires_a_session():
    clock = FakeClock()
    with MailServer(store=MailStore(clock=clock), users=USERS) as srv:
        alice = MailClient(*srv.address)
        alice.login("alice", "wonderland")
        assert alice.count() == 0
        clock.advance(31 * 60)
        with pytest.raises(OSError, match="expired"):
            alice.count()


# -- session ids --------------------------------------------------------------


def test_clone_random_predicts_a_mersenne_twister():
    ids = SessionIds2017(seed=123)
    seen = [ids.new_id() for _ in range(624)]
    assert all(len(i) == 10 and i.isdigit() for i in seen)
    clone = clone_random(seen)
    for _ in range(50):
        assert f"{clone.getrandbits(32):010d}" == ids.new_id()


def test_clone_random_cannot_predict_secrets():
    seen = [f"{secrets.randbits(32):010d}" for _ in range(624)]
    clone = clone_random(seen)
    guesses = [f"{clone.getrandbits(32):010d}" for _ in range(5)]
    actual = [f"{secrets.randbits(32):010d}" for _ in range(5)]
    assert guesses != actual


def test_clone_random_needs_624_outputs():
    with pytest.raises(ValueError, match="624"):
        clone_random(["1"] * 10)


def test_untemper_inverts_tempering():
    rng = random.Random(7)
    state = rng.getstate()[1]
    out = rng.getrandbits(32)    # first output after a fresh seed comes from a twisted state
    assert isinstance(out, int) and len(state) == 625
    for y in (0, 1, 0xFFFFFFFF, 0x12345678):
        t = y ^ (y >> 11)
        t ^= (t << 7) & 0x9D2C5680
        t ^= (t << 15) & 0xEFC60000
        t ^= t >> 18
        assert untemper(t & 0xFFFFFFFF) == y


# -- framing ------------------------------------------------------------------


def test_arrival_reads_a_big_frame_in_pieces():
    frame = make_frame("0123456789", "email", "bob", "Long", "x" * 100_000)
    a = arrival(frame)
    assert a.whole and a.data == frame
    assert len(a.pieces) == -(-len(frame) // 1024)
    assert a.complete_after[-1] and not any(a.complete_after[:-1])
    assert f"{len(a.pieces)} recv(1024) calls" in repr(a) and "<svg" in a._repr_svg_()


# -- checksums and retries ----------------------------------------------------


def test_sum_blind_flips_keep_the_sum_and_change_the_sha1():
    frame = make_frame("0123456789", "email", "bob", "Lunch", "Shall we meet at noon?")
    flips = sum_blind_flips(frame, start=27)
    damaged = flip_bits(frame, flips)
    assert damaged != frame and min(b for b, _ in flips) >= 27
    assert simple_sum(damaged) == simple_sum(frame)
    assert checksum(damaged) != checksum(frame)


def test_sum_blind_flips_needs_two_different_bytes():
    with pytest.raises(ValueError):
        sum_blind_flips(b"aaaa")


def test_simulate_delivery_is_seeded_and_near_the_formula():
    rates = [0.0, 0.5, 1.0]
    sim = simulate_delivery(rates, sends=300, seed=1)
    assert sim == simulate_delivery(rates, sends=300, seed=1)
    assert sim[0] == 1.0 and sim[2] == 0.0
    assert abs(sim[1] - analytic_delivery(0.5)) < 0.05
    assert analytic_delivery(0.5, attempts=4) == 0.9375


# -- sequence numbers ---------------------------------------------------------


@pytest.fixture
def seq():
    with SeqServer(users=USERS, idle_timeout=0.3) as srv, NoisyLink(srv.address, seed=5) as link:
        sender = SeqClient(*link.address)
        sender.login("alice", "wonderland")
        yield srv, link, sender


def test_seq_client_survives_a_flipped_ok_without_a_duplicate(seq):
    srv, link, sender = seq
    link.plan_next(reply_flips=[(0, 2), (1, 2)])
    assert sender.send("bob", "Report", "x") == "OK: duplicate, not delivered again [ack 0]"
    assert [m.subject for m in srv.store.messages("bob")] == ["[seq 0] Report"]
    assert srv.duplicates == 1


def test_seq_client_survives_a_ko_read_as_ok(seq):
    srv, link, sender = seq
    link.plan_next(flips=[(30, 0)], reply_flips=[(0, 2), (1, 2)])
    assert sender.send("bob", "Minutes", "x") == "OK: Email Sent [ack 0]"
    assert srv.store.count("bob") == 1


def test_seq_client_survives_a_lost_ok(seq):
    srv, link, sender = seq
    sender.send("bob", "First", "x")
    link.plan_next(drop_reply=True)
    assert sender.send("bob", "Invoice", "x").endswith("[ack 1]")
    assert [m.subject for m in srv.store.messages("bob")] == ["[seq 0] First", "[seq 1] Invoice"]


def test_seq_exactly_once_through_random_noise():
    subjects = [f"Mail {i}" for i in range(1, 13)]
    with SeqServer(users=USERS, idle_timeout=0.3) as srv, \
            NoisyLink(srv.address, rate=0.2, reply_rate=0.2, drop_rate=0.2, seed=7) as link:
        sender = SeqClient(*link.address)
        link.plan_next()
        sender.login("alice", "wonderland")
        for s in subjects:
            sender.send("bob", s, "x")
        t = tally("SeqClient", len(subjects), [m.subject for m in srv.store.messages("bob")])
    assert t.text.endswith("(12 different, 0 duplicate(s), 0 lost)")


def test_seq_server_keeps_plain_commands_working():
    with SeqServer(users=USERS) as srv:
        reply = raw_request(srv.address, b"alice:wonderland").decode()
    text, _, claimed = reply.rpartition("#")          # every reply carries its own checksum
    assert text.startswith("OK:") and claimed == checksum(text.encode())


def test_tally_counts_duplicates_and_losses():
    t = tally("X", 3, ["A", "[seq 0] B", "[seq 0] B"])
    assert repr(t) == "X: meant to send 3, the inbox holds 3 (2 different, 1 duplicate(s), 1 lost)"


# -- self-check questions and pictures ------------------------------------------


def test_quiz_unanswered_right_and_wrong():
    q = quiz("01", None, "B", 3)
    lines = repr(q).split("\n")
    assert lines[0].startswith("· Question 1: not answered yet")
    assert lines[1].startswith("✓ Question 2: right.")
    assert lines[2].startswith("✗ Question 3: not yet (3). Hint:")
    assert lines[3] == "· 1 of 3 right"
    assert "#1a7f37" in q._repr_html_()


@pytest.mark.parametrize("nb, answers", [
    ("01", (b"", "b", 2)), ("02", ("c", "a", False)), ("03", (40, "last", "b")),
    ("04", (0.9375, "b", False)), ("05", ("c", 2, "a")),
])
def test_every_quiz_accepts_its_answers(nb, answers):
    assert repr(quiz(nb, *answers)).endswith(f"{len(answers)} of {len(answers)} right")


def test_quiz_normalises_but_does_not_confuse_types():
    assert "✓" in repr(quiz("03", 40.0, " LAST ", "'b'"))
    assert "✗ Question 1" in repr(quiz("01", "", None, None))          # str is not bytes
    assert "✗ Question 3" in repr(quiz("02", None, None, 0))           # 0 is not False
    with pytest.raises(ValueError):
        quiz("01", None)


@pytest.mark.parametrize("make", [tcp_connection_diagram, threads_diagram,
                                  handshake_diagram, rdt21_diagram])
def test_fixed_diagrams_have_text_and_svg(make):
    d = make()
    assert d.text.count("\n") >= 5 and d.svg.startswith("<svg") and d.svg == make().svg


# -- the package: what notebooks import, and which way the imports point --------

ROOT = Path(__file__).resolve().parent.parent


def test_every_name_a_notebook_imports_from_course_is_exported():
    import mailkit.course

    names = set()
    for path in sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("labs/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                for imported in re.findall(r"from mailkit\.course import ([\w, ]+)", "".join(cell["source"])):
                    names |= {n.strip() for n in imported.split(",")}
    assert {"quiz", "raw_request", "FakeClock", "Server2017Style", "SeqServer"} <= names
    assert names <= set(mailkit.course.__all__)
    assert all(hasattr(mailkit.course, n) for n in mailkit.course.__all__)


def _mailkit_imports(path: Path) -> set[str]:
    """The mailkit modules *path* imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module) if p)
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m == "mailkit" or m.startswith("mailkit.")}


@pytest.mark.parametrize("front_end", ["mailkit/pictures", "mailkit/forms.py", "mailkit/widgets",
                                       "mailkit/trace.py", "mailkit/text.py"])
def test_lower_layers_do_not_import_the_course_or_the_cli(front_end):
    path = ROOT / front_end
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for f in files:
        upward = {m for m in _mailkit_imports(f)
                  if m.split(".")[1:2] and m.split(".")[1] in ("course", "labs", "cli")}
        assert not upward, f"{f.relative_to(ROOT)} imports {sorted(upward)}"


def test_seq_client_logs_in_past_its_mail_timer_and_times_out_mails_with_it():
    # Notebook 07 uses SeqClient(timeout=0.5) against a server that hashes the
    # password with scrypt; on a busy machine the login took longer than 0.5 s
    # and failed.  The login now waits LOGIN_TIMEOUT_S; a mail keeps the timer.
    from mailkit.course.rdt import LOGIN_TIMEOUT_S
    with SeqServer(users=USERS, scrypt_n=16) as srv, NoisyLink(srv.address, seed=5) as link:
        sender = SeqClient(*link.address, timeout=0.1, max_attempts=1)
        assert LOGIN_TIMEOUT_S > 0.6
        link.plan_next(delay=0.6)                     # six mail timers
        assert sender.login("alice", "wonderland")
        link.plan_next(delay=0.6)
        with pytest.raises(ConnectionError, match="no acknowledgement"):
            sender.send("bob", "Late", "x")
        assert sender.transcript[-1].error == "TimeoutError"
