"""Sequence numbers, the rdt2.1 idea (notebook 05) -- a demonstration.

:class:`SeqServer` and :class:`SeqClient` add sequence numbers on top of the
unchanged protocol; :func:`send_all` and :func:`tally` count what a sender
meant to send against what arrived.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .. import protocol as P
from ..client import request_once
from ..pictures import Shown
from ..responder import MailResponder, reply_text
from ..server import REPLIES, MailServer
from ..trace import Exchange, Transcript

__all__ = ["SEQ_TAG", "SeqServer", "SeqClient", "send_all", "Tally", "tally"]


SEQ_TAG = "[seq {}] "
# How long SeqClient waits for its login's reply, whatever its mail timer:
# scrypt on a busy class server can take longer than a timer tuned for mails.
LOGIN_TIMEOUT_S = 5.0


def _with_checksum(text: str) -> str:
    return f"{text}#{P.checksum(text.encode('utf-8'))}"


def _verified(reply: bytes) -> str | None:
    """The text of a reply that carries a valid checksum, else ``None``."""
    text, sep, claimed = reply.decode("utf-8", "replace").rpartition("#")
    return text if sep and P.checksum(text.encode("utf-8")) == claimed else None


class SeqServer(MailServer):
    """A DEMONSTRATION of rdt2.1's receiver on top of the mail protocol (the
    protocol itself is unchanged; this server only adds to it):

    * an ``email`` whose subject starts with ``[seq 0]`` or ``[seq 1]`` is
      delivered only if that is the sequence number it expects from that
      sender; a repeat (same number again) is acknowledged again but NOT
      delivered twice;
    * every reply carries its own checksum (``#`` and a SHA-1, like a
      frame), so a flipped reply can be detected by the client.
    """

    class Responder(MailResponder):
        """rdt2.1's receiver: sequence numbers on emails, checksums on replies."""

        def __init__(self, store):
            super().__init__(store)
            self.expected: dict[str, int] = {}       # sender -> seq expected next
            self.duplicates = 0
            self._lock = threading.Lock()            # guards expected and duplicates

        def respond(self, data: bytes, peer=None) -> tuple[str, str]:
            what, reply = self._respond(data, peer)
            return what, _with_checksum(reply)

        def _plain(self, data: bytes, peer) -> tuple[str, str]:
            what, reply = super().respond(data, peer)
            return what, reply_text(reply)          # an email's reply: once it is on disk

        def _respond(self, data: bytes, peer) -> tuple[str, str]:
            try:
                request = P.parse_request(data)
            except P.ProtocolError:
                return self._plain(data, peer)
            if isinstance(request, P.Command) and request.name == "email":
                subject = request.fields[1]
                for seq in (0, 1):
                    if subject.startswith(SEQ_TAG.format(seq)):
                        return self._email_with_seq(request, seq, data, peer)
            return self._plain(data, peer)

        def _email_with_seq(self, request: P.Command, seq: int, data: bytes, peer) -> tuple[str, str]:
            try:
                user = self.store.session_user(request.session_id)
            except Exception:
                return self._plain(data, peer)
            with self._lock:
                expected = self.expected.get(user, 0)
                duplicate = seq != expected
                if duplicate:
                    self.duplicates += 1
                else:
                    self.expected[user] = 1 - expected
            if duplicate:
                return f"{user} email seq {seq} (duplicate)", f"OK: duplicate, not delivered again [ack {seq}]"
            what, reply = self._plain(data, peer)
            if reply != REPLIES.EMAIL_SENT:          # not delivered: expect the same seq again
                with self._lock:
                    self.expected[user] = expected
                return what, reply
            return what, f"{reply} [ack {seq}]"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.responder = self.Responder(self.store)
        self.emails_in_loop = False      # its respond() waits for an email's commit

    @property
    def expected(self) -> dict[str, int]:
        return self.responder.expected

    @property
    def duplicates(self) -> int:
        return self.responder.duplicates


class SeqClient:
    """A DEMONSTRATION of rdt2.1's sender for :class:`SeqServer`: it tags
    each mail's subject with an alternating sequence number (0, 1, 0, ...),
    and sends the same frame again until a reply arrives whose checksum
    verifies and which acknowledges that number.  A corrupted reply, a
    ``KO`` or a lost reply all lead to the same move: send again.

    Like rdt2.1's sender it does not give up: *max_attempts* is only a
    safety net.  (A sender that gave up and went on with the next number
    would fall out of step with the receiver, which would then take the
    next mail for a duplicate.)

    ``.transcript`` records every attempt, as :class:`~mailkit.client.MailClient` does.
    """

    def __init__(self, host: str, port: int, *, max_attempts: int = 100, timeout: float = 5.0):
        self.address = (host, port)
        self.max_attempts, self.timeout = max_attempts, timeout
        self.seq = 0
        self.session_id: str | None = None
        self.transcript = Transcript()

    def login(self, user: str, password: str) -> str:
        try:
            # The login waits longer than the mail timer: the server checks the
            # password with a deliberately slow hash (scrypt), which a loaded
            # machine can stretch past a timer that is set for mails.
            reply = self._exchange("login", P.make_handshake(user, password), 1,
                                   timeout=max(self.timeout, LOGIN_TIMEOUT_S))
        except OSError as exc:
            raise ConnectionError(f"login failed: {exc}") from None
        text = _verified(reply) or ""
        if not text.startswith("OK:"):
            raise ConnectionError(f"login failed: {reply!r}")
        self.session_id = text[3:].strip()
        return self.session_id

    def send(self, recipient: str, subject: str, body: str) -> str:
        """Send one mail, exactly once; return the verified reply text."""
        frame = P.make_frame(self.session_id, "email", recipient, SEQ_TAG.format(self.seq) + subject, body)
        for attempt in range(1, self.max_attempts + 1):
            try:
                reply = self._exchange("email", frame, attempt)
            except OSError:
                continue                                   # lost: send again
            text = _verified(reply)
            if text is None or text == REPLIES.KO:
                continue                                   # corrupted, or KO: send again
            if text.endswith(f"[ack {self.seq}]"):
                self.seq = 1 - self.seq                    # the next mail gets the other number
                return text
            if text.startswith("ERROR"):
                raise P.RemoteProtocolError(text)
        raise ConnectionError(f"no acknowledgement after {self.max_attempts} attempts")

    def _exchange(self, command: str, data: bytes, attempt: int, *, timeout: float | None = None) -> bytes:
        exchange = Exchange(command, attempt, data, data)
        self.transcript.append(exchange)
        try:
            exchange.reply = request_once(self.address, data, timeout=timeout or self.timeout)
        except OSError as exc:
            exchange.error = type(exc).__name__
            raise
        if not exchange.reply:
            exchange.error = "closed without a reply"
            raise ConnectionError("closed without a reply")
        return exchange.reply


def send_all(client, recipient: str, subjects: list[str]) -> None:
    """Send one mail per subject; print how many the client *believes* it
    sent (an exception counts as "not sent", as a user would read it)."""
    believed = 0
    for subject in subjects:
        try:
            client.send(recipient, subject, f"This is {subject.lower()}.")
            believed += 1
        except Exception:
            pass
    print(f"{type(client).__name__} believes it sent {believed} of {len(subjects)} mails")


@dataclass(repr=False)
class Tally(Shown):
    """How many mails a sender meant to send, and how many the recipient got."""

    who: str
    meant: int
    received: list[str]

    @property
    def text(self) -> str:
        distinct = len(set(self.received))
        duplicates = len(self.received) - distinct
        lost = self.meant - distinct
        return (f"{self.who}: meant to send {self.meant}, the inbox holds {len(self.received)} "
                f"({distinct} different, {duplicates} duplicate(s), {lost} lost)")


def tally(who: str, meant: int, subjects: list[str]) -> Tally:
    """Compare the mails meant with the subjects that arrived (the ``[seq n]``
    tag is ignored, so a duplicate shows as one)."""
    clean = [s.split("] ", 1)[1] if s.startswith("[seq ") else s for s in subjects]
    return Tally(who, meant, clean)
