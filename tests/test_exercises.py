"""The "your turn" checks: a right solution passes, the stub the notebook
ships and plausible wrong solutions do not (and the stub's line is fixed)."""

from __future__ import annotations

import random
import secrets
import threading

import pytest

from mailkit import checksum
from mailkit.course import exercises as X


def stub(*args):
    raise NotImplementedError("your turn")


def assert_stub(verdict):
    """The unanswered state: one fixed line, and no hint before an attempt."""
    assert not verdict and verdict.stub
    assert verdict.text == "· " + X.NOT_ANSWERED
    assert "Hint" not in verdict.text


def assert_wrong(verdict, *words):
    assert not verdict and not verdict.stub, verdict.text
    assert verdict.text.startswith("✗ not yet: ") and "Hint:" in verdict.text
    for w in words:
        assert w in verdict.text, verdict.text


# -- 01 ---------------------------------------------------------------------

def recv_all(sock):
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_recv_all():
    assert X.check_recv_all(recv_all).right
    assert_stub(X.check_recv_all(stub))
    assert_wrong(X.check_recv_all(lambda sock: sock.recv(65536)), "pieces")
    assert_wrong(X.check_recv_all(lambda sock: None), "None")


def test_dispatch():
    def right(conn, handle):
        threading.Thread(target=handle, args=(conn,), daemon=True).start()

    def run_not_start(conn, handle):
        threading.Thread(target=handle, args=(conn,)).run()

    assert X.check_dispatch(right).right
    assert_stub(X.check_dispatch(stub))
    assert_wrong(X.check_dispatch(run_not_start), "0 of 3")
    assert_wrong(X.check_dispatch(lambda conn, handle: handle(conn)), "0 of 3")
    assert_wrong(X.check_dispatch(lambda conn, handle: 1 / 0), "ZeroDivisionError")


# -- 02 ---------------------------------------------------------------------

def parse_login_reply(reply):
    head, _, sid = reply.decode("utf-8", "replace").partition(":")
    return sid if head == "OK" and len(sid) == 10 and sid.isdigit() else None


def test_parse_login_reply():
    assert X.check_parse_login_reply(parse_login_reply).right
    assert_stub(X.check_parse_login_reply(stub))
    assert_wrong(X.check_parse_login_reply(lambda r: r.decode().split(":")[1]), "IndexError")
    assert_wrong(X.check_parse_login_reply(lambda r: r.decode()[3:] if r.startswith(b"OK") else None),
                 "b'OK:12ab'")


def test_new_session_id():
    assert X.check_new_session_id(lambda: f"{secrets.randbelow(10**10):010d}").right
    assert_stub(X.check_new_session_id(stub))
    assert_wrong(X.check_new_session_id(lambda: f"{random.randrange(10**10):010d}"), "random module")
    assert_wrong(X.check_new_session_id(lambda: str(secrets.randbelow(10**10))), "ten digits")
    assert_wrong(X.check_new_session_id(lambda: secrets.randbelow(10**10)), "str")


# -- 03 ---------------------------------------------------------------------

def test_split_frame():
    assert X.check_split_frame(lambda f: (f.rpartition(b"#")[0], f.rpartition(b"#")[2])).right
    assert X.check_split_frame(lambda f: (f[:-41], f[-40:].decode())).right
    assert_stub(X.check_split_frame(stub))
    assert_wrong(X.check_split_frame(lambda f: (f.partition(b"#")[0], f.partition(b"#")[2])), "Which '#' separates them?")


def read_frame(sock):
    data = b""
    while True:
        data += sock.recv(4096)
        content, sep, claimed = data.rpartition(b"#")
        if sep and checksum(content) == claimed.decode("ascii", "replace"):
            return data


def test_read_frame():
    assert X.check_read_frame(read_frame).right
    assert_stub(X.check_read_frame(stub))
    assert_wrong(X.check_read_frame(recv_all), "timed out")          # waits for a close that never comes
    assert_wrong(X.check_read_frame(lambda sock: sock.recv(1024)), "3 pieces")

    def forty_after_hash(sock):                  # checks the length, not the SHA-1
        data = b""
        while True:
            data += sock.recv(4096)
            if len(data.rpartition(b"#")[2]) == 40:
                return data
    assert_wrong(X.check_read_frame(forty_after_hash), "40 zeros")


# -- 04 ---------------------------------------------------------------------

def internet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(data[i] << 8 | data[i + 1] for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_internet_checksum():
    assert X.check_internet_checksum(internet_checksum).right
    assert_stub(X.check_internet_checksum(stub))
    assert_wrong(X.check_internet_checksum(lambda d: sum(d) % 65536), "16-bit words")
    assert_wrong(X.check_internet_checksum(lambda d: ~internet_checksum(d) & 0xFFFF), "complement")

    def no_fold(data):
        if len(data) % 2:
            data += b"\0"
        return ~sum(data[i] << 8 | data[i + 1] for i in range(0, len(data), 2)) & 0xFFFF
    assert_wrong(X.check_internet_checksum(no_fold), "carry")
    assert_wrong(X.check_internet_checksum(lambda d: None), "as an int")
    assert_wrong(X.check_internet_checksum(lambda d: internet_checksum(d[:len(d) // 2 * 2])), "odd length")


def blind_flips(data):
    for bit in range(8):
        for i in range(len(data)):
            for j in range(i + 2, len(data), 2):
                if (data[i] >> bit & 1) != (data[j] >> bit & 1):
                    return (i, bit), (j, bit)


def test_blind_flips():
    assert X.check_blind_flips(blind_flips).right
    assert_stub(X.check_blind_flips(stub))

    def adjacent(data):                          # the byte sum's blind spot
        for i in range(len(data) - 1):
            if (data[i] & 1) != (data[i + 1] & 1):
                return (i, 0), (i + 1, 0)
    assert_wrong(X.check_blind_flips(adjacent), "change the Internet checksum")
    assert_wrong(X.check_blind_flips(lambda d: ((0, 1), (0, 1))), "unchanged")
    assert_wrong(X.check_blind_flips(lambda d: None), "two pairs")


# -- 05 ---------------------------------------------------------------------

def test_receiver():
    def right(expected, seq):
        return (True, seq, 1 - expected) if seq == expected else (False, seq, expected)

    assert X.check_receiver(right).right
    assert_stub(X.check_receiver(stub))
    assert_wrong(X.check_receiver(lambda e, s: (True, s, 1 - s)), "(deliver, ack, next_expected)")
    assert_wrong(X.check_receiver(lambda e, s: (s == e, e, 1 - e if s == e else e)), "acknowledge")


def test_sender():
    def right(seq, reply):
        return "next" if reply is not None and reply.endswith(f"[ack {seq}]") else "resend"

    assert X.check_sender(right).right
    assert_stub(X.check_sender(stub))
    assert_wrong(X.check_sender(lambda s, r: "next" if r and r.startswith("OK") else "resend"), "[ack 1]")


@pytest.mark.parametrize("check", [X.check_recv_all, X.check_parse_login_reply, X.check_split_frame,
                                   X.check_read_frame, X.check_internet_checksum, X.check_blind_flips,
                                   X.check_receiver, X.check_sender, X.check_new_session_id,
                                   X.check_dispatch])
def test_the_stub_line_is_the_same_every_time(check):
    assert check(stub).text == check(stub).text


@pytest.mark.parametrize("number", ["01", "02", "03", "04", "05"])
def test_every_course_notebook_ships_two_unsolved_exercises_with_checks(number):
    """Each 'your turn' stub is followed by a check cell whose committed
    output is the fixed 'not yet' line of an unsolved exercise."""
    import json
    from pathlib import Path

    (path,) = (Path(__file__).resolve().parent.parent / "notebooks").glob(f"{number}-*.ipynb")
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    found = 0
    for stub, check in zip(cells, cells[1:]):
        if 'raise NotImplementedError("your turn")' not in "".join(stub["source"]):
            continue
        assert "check_" in "".join(check["source"]), "".join(check["source"])
        shown = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in check["outputs"])
        assert shown == "· " + X.NOT_ANSWERED, shown
        found += 1
    assert found >= 2


# -- 07 ---------------------------------------------------------------------

def rto_update(srtt, rttvar, r):
    rttvar = 3 / 4 * rttvar + 1 / 4 * abs(srtt - r)
    srtt = 7 / 8 * srtt + 1 / 8 * r
    return srtt, rttvar, max(1.0, srtt + 4 * rttvar)


def test_rto_update():
    assert X.check_rto_update(rto_update).right
    assert_stub(X.check_rto_update(stub))

    def new_srtt_first(srtt, rttvar, r):
        srtt = 7 / 8 * srtt + 1 / 8 * r
        rttvar = 3 / 4 * rttvar + 1 / 4 * abs(srtt - r)
        return srtt, rttvar, max(1.0, srtt + 4 * rttvar)
    assert_wrong(X.check_rto_update(new_srtt_first), "NEW SRTT")

    def no_floor(srtt, rttvar, r):
        s, v, _ = rto_update(srtt, rttvar, r)
        return s, v, s + 4 * v
    assert_wrong(X.check_rto_update(no_floor), "rounds it up to 1 s")

    def swapped_weights(srtt, rttvar, r):
        rttvar = 7 / 8 * rttvar + 1 / 8 * abs(srtt - r)
        srtt = 3 / 4 * srtt + 1 / 4 * r
        return srtt, rttvar, max(1.0, srtt + 4 * rttvar)
    assert_wrong(X.check_rto_update(swapped_weights), "alpha is 1/8")
    assert_wrong(X.check_rto_update(lambda s, v, r: None), "three numbers")


def utilisation(bits, rate, rtt, window):
    t = bits / rate
    return min(1.0, window * t / (rtt + t))


def test_utilisation():
    assert X.check_utilisation(utilisation).right
    assert_stub(X.check_utilisation(stub))
    assert_wrong(X.check_utilisation(lambda L, R, rtt, N: N * (L / R) / (rtt + L / R)), "cannot exceed 1")
    assert_wrong(X.check_utilisation(lambda L, R, rtt, N: min(1.0, N * (L / R) / rtt) if rtt else 1.0),
                 "RTT + L/R")
    assert_wrong(X.check_utilisation(lambda L, R, rtt, N: min(1.0, N * (L * 8 / R) / (rtt + L * 8 / R))),
                 "units")
    assert_wrong(X.check_utilisation(lambda L, R, rtt, N: "1/6"), "a number")


@pytest.mark.parametrize("check", [X.check_rto_update, X.check_utilisation])
def test_the_stub_line_is_the_same_every_time_07(check):
    assert check(stub).text == check(stub).text


# -- hints are earned, and point the way --------------------------------------

# What each hint must not contain: the answer (or the one call that is it).
ANSWERS = {
    "recv_all": ["while", "loop until"],
    "dispatch": ["Thread(target", ".start()"],
    "new_session_id": ["randbelow", "token_", "010d"],
    "split_frame": ["rpartition", "LAST '#'", "last 40"],
    "internet_checksum": ["~", "0xFFFF", "* 256", "<< 8"],
    "blind_flips": ["EVEN distance", "1->0", "256 x"],
    "receiver": ["expect the other", "acknowledge the number that CAME"],
    "sender": ["[ack n]", "'next'", "\"next\""],
    "rto_update": ["7/8", "3/4", "1/8", "1/4", "max(1"],
    "utilisation": ["N·L/R", "min(1", "bits / rate", "RTT + L/R"],
}


def test_every_check_has_a_hint_and_none_is_the_answer():
    checks = {name[len("check_"):] for name in X.__all__ if name.startswith("check_")}
    assert checks <= set(X.HINTS)
    for name, hint in X.HINTS.items():
        for answer in ANSWERS.get(name, []):
            assert answer not in hint, (name, answer)


def test_the_hint_comes_only_after_a_wrong_attempt():
    assert "Hint" not in X.check_rto_update(stub).text
    wrong = X.check_rto_update(lambda srtt, rttvar, r: (srtt, rttvar, 1.0))
    assert wrong.text.endswith("Hint: " + X.HINTS["rto_update"])


def test_no_committed_notebook_shows_a_hint_before_an_attempt():
    import json
    from pathlib import Path
    for path in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))
                assert "Hint" not in text, (path.name, text[:200])
