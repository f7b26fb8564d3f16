"""Labs 6 and 7: wrong solutions, each graded below full with the check
that catches it named, and solutions that call mailkit's own
implementation of what the lab asks, flagged.  This file grades lab 6's
(but its wrong timers: tests/test_lab6_wrong_timers.py); lab 7's are graded
in tests/test_lab7_wrong.py.

(test_labs.py grades every lab's student version and its pasted-back
solution, and runs every hidden check for 20 drawn inputs: labs 6 and 7
are among them.)
"""

from __future__ import annotations

import pytest

from conftest import wait_for
from mailkit.labs import release
from mailkit.labs.notebook import is_solution, solution_name
from test_lab6_rto import WRONG_TIMERS
from test_labs import LABS, _wrong, grade_variants, needs_sandbox

L6, L7 = "06-silence", "07-read-a-capture"

# The example capture's answers (mailkit.labs.tcp_captures.EXAMPLE_SEED), as a hard-coding student copies them.
HARD_CODED_7 = {
    "initial_sequence_numbers": "def initial_sequence_numbers(path):\n    return 404285457, 2503055453\n",
    "request_segments": "def request_segments(path):\n    return 3\n",
    "closed_first": "def closed_first(path):\n    return 'client'\n",
    "refused_connection": "def refused_connection(path):\n    return 54964, 2051011345\n",
    "announced_mss": "def announced_mss(path):\n    return 1200, 1024\n",
    "handshake_rtt": "def handshake_rtt(path):\n    return 0.021843\n",
    "throughput": "def throughput(path):\n    return 49851.355\n",
}

# Lab 6, hostile: the kernel shares the run's loopback with the grader's
# receiver; it finds it (the port that answers a SYN, other than the link's)
# and sends there, where nothing is lost.  The mail arrives once, in order,
# in time: only the count of what crossed the link gives it away.
BYPASS = """        for other in range(32768, 61000):         # where Linux puts a port-0 listener
            if other == port:
                continue
            try:
                with socket.create_connection((host, other), timeout=0.05) as probe:
                    probe.settimeout(0.2)
                    probe.sendall(lab.syn("0000000000"))
                    probe.shutdown(socket.SHUT_WR)
                    if probe.recv(100) == lab.SYN_REPLY:
                        self.address = (host, other)
                        break
            except OSError:
                continue
"""

# (lab, what is wrong, {solution cell: code}, a check that must fail)
WRONG_67 = [
    (L6, "no timeout: waits for a reply that never comes (until the check's time budget is spent)",
     _wrong(L6, "attempt", ("socket.create_connection(address, timeout=timeout)", "socket.create_connection(address)"),
            ("            sock.settimeout(left)\n", "            sock.settimeout(None)\n")),
     "lost-requests"),
    (L6, "a fixed timeout of 1 s, too long for the check's time budget",
     _wrong(L6, "attempt", ("deadline = time.monotonic() + timeout", "deadline = time.monotonic() + 1.0"),
            ("socket.create_connection(address, timeout=timeout)", "socket.create_connection(address, timeout=1.0)")),
     "lost-requests"),
    (L6, "the sequence number never advances",
     _wrong(L6, "TimedSender", ("        self.seq = 1 - self.seq\n", "")), "lost-requests"),
    (L6, "keeps its number after GaveUp",
     _wrong(L6, "TimedSender", ("        self.seq = None             # carried out or not?",
                                "        pass                        # carried out or not?")),
     "gave-up"),
    (L6, "gives up at the first silence (no resend after a timeout)",
     _wrong(L6, "TimedSender", ("            except TimeoutError:    # silence: the timer expired\n"
                                "                self.back_off()\n"
                                "                continue\n",
                                "            except TimeoutError:    # silence: lost, stop\n"
                                "                break\n")),
     "lost-requests"),
    (L6, "hostile: finds the receiver by a port scan and sends there, past the lossy link",
     _wrong(L6, "TimedSender", ("        self.address = (host, port)\n",
                                "        self.address = (host, port)\n" + BYPASS)),
     "lost-requests"),
    (L6, "a SYN before each resend: the receiver forgets, a lost reply's mail arrives twice",
     _wrong(L6, "TimedSender", ("            except TimeoutError:    # silence: the timer expired\n"
                                "                self.back_off()\n"
                                "                continue\n",
                                "            except TimeoutError:\n"
                                "                self.back_off()\n"
                                "                if seq != \"S\":\n"
                                "                    self.until(lab.syn(request[2:12]), \"S\")   # start again at 0\n"
                                "                continue\n")),
     "lost-replies"),
    # the timer (RFC 6298): tests/test_lab6_rto.py runs drifting-delay against these in this process
    *[(L6, what, _wrong(L6, "TimedSender", *edits), "drifting-delay") for what, edits in WRONG_TIMERS.items()],
    (L7, "ISN + 1 (reads the SYN-ACK's acknowledgement number)",
     _wrong(L7, "initial_sequence_numbers", ("return syn.seq, syn_ack.seq", "return syn_ack.ack, syn_ack.seq")),
     "isns-per-run"),
    (L7, "takes the first SYN, the refused one when it comes first",
     _wrong(L7, "initial_sequence_numbers", ("s.has(SYN) and not s.has(ACK) and s.sport == syn_ack.dport",
                                             "s.has(SYN) and not s.has(ACK)")),
     "isns-per-run"),
    (L7, "counts pure ACKs as data segments",
     _wrong(L7, "request_segments", ("and s.length > 0", "and s.has(ACK)")), "segments-per-run"),
    (L7, "counts the SYN as a data segment",
     _wrong(L7, "request_segments", ("and s.length > 0", "and (s.length > 0 or s.has(SYN))")), "segments-per-run"),
    (L7, "the client always closes first",
     _wrong(L7, "closed_first", ('return "client" if fin.sport == syn_ack.dport else "server"', 'return "client"')),
     "closed-first-per-run"),
    (L7, "the RST's direction confused: its destination port, its ack",
     _wrong(L7, "refused_connection", ("return syn.dport, syn.seq", "return rst.dport, rst.ack")),
     "refused-per-run"),
    (L7, "the MSS the wrong way round",
     _wrong(L7, "announced_mss", ('return dict(syn.options)["MSS"], dict(syn_ack.options)["MSS"]',
                                  'return dict(syn_ack.options)["MSS"], dict(syn.options)["MSS"]')),
     "mss-per-run"),
    (L7, "the example's answers, hard-coded", HARD_CODED_7, "isns-per-run"),
]

# Solutions that call mailkit's own implementation: flagged (name in the flag),
# with the checks that still fail.  mailkit's request_once keeps a timeout per
# recv, not a deadline: lab 6's whole-reply-deadline catches that.
KIT_67 = [
    (L6, {"attempt": "def attempt(address, request, timeout):\n"
                     "    return lab.exchange(*address, request, timeout=timeout)\n"}, "exchange",
     ["whole-reply-deadline"]),
    (L6, _wrong(L6, "TimedSender",
                ("        self.rttvar = None\n",
                 "        self.rttvar = None\n"
                 "        from mailkit.rtt import RttEstimator\n"
                 "        self.est = RttEstimator(min_rto=timeout, rto=timeout)\n"),
                ("        if self.srtt is None:\n"
                 "            self.srtt, self.rttvar = rtt, rtt / 2\n"
                 "        else:\n"
                 "            self.rttvar = 3 / 4 * self.rttvar + 1 / 4 * abs(self.srtt - rtt)   # beta = 1/4, the OLD srtt\n"
                 "            self.srtt = 7 / 8 * self.srtt + 1 / 8 * rtt                         # alpha = 1/8\n"
                 "        self.rto = max(self.timeout, self.srtt + 4 * self.rttvar)               # K = 4 (G is far smaller)\n",
                 "        self.est.update(rtt)\n"
                 "        self.srtt, self.rttvar, self.rto = self.est.srtt, self.est.rttvar, self.est.rto\n"),
                ("        self.rto = 2 * self.rto\n", "        self.rto = self.est.back_off()\n")),
     "RttEstimator", []),
    (L7, {"closed_first": "def closed_first(path):\n"
                          "    from mailkit.pcap import conversations\n"
                          "    return next(c for c in conversations(read_segments(path)) if not c.refused).first_fin\n"},
     "conversations", []),
]


# -- the graded batches ------------------------------------------------------------
#
# WRONG_67 and KIT_67 are graded in three batches, one per file, so that three
# pytest-xdist workers share them (graded together they took 150 s of one
# worker): this file grades lab 6's wrong solutions but its timers, and lab 6's
# KIT_67 rows; tests/test_lab6_wrong_timers.py the timers (drifting-delay);
# tests/test_lab7_wrong.py lab 7's.  Each batch is graded once (a module
# fixture) by the real grader, two notebooks at a time; the checks below are
# the same for every batch.

class Batch:
    """Some rows of WRONG_67 and KIT_67 (by index), graded together."""

    def __init__(self, wrong: list[int], kit: list[int]):
        self.wrong, self.kit = wrong, kit
        self.book = None

    @classmethod
    def of(cls, keep) -> "Batch":
        """The rows (lab, catcher) for which *keep* is true; a kit row's catcher is ``"kit"``."""
        return cls([i for i, (lab, _, _, catcher) in enumerate(WRONG_67) if keep(lab, catcher)],
                   [k for k, (lab, *_) in enumerate(KIT_67) if keep(lab, "kit")])

    def grade(self, tmp_path_factory) -> "Batch":
        entries = [WRONG_67[i] for i in self.wrong] + [(KIT_67[k][0], "kit", KIT_67[k][1], "") for k in self.kit]
        released = tmp_path_factory.mktemp("release")
        release([LABS / f"{lab}.ipynb" for lab in sorted({e[0] for e in entries})], released, check=False)
        self.book = grade_variants(released, entries, tmp_path_factory.mktemp("wrong67"))
        return self

    def wrong_result(self, index: int):
        return self.book.result(f"s{self.wrong.index(index):02d}", WRONG_67[index][0])

    def kit_result(self, index: int):
        return self.book.result(f"s{len(self.wrong) + self.kit.index(index):02d}", KIT_67[index][0])


def wrong_ids(batch: Batch) -> list[str]:
    return [f"{WRONG_67[i][0]}: {WRONG_67[i][1]}" for i in batch.wrong]


def kit_ids(batch: Batch) -> list[str]:
    return [f"{KIT_67[k][0]}: {KIT_67[k][2]}" for k in batch.kit]


def check_wrong(batch: Batch, index: int) -> None:
    """WRONG_67[index] is graded below full, by the check that catches it."""
    _, what, _, catcher = WRONG_67[index]
    result = batch.wrong_result(index)
    assert result.problem == "" and result.notes == [], (what, result.notes)
    failed = [c.name for c in result.checks if not c.passed]
    assert catcher in failed, (what, failed)
    assert result.points < result.max_points


def check_kit(batch: Batch, index: int) -> None:
    """KIT_67[index] is flagged, and fails only the checks KIT_67 names; no
    wrong solution of its batch is flagged."""
    _, _, name, failing = KIT_67[index]
    result = batch.kit_result(index)
    assert any(f"uses mailkit's {name}" in flag for flag in result.flags), result.flags
    # It works (flagged for a person to look at), except where KIT_67 says.
    failed = [c.name for c in result.checks if not c.passed]
    assert failed == failing, failed
    for i in batch.wrong:
        assert batch.wrong_result(i).flags == []


LAB6 = Batch.of(lambda lab, catcher: lab == L6 and catcher != "drifting-delay")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return LAB6.grade(tmp_path_factory)


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", LAB6.wrong, ids=wrong_ids(LAB6))
def test_a_wrong_solution_is_graded_below_full(graded, index):
    check_wrong(graded, index)


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", LAB6.kit, ids=kit_ids(LAB6))
def test_calling_mailkits_own_implementation_is_flagged(graded, index):
    check_kit(graded, index)


def test_the_batches_grade_every_row_once():
    """The three files' batches cover WRONG_67 and KIT_67, each row once."""
    from test_lab6_wrong_timers import TIMERS
    from test_lab7_wrong import LAB7

    batches = (LAB6, TIMERS, LAB7)
    assert sorted(i for b in batches for i in b.wrong) == list(range(len(WRONG_67)))
    assert sorted(k for b in batches for k in b.kit) == list(range(len(KIT_67)))


# -- lab 6's bench, without a kernel --------------------------------------------

def _lab6_namespace(code: dict | None = None) -> dict:
    """Lab 6's setup and solution cells (with *code* in place of some) run here."""
    from mailkit.labs import load_lab
    from mailkit.labs.notebook import is_check
    lab = load_lab(LABS / f"{L6}.ipynb")
    namespace: dict = {}
    for cell in lab.nb.cells:
        if cell.cell_type == "code" and not is_check(cell):
            source = (code or {}).get(solution_name(cell), cell.source) if is_solution(cell) else cell.source
            exec(compile(source, L6, "exec"), namespace)
    return namespace


def test_the_bench_loses_silently_as_planned():
    """LOSE_REQUEST: nothing stored, the client hears nothing (no reply, no
    close) within its timeout; LOSE_REPLY: the mail is stored, the client
    hears nothing; delay(s): the reply comes, late, and the link says so."""
    import socket as sk
    from mailkit.labs.silence import LOSE_REPLY, LOSE_REQUEST, SilentBench, delay
    from mailkit.labs.support import add_seq, split_reply, syn
    ns = _lab6_namespace()
    with SilentBench(hold=60) as bench:         # silent until the bench stops: the client's timer fires first
        frame = bench.frame("one")
        assert ns["attempt"](bench.address, syn(frame[:10]), 5.0).startswith(b"S/OK")
        bench.plan(LOSE_REQUEST, LOSE_REPLY, delay(0.3))
        for expected_inbox in ([], ["one"]):
            with pytest.raises(sk.timeout):
                ns["attempt"](bench.address, add_seq(0, frame), 0.3)
            # the client's timer may expire before the link has handed the
            # request on (a busy machine): a stored mail is waited for
            assert wait_for(lambda: bench.inbox() == expected_inbox, 10), bench.inbox()
        assert split_reply(ns["attempt"](bench.address, add_seq(0, frame), 5.0)) == (0, b"OK: Email Sent")
        assert bench.inbox() == ["one"]                    # the resend was recognised
        events = bench.link.events
        assert [(e.lost_request, e.lost_reply) for e in events] == [(False, False), (True, False), (False, True),
                                                                    (False, False)]
        assert events[-1].delay == 0.3
        assert bench.sequence_numbers() == ["S", 0, 0, 0] and bench.numbering() == ["S", 0]
        assert bench.through_the_link()


def test_a_sender_that_goes_past_the_link_is_refused_and_seen():
    """Issue 25, provenance: the receiver accepts only the link's own
    upstream ports.  A request sent straight to its port (found by a scan,
    or here given) gets no reply, stores nothing, and through_the_link()
    fails with the receiver's note; an honest sender passes."""
    import socket as sk
    from mailkit.labs.silence import LOSE_REQUEST, SilentBench
    from mailkit.labs.support import add_seq, syn
    honest = _lab6_namespace()
    with SilentBench() as bench:
        sender = honest["TimedSender"](*bench.address, timeout=0.2)
        sender.send(bench.frame("a"))
        bench.plan(LOSE_REQUEST)
        sender.send(bench.frame("b"))
        assert bench.inbox() == ["a", "b"] and bench.through_the_link()
        frame = bench.frame("c")
        for request in (syn(frame[:10]), add_seq(0, frame)):
            with sk.create_connection(bench.front.address, timeout=5) as sock:
                sock.sendall(request)
                sock.shutdown(sk.SHUT_WR)
                assert sock.recv(100) == b""                # refused: no reply
        assert bench.inbox() == ["a", "b"] and len(bench.receiver.strangers) == 2
        assert not bench.through_the_link()
        assert "2 connection(s) to the receiver not from the link, refused" in bench.report()


def test_a_timer_budget_grows_as_the_check_plans_losses():
    """bench.budget(TimerBudget) reads the budget as it grows: 0.3 s of slack
    and then three planned losses (0.2 + 0.4 + 0.8 s) keep the link open
    through a 0.6 s silence that 0.3 s alone would have ended."""
    import socket as sk
    from mailkit.labs.silence import LOSE_REQUEST, SilentBench, TimerBudget
    from mailkit.labs.support import add_seq, syn
    ns = _lab6_namespace()
    with SilentBench(hold=60) as bench:
        frame = bench.frame("one")
        assert ns["attempt"](bench.address, syn(frame[:10]), 5.0).startswith(b"S/OK")
        bench.plan(LOSE_REQUEST)
        budget = TimerBudget(0.2, slack=0.3)
        with bench.budget(budget), budget.mail(lost=3):
            with sk.create_connection(bench.address, timeout=0.6) as sock:
                sock.sendall(add_seq(0, frame))
                sock.shutdown(sk.SHUT_WR)
                with pytest.raises(TimeoutError):       # held in silence, the link still open
                    sock.recv(100)
        assert budget.seconds == pytest.approx(1.7) and not bench.spent


def test_a_spent_budget_ends_the_wait_of_a_sender_without_timeout():
    """A check's budget that runs out stops the link: a sender with no timeout,
    held in silence (here for a minute), hears the close at once, and the
    next connection is refused.  A block that ends in time leaves the link be."""
    import socket as sk
    from mailkit.labs.silence import LOSE_REQUEST, SilentBench
    from mailkit.labs.support import add_seq, syn
    ns = _lab6_namespace()
    with SilentBench(hold=60) as bench:
        frame, address = bench.frame("one"), bench.address
        with bench.budget(30):                                  # ends in time: nothing happens
            assert ns["attempt"](bench.address, syn(frame[:10]), 5.0).startswith(b"S/OK")
        assert not bench.spent
        bench.plan(LOSE_REQUEST)
        with bench.budget(0.2):
            with sk.create_connection(bench.address) as sock:  # no timeout: waits until the link closes
                sock.sendall(add_seq(0, frame))
                sock.shutdown(sk.SHUT_WR)
                assert sock.recv(100) == b""
        assert bench.spent and bench.inbox() == []

        def refused() -> bool:
            try:
                sk.create_connection(address, timeout=5).close()
            except ConnectionRefusedError:
                return True
            return False
        assert wait_for(refused)                                # once the link has stopped
