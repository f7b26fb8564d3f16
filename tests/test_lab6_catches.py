"""Lab 6's two new checks, run here in this process against the lab's own
solution and against the wrong solutions they exist for: a visible check
that catches a sender which keeps its number after GaveUp, and a hidden
check that catches an attempt() whose only timeout is the one on each recv.
(tests/test_labs.py grades the whole lab in the sandbox.)"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mailkit.labs import probe

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "labs" / "06-silence.ipynb"


def cells() -> dict:
    nb = json.loads(LAB.read_text(encoding="utf-8"))
    return {c["id"]: "".join(c["source"]) for c in nb["cells"]}


def namespace(**replace) -> dict:
    """The lab's setup and solution cells run here, with *replace*
    ``{cell id: (old, new)}`` applied to make a wrong solution."""
    ns: dict = {}
    source = cells()
    for cid in ("setup", "solution-attempt", "solution-TimedSender"):
        code = source[cid]
        for old, new in replace.get(cid, []):
            assert old in code, (cid, old)
            code = code.replace(old, new)
        exec(compile(code, cid, "exec"), ns)                  # noqa: S102 - the repository's own lab
    return ns


def run_cell(cid: str, ns: dict, seed: int | None = None) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if seed is None:
            exec(compile(cells()[cid], cid, "exec"), ns)     # noqa: S102
        else:
            probe.run_locally(cells()[cid], ns, seed)
    return out.getvalue()


KEEPS_NUMBER = {"solution-TimedSender": [("        self.seq = None             # carried out or not?",
                                          "        pass                        # carried out or not?")]}
PER_RECV_ONLY = {"solution-attempt": [
    ("            left = deadline - time.monotonic()\n"
     "            if left <= 0:\n"
     "                raise TimeoutError(f\"no whole reply within {timeout} s\")\n"
     "            sock.settimeout(left)\n", "")]}


def test_the_solution_passes_the_visible_check_after_giving_up():
    out = run_cell("check-after-gave-up", namespace())
    assert "GaveUp" in out and "bob has ['mail 0', 'mail 1', 'mail 2']" in out


def test_a_sender_that_keeps_its_number_after_giving_up_fails_it():
    out = run_cell("check-after-gave-up", namespace(**KEEPS_NUMBER))
    # mail 2 goes out with mail 1's number: the receiver takes it for a repeat
    assert "bob has ['mail 0', 'mail 1']" in out
    # ...and the old visible checks did not see it
    assert "bob has ['mail 0']" in run_cell("check-gives-up", namespace(**KEEPS_NUMBER))


@pytest.mark.parametrize("seed", [1, 2])
def test_the_solution_passes_the_whole_reply_deadline(seed):
    out = run_cell("check-whole-reply-deadline", namespace(), seed)
    assert out.count(": True") == 2, out


@pytest.mark.parametrize("seed", [1, 2])
def test_a_timeout_on_each_recv_alone_fails_it(seed):
    out = run_cell("check-whole-reply-deadline", namespace(**PER_RECV_ONLY), seed)
    assert "trickles in past the deadline: TimeoutError: False" in out, out
    assert "within the deadline: returned whole: True" in out


def test_an_attempt_that_always_times_out_fails_it():
    always = {"solution-attempt": [("    deadline = time.monotonic() + timeout\n",
                                    "    raise TimeoutError('never')\n")]}
    out = run_cell("check-whole-reply-deadline", namespace(**always), 1)
    assert "returned whole: False" in out
