"""Issue 25: hidden checks that no kernel can steer, and a "uses mailkit's
code" flag that sees every route to mailkit's implementation.

Each row of the issue's table is a submission of ordinary code in ordinary
solution cells, graded once (module fixture) by the real ``grade`` with the
sandbox on.  Each scores no more than the stub plus its honest part, or is
flagged with the reason.  Lab 6 (the lab whose hidden checks go through a
link) also gets a decoy-style and a padding-style submission."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from mailkit.labs import release
from mailkit.labs.kitflag import CANNOT_TELL, kit_findings
from test_labs import LABS, _solution, grade_variants, needs_sandbox

L1, L2, L4, L5, L6 = "01-handshake-client", "02-framing", "04-server", "05-no-duplicates", "06-silence"

# -- lab 6: what the hostile senders share ---------------------------------------------

# attempt() with no timer at all: it waits for whatever comes.
BLOCKING_ATTEMPT = '''def attempt(address, request, timeout):
    """One request, one reply: no timer (it waits as long as it takes)."""
    with socket.create_connection(address) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
'''

# TimedSender whose until() sends DECOYS connections through the link before
# each attempt (so that, where a link gives a plan to "the next connection",
# the decoys take every planned loss), with what decoy() returns.
DECOY_SENDER = '''class TimedSender:
    """A sender with no timer that sends decoys before each attempt."""

    def __init__(self, host, port, timeout=0.2, retries=5):
        self.address = (host, port)
        self.timeout, self.retries, self.seq = timeout, retries, None
        self.last = lab.syn("0000000000")

    def decoys(self):
        for _ in range(4):
            try:
                sock = socket.create_connection(self.address)
                sock.sendall(self.decoy())
                sock.shutdown(socket.SHUT_WR)
                sock.close()                  # never waits: a lost one costs nothing
            except OSError:
                pass
        time.sleep(0.05)                      # the link reads them before the real one

    def decoy(self):
        return DECOY

    def send(self, frame):
        if self.seq is None:
            self.until(lab.syn(frame[:10]), "S")
            self.seq = 0
        reply = self.until(lab.add_seq(self.seq, frame), self.seq)
        self.seq = 1 - self.seq
        return reply

    def until(self, request, seq):
        for _ in range(1 + self.retries):
            self.decoys()
            try:
                got, reply = lab.split_reply(attempt(self.address, request, self.timeout))
            except (OSError, ValueError):
                continue
            finally:
                self.last = request
            if got == seq:
                return reply
        self.seq = None
        raise GaveUp("gave up")
'''

# Padding: find the grader's receiver on loopback (/proc/net/tcp of the run's
# namespace: the one listening port, not the link's, that answers a junk
# frame with exactly KO), send every mail straight there (no loss on that
# way), and pad the link's count with junk frames that get KO.
PADDING_SENDER = '''class TimedSender:
    """Sends past the link, straight to the receiver, and pads the link."""

    def __init__(self, host, port, timeout=0.2, retries=5):
        self.link = (host, port)
        self.address = self.find_receiver(host, port) or (host, port)
        self.timeout, self.retries, self.seq = timeout, retries, None

    def find_receiver(self, host, link_port):
        ports = []
        for line in open("/proc/net/tcp").read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and local.startswith("0100007F:"):
                ports.append(int(local.split(":")[1], 16))
        for port in ports:
            if port == link_port:
                continue
            try:
                if attempt((host, port), b"junk", 0.5) == b"KO":
                    return (host, port)
            except OSError:
                pass
        return None

    def pad(self):
        try:
            attempt(self.link, b"junk", 0.5)
        except OSError:
            pass

    def send(self, frame):
        if self.seq is None:
            self.until(lab.syn(frame[:10]), "S")
            self.seq = 0
        reply = self.until(lab.add_seq(self.seq, frame), self.seq)
        self.seq = 1 - self.seq
        return reply

    def until(self, request, seq):
        for _ in range(1 + self.retries):
            self.pad()
            try:
                got, reply = lab.split_reply(attempt(self.address, request, 5.0))
            except (OSError, ValueError):
                continue
            if got == seq:
                return reply
        self.seq = None
        raise GaveUp("gave up")
'''


def decoy_sender(decoy: str) -> str:
    return DECOY_SENDER.replace("return DECOY", f"return {decoy}")


# (lab, the row, {solution cell: code}, score before (the issue's), what must hold)
ROWS = [
    (L1, 'MailClient from vars(sys.modules["mailkit"])',
     {"login": 'def login(host, port, user, password):\n'
               '    import sys\n'
               '    client = vars(sys.modules["mailkit"])["Mail" + "Client"]\n'
               '    return client(host, port).login(user, password)\n'},
     "9/9 (hidden 4/4), not flagged", "flag"),
    (L2, 'importlib.import_module("mailkit." + "protocol") and getattr',
     {"make_frame": 'def make_frame(session_id, command, *fields):\n'
                    '    import importlib\n'
                    '    kit = importlib.import_module("mailkit." + "protocol")\n'
                    '    return getattr(kit, "make_" + "frame")(session_id, command, *fields)\n',
      "parse_frame": 'def parse_frame(data):\n'
                     '    import importlib\n'
                     '    kit = importlib.import_module("mailkit." + "protocol")\n'
                     '    request = getattr(kit, "parse_" + "request")(data)\n'
                     '    return request.session_id, request.command, list(request.fields)\n'},
     "14/14 (hidden 6/6), not flagged", "flag"),
    (L4, "a relay to mailkit's MailServer found by a computed name",
     {"MiniServer": 'class MiniServer:\n'
                    '    """A relay to a server found by a computed name."""\n\n'
                    '    def __init__(self, users):\n'
                    '        import importlib\n'
                    '        module = importlib.import_module(".".join(["mailkit", "server"]))\n'
                    '        self.kit = getattr(module, "Mail" + "Server")(users)\n\n'
                    '    def respond(self, request):\n'
                    '        return self.kit.respond(request)[1].encode("utf-8")\n\n'
                    '    def serve_one(self, conn):\n'
                    '        chunks = []\n'
                    '        while True:\n'
                    '            chunk = conn.recv(65536)\n'
                    '            if not chunk:\n'
                    '                break\n'
                    '            chunks.append(chunk)\n'
                    '        conn.sendall(self.respond(b"".join(chunks)))\n'},
     "18/18 (hidden 9/9), not flagged", "flag"),
    (L5, "from mailkit.labs.silence import Receiver as Deduplicator",
     {"sequenced": "from mailkit.labs.silence import Receiver as Deduplicator\n\n" + _solution(L5, "sequenced")},
     "17/17 (hidden 9/9), not flagged", "flag"),
    (L6, "blocking sender, decoy connections (junk SYNs) before each attempt",
     {"attempt": BLOCKING_ATTEMPT, "TimedSender": decoy_sender('lab.syn("0000000000")')},
     "8/16 (hidden 8/10)", "hidden"),
    (L6, "blocking sender, decoys that resend the previous request",
     {"attempt": BLOCKING_ATTEMPT, "TimedSender": decoy_sender("self.last")},
     "13/16", "hidden"),
    (L6, "straight to the receiver found in /proc/net/tcp, padding the link with KO frames",
     {"TimedSender": PADDING_SENDER},
     "8/16 (hidden 8/10)", "hidden"),
    (L6, "decoys that copy the current request (padding with duplicates), blocking sender",
     {"attempt": BLOCKING_ATTEMPT, "TimedSender": decoy_sender("lab.add_seq(self.seq or 0, self.frame)")
      .replace("    def send(self, frame):\n", "    def send(self, frame):\n        self.frame = frame\n")},
     "(not in the issue)", "hidden"),
    (L6, "a blocking sender with no timeout and nothing else",
     {"attempt": BLOCKING_ATTEMPT},
     "3/16 (delays has no time bound)", "hidden-except-delays"),
]
HIDDEN_CHECKS_6 = {"lost-requests", "lost-replies", "gave-up", "delays"}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release")
    release([LABS], out, check=False)
    return out


# The rows are graded in two batches, so that two workers share them: the
# rows that must be flagged (labs 1-5) here, lab 6's hostile senders with the
# stub and the reference to compare (the slow part: blocking senders wait for
# their budgets) in tests/test_steer_lab6.py.
FLAGGED = [i for i, row in enumerate(ROWS) if row[4] == "flag"]
LAB6 = [i for i, row in enumerate(ROWS) if row[4] != "flag"]


def grade_rows(released, indices: list[int], tmp: Path, *, bench: bool) -> dict:
    """ROWS[i] for i in *indices*, graded together two at a time; with
    *bench*, lab 6's stub and reference too (keys "stub", "reference")."""
    entries = [ROWS[i][:3] for i in indices]
    if bench:
        entries += [(L6, "stub", {"attempt": _stub(released, "attempt"),
                                  "TimedSender": _stub(released, "TimedSender")}),
                    (L6, "reference", {})]
    book = grade_variants(released, entries, tmp)
    results = {i: book.result(f"s{n:02d}", ROWS[i][0]) for n, i in enumerate(indices)}
    if bench:
        results["stub"] = book.result(f"s{len(indices):02d}", L6)
        results["reference"] = book.result(f"s{len(indices) + 1:02d}", L6)
    return results


@pytest.fixture(scope="module")
def steered(released, tmp_path_factory):
    """The rows that must be flagged, graded once, together."""
    return grade_rows(released, FLAGGED, tmp_path_factory.mktemp("steer"), bench=False)


def _stub(released, name: str) -> str:
    from mailkit.labs.notebook import is_solution, solution_name
    nb = nbformat.read(released / f"{L6}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if is_solution(c) and solution_name(c) == name)


def check_row(results: dict, index: int) -> None:
    """ROWS[index] scores no more than the stub plus its honest part, or is flagged."""
    lab_id, what, _, before, expect = ROWS[index]
    result = results[index]
    after = f"{result.points:g}/{result.max_points:g}"
    print(f"| {lab_id[:2]} | {what} | {before} | {after} | {'; '.join(result.flags)[:160] or 'no flag'} |")
    failed = {c.name for c in result.checks if not c.passed}
    if expect == "flag":
        assert any(f.startswith(CANNOT_TELL) or f.startswith("uses mailkit's") for f in result.flags), result.flags
        return
    stub, reference = results["stub"], results["reference"]
    assert reference.points == reference.max_points, reference.feedback()   # the bench judges the honest fairly
    # every hidden check that goes through the link fails, but `delays` (no
    # time budget until its cell gets one: see docs/instructor.md)
    assert HIDDEN_CHECKS_6 - {"delays"} <= failed, (what, failed)
    # what is left is its honest part: the checks that do not go through the link
    honest = sum(c.max_points for c in result.checks if c.name not in HIDDEN_CHECKS_6 - {"delays"})
    assert result.points <= stub.points + honest, (what, after)


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", FLAGGED, ids=[f"{ROWS[i][0]}: {ROWS[i][1]}" for i in FLAGGED])
def test_a_steering_submission_earns_nothing_it_did_not_do_or_is_flagged(steered, index):
    check_row(steered, index)


def test_the_two_batches_grade_every_row_once():
    assert sorted(FLAGGED + LAB6) == list(range(len(ROWS)))
    assert all(ROWS[i][0] == L6 for i in LAB6)


def _exchange(address, request: bytes, timeout: float) -> bytes:
    import socket
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_planned_loss_goes_to_the_mail_under_test_not_to_a_decoy():
    """Item 1: the decoy comes first and gets no planned fault (it is
    answered, and counted as a stray); the mail's own request is the one lost."""
    import socket
    from mailkit.labs.silence import LOSE_REQUEST, SilentBench
    from mailkit.labs.support import add_seq, split_reply, syn
    with SilentBench(hold=60) as bench:
        frame = bench.frame("one")
        assert _exchange(bench.address, syn(frame[:10]), 5.0).startswith(b"S/OK")
        assert bench.strays() == [] and bench.through_the_link()
        bench.plan(LOSE_REQUEST)
        frame = bench.frame("two")
        assert _exchange(bench.address, syn(b"0000000000"), 5.0).startswith(b"S/OK")   # the decoy: answered
        with pytest.raises(socket.timeout):
            _exchange(bench.address, add_seq(0, frame), 0.3)                        # the mail: lost
        assert split_reply(_exchange(bench.address, add_seq(0, frame), 5.0)) == (0, b"OK: Email Sent")
        assert bench.inbox() == ["two"]
        assert bench.strays() == [2] and not bench.through_the_link()
        assert "connections [2] through the link were not the mail under test" in bench.report()


def test_copies_sent_at_once_are_counted_resends_after_a_timer_are_not():
    import socket
    from mailkit.labs.silence import EARLY_S, SPURIOUS_TIMEOUTS, SilentBench
    from mailkit.labs.support import add_seq, syn
    with SilentBench() as bench:
        frame = bench.frame("one")
        _exchange(bench.address, syn(frame[:10]), 5.0)
        _exchange(bench.address, add_seq(0, frame), 5.0)
        time.sleep(EARLY_S * 1.5)                           # a resend after a "timeout": later than EARLY_S
        _exchange(bench.address, add_seq(0, frame), 5.0)
        assert bench.excess() == 0 and bench.through_the_link()
        time.sleep(EARLY_S * 1.5)
        copies = [socket.create_connection(bench.address, timeout=5) for _ in range(4)]
        for sock in copies:                                 # four copies at once, none waiting for a reply
            sock.sendall(add_seq(0, frame))
            sock.shutdown(socket.SHUT_WR)
        for sock in copies:
            with sock:
                sock.recv(100)
        assert bench.excess() > SPURIOUS_TIMEOUTS and not bench.through_the_link()
        assert "sent at once after another, not after a timeout" in bench.report()
        assert bench.inbox() == ["one"]


@pytest.mark.parametrize("source", [
    'import sys\nc = vars(sys.modules["mailkit"])["Mail" + "Client"]',
    'import importlib\nP = importlib.import_module("mailkit." + "protocol")',
    'm = __import__(name)',
    'g = globals()[key]',
    'exec(code)',
    'x = eval("1 + " + s)',
    'f = getattr(module, "make_" + "frame")',
    'import inspect\nf = inspect.currentframe().f_back.f_globals',
])
def test_a_computed_route_says_cannot_tell(source):
    assert any(f.startswith(CANNOT_TELL) for f in kit_findings(source, ["MailClient"])), kit_findings(source, [])


@pytest.mark.parametrize("source, name", [
    ("from mailkit.labs.silence import Receiver as Deduplicator", "Receiver"),
    ('exec("from mailkit.labs.silence import Receiver as D")', "Receiver"),
    ('c = getattr(mk, "MailClient")', "MailClient"),
    ('c = globals()["MailClient"]', "MailClient"),
    ("import mailkit.client as c\nx = c.MailClient", "MailClient"),
])
def test_a_kit_name_is_found_by_any_route(source, name):
    assert f"uses mailkit's {name}" in kit_findings(source, ["MailClient", "Receiver"])


def test_honest_code_is_not_flagged():
    honest = ("import socket, time, hashlib, secrets, threading\n"
              "def f(self, cmd):\n    handler = getattr(self, '_on_' + cmd)\n    return handler()\n"
              "x = {'a': 1}['a']\n"
              "def g():\n    \"\"\"Like mailkit.protocol's MailClient, by hand.\"\"\"\n")
    assert kit_findings(honest, ["MailClient"], ["login"]) == []


def test_every_lab_lists_its_kit_names():
    from mailkit.labs import load_lab
    for path in sorted(LABS.glob("*.ipynb")):
        kit = load_lab(path).nb.metadata.get("mailkit", {}).get("kit", {})
        assert kit.get("names"), path.name
    assert "Receiver" in load_lab(LABS / f"{L5}.ipynb").nb.metadata.mailkit.kit.names
