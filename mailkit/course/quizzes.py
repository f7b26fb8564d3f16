"""Self-check questions: each notebook ends with a few, checked by :func:`quiz`."""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..pictures import Shown

__all__ = ["Question", "QUIZZES", "Quiz", "quiz"]


@dataclass(frozen=True)
class Question:
    accepted: tuple                  # the right answers (after normalising)
    explanation: str                 # shown once the answer is right
    hint: str                        # shown when it is not


def _norm(answer):
    if isinstance(answer, bool):
        return ("bool", answer)
    if isinstance(answer, (bytes, bytearray)):
        return ("bytes", bytes(answer))
    if isinstance(answer, (int, float)):
        return ("number", round(float(answer), 6))
    if isinstance(answer, str):
        return ("text", " ".join(answer.strip().strip("'\"").lower().split()))
    return ("other", repr(answer))


QUIZZES: dict[str, list[Question]] = {
    "01": [
        Question((b"",), "recv() returns b'' (no bytes at all) once the other side has "
                 "closed: that is how a reader knows the reply is over.",
                 "What does recv() return at the end of a stream? Try it on the closed socket above."),
        Question(("b",), "A cell runs to the end before the next one can start: a server "
                 "waiting for connections in the cell itself would block the notebook, "
                 "and your client cell would never run.",
                 "Think about what a cell that never finishes does to the cells after it."),
        Question((2,), "One connection per request: the login is one, the email another.",
                 "Count the requests; each gets a connection of its own."),
    ],
    "02": [
        Question(("c",), "The session id is the only proof of who you are in every later "
                 "frame: whoever can guess it can act as you.",
                 "What does a command frame carry instead of your password?"),
        Question(("a",), "random's Mersenne Twister is rebuilt from 624 outputs; secrets "
                 "draws from the operating system's unpredictable source.",
                 "Look again at clone_random: what did it need?"),
        Question((False,), "Each hash has its own random salt, so the same password "
                 "hashes differently for every user (and every time it is set).",
                 "Compare the two hashes of the same password above."),
    ],
    "03": [
        Question((40,), "A SHA-1 is 160 bits: 40 hexadecimal digits.",
                 "Count the characters after the '#', or compute len(checksum(b'x'))."),
        Question(("last", "the last"), "The checksum is always exactly 40 hex digits at the "
                 "end, so the last '#' is the separator and any '#' before it is content.",
                 "Which '#' can never be part of a field?"),
        Question(("b",), "TCP is a byte stream: it keeps no message boundaries, so the "
                 "receiver reads until the frame is complete (or the sender closes).",
                 "Did one recv(1024) return the 100 KB frame?"),
    ],
    "04": [
        Question((0.9375,), "1 - 0.5**4 = 0.9375: all four attempts must fail for the "
                 "mail to be lost, and that happens with probability 0.5**4.",
                 "The mail is lost only if every one of the 4 attempts is corrupted."),
        Question(("b",), "A sum only sees the total; a bit lost in one byte and gained "
                 "in another leaves the total unchanged. SHA-1 changes completely.",
                 "Look at the two flips of the same bit in two bytes above."),
        Question((False,), "Anyone can recompute a SHA-1: it detects accidents, not "
                 "tampering. Against an attacker you need a key (an HMAC) or TLS.",
                 "Does computing SHA-1 need a secret?"),
    ],
    "05": [
        Question(("c",), "The mail was stored before the reply was lost; the client "
                 "could not know, sent again, and the server stored it again.",
                 "Where was the mail when the OK disappeared?"),
        Question((2,), "Two numbers are enough for a stop-and-wait sender: the receiver "
                 "only has to tell 'the next one' from 'the one I already have'.",
                 "How many mails can be unacknowledged at once in stop-and-wait?"),
        Question(("a",), "TCP's checksum and sequence numbers protect the bytes end to end, "
                 "within one connection (each hop's link has its own CRC), "
                 "but a connection that breaks after the server stored the mail leaves the "
                 "client unsure: SMTP can deliver a message twice (RFC 1047).",
                 "Can TCP know whether the server stored the mail before the connection broke?"),
    ],
    "07": [
        Question(("b",), "Nothing arrives, so only the sender's own timer can notice: "
                 "silence looks the same whether the request, the reply, or just time was lost.",
                 "What does a client that waits on recv() see when a request is lost silently?"),
        Question((1, 1.0), "RFC 6298 (2.4): a smaller RTO SHOULD be rounded up to 1 second (Linux uses 200 ms); "
                 "SRTT + 4·RTTVAR alone would be far smaller on a fast path.",
                 "Look at the RFC line of the RTT plot: where does it never go below?"),
        Question(("c",), "Go-Back-N sends every unacknowledged packet again after one loss, "
                 "so a bigger window wastes more; Selective Repeat resends only the lost one.",
                 "Count the sends of GBN and SR at the same loss in the form above."),
    ],
    "08": [
        Question(("a",), "The side that sends the first FIN (the active close) waits in "
                 "TIME_WAIT; the other side's socket is gone as soon as its own FIN is "
                 "acknowledged. In a mailkit login that is the client; when a server's reply "
                 "overtakes the client's FIN, it is the server.",
                 "After the login in section 5, whose end of the connection was in TIME_WAIT, "
                 "and whose FIN came first?"),
        Question((1,), "The SYN uses one sequence number: the server acknowledges ISN + 1, "
                 "relative 1, though no data byte has come yet.",
                 "How much sequence space does a SYN use?"),
        Question(("b",), "A SYN to a port where nobody listens is answered at once by a RST "
                 "(RFC 9293 section 3.10.7.1): connect() raises ConnectionRefusedError.",
                 "Look at the last connection of the capture."),
    ],
    "09": [
        Question(("b",), "A zero window stops the data, not the connection: the sender's persist "
                 "timer sends a zero-window probe now and then, each after a longer wait "
                 "(RFC 9293 3.8.6.1, RFC 1122 4.2.2.17), until an ACK opens the window.",
                 "Look at what TCP_INFO said while the receiver did not read: segments went out."),
        Question((10, 10.0), "ssthresh = max(FlightSize/2, 2 segments) (RFC 5681 eq. 4): 20/2 = 10; "
                 "cwnd becomes 10 + 3 during fast recovery, and 10 when a new ACK ends it.",
                 "RFC 5681 eq. (4) halves what is in flight."),
        Question((1, 1.0), "After a timeout cwnd is the loss window, one segment (RFC 5681 3.1), "
                 "and slow start begins again up to the new ssthresh.",
                 "A timeout says more than three duplicate ACKs: nothing is getting through."),
        Question(("b",), "Linux's default is CUBIC (RFC 9438); Reno is what the simulation runs, "
                 "and BBR is what this machine may be set to (notebook 08 showed it).",
                 "Read the section on what Linux runs."),
        Question(("b",), "Nagle (RFC 896; RFC 1122 4.2.3.4) holds the second small write until the "
                 "first is acknowledged, and the server, with half a request and nothing to "
                 "reply, delays that ACK (RFC 1122 4.2.3.2; Linux's TCP_DELACK_MIN is 40 ms). "
                 "One write, or TCP_NODELAY, removes the wait.",
                 "Section 2 timed exactly this exchange: what held the second write back, and "
                 "what was the other side waiting for?"),
        Question((0.8, "0.8", "4/5"), "(30 + 10)^2 / (2 * (30^2 + 10^2)) = 1600 / 2000 = 0.8: between "
                 "1/2 (one sender gets everything) and 1 (equal shares).",
                 "Jain's index is (sum of x)^2 / (n * sum of x^2); here n = 2."),
    ],
}


@dataclass(repr=False)
class Quiz(Shown):
    """The result of checking a notebook's self-check answers."""

    lines: list[tuple[str, str]]      # (mark, text)

    @property
    def text(self) -> str:
        return "\n".join(f"{mark} {text}" for mark, text in self.lines)

    def _repr_html_(self) -> str:
        colour = {"✓": "#1a7f37", "✗": "#b91c1c", "·": "#6b7280"}
        rows = "".join(
            f'<div style="color:{colour[m]}"><b>{m}</b> {html.escape(t)}</div>' for m, t in self.lines
        )
        return f'<div style="font-family:sans-serif;line-height:1.5">{rows}</div>'


def quiz(notebook: str, *answers) -> Quiz:
    """Check the answers to a notebook's self-check questions.

    An answer left as ``None`` is "not answered yet"; a right one shows why
    it is right; a wrong one gets a hint (never the answer)."""
    questions = QUIZZES[notebook]
    if len(answers) != len(questions):
        raise ValueError(f"notebook {notebook} has {len(questions)} questions, got {len(answers)} answers")
    lines = []
    for i, (q, answer) in enumerate(zip(questions, answers), 1):
        if answer is None:
            lines.append(("·", f"Question {i}: not answered yet (set answer_{i} above, then run this cell again)"))
        elif _norm(answer) in {_norm(a) for a in q.accepted}:
            lines.append(("✓", f"Question {i}: right. {q.explanation}"))
        else:
            lines.append(("✗", f"Question {i}: not yet ({answer!r}). Hint: {q.hint}"))
    done = sum(m == "✓" for m, _ in lines)
    lines.append(("·", f"{done} of {len(questions)} right"))
    return Quiz(lines)
