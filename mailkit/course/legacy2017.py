"""The 2017 client and server, as they really behaved on the wire.

mailkit must work with the programs students wrote in 2017 to the course
specification.  These two doubles model them exactly (see the last section
of PROTOCOL.md, "How the real 2017 code behaves on the wire"), warts and
all, so that a test or a notebook that talks to them proves interop:

:class:`Client2017`
    a new connection per command; the request goes out in one ``send``
    with no terminator and no half-close; the reply is ONE ``recv(1024)``
    (the first bytes, not "everything until the close"); after a reply of
    exactly ``KO`` it sends the same frame again **on the same socket**,
    once, and reads one more ``recv(1024)``; then it closes.

:class:`Server2017`
    one session at a time, one thread: it keeps the login connection open
    until ``logoff``; it reads each command with one ``recv(1024)`` on a new
    connection, replies, and leaves that connection open until it accepts
    the next one; it splits the checksum off at the FIRST ``#``; it answers
    exactly ``KO`` to a bad checksum, a wrong session id and an unknown
    command; its reply texts are the 2017 ones, spelling included; and it
    *crashes* when a request without ``#`` (a login line) arrives during a
    session (:attr:`Server2017.crashed`).

:func:`parse_2017` (from :mod:`mailkit.protocol`) splits a frame the 2017
way, for the notebooks and forms.  ``Server2017Style`` is another name for
:class:`Server2017` (notebook 03): the 2017 habits put back on purpose, to
watch them fail; mailkit's :class:`~mailkit.server.MailServer` has none.

Standard library and :mod:`mailkit.protocol` only.
"""

from __future__ import annotations

import hashlib
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass

from .. import protocol as P
from ..protocol import parse_2017

__all__ = ["Client2017", "Server2017", "Server2017Style", "Mail2017", "parse_2017", "sha1"]

log = logging.getLogger("mailkit.legacy2017")

RECV_SIZE = 1024          # the 2017 code's one recv(1024), on both sides
CLIENT_TIMEOUT_S = 5.0    # the 2017 client waited forever; a test must not
POLL_S = 0.05             # how often the server's thread looks at stop()


def sha1(text: str) -> str:
    """The 2017 checksum: lowercase hex SHA-1 of the UTF-8 text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------
# The client


class Client2017:
    """The 2017 client.  Every method returns the reply text as the 2017
    client printed it (``""`` if the server closed without a word).

    ``sent`` keeps every request as it went out (a resend appears twice),
    ``replies`` every ``recv(1024)`` it took.  *timeout* is the one liberty
    taken: the real client waited forever; this one raises ``TimeoutError``.
    Other socket errors propagate too (the real client crashed on them).
    """

    def __init__(self, host: str, port: int, *, timeout: float = CLIENT_TIMEOUT_S):
        self.address = (host, port)
        self.timeout = timeout
        self.session_id = ""
        self.sent: list[bytes] = []
        self.replies: list[str] = []

    def __repr__(self) -> str:
        return f"<Client2017 {self.address[0]}:{self.address[1]}, session {self.session_id or '-'}>"

    def _send(self, sock: socket.socket, data: bytes) -> None:
        self.sent.append(data)
        sock.sendall(data)            # one send of the whole request, no terminator

    def _recv(self, sock: socket.socket) -> str:
        reply = sock.recv(RECV_SIZE).decode("utf-8", "replace")
        self.replies.append(reply)
        return reply

    def login(self, user: str, password: str) -> str:
        """``USER:PW`` on its own connection; keep the session id if the part
        before the first ``:`` is ``OK``."""
        with socket.create_connection(self.address, timeout=self.timeout) as sock:
            self._send(sock, f"{user}:{password}".encode("utf-8"))
            reply = self._recv(sock)
        parts = reply.split(":")
        if "OK" in parts[0]:
            self.session_id = parts[1] if len(parts) > 1 else ""
        return reply

    def frame(self, name: str, *fields: str) -> bytes:
        """The frame as the 2017 client built it: fields joined by ``:``,
        nothing escaped, ``#`` and the SHA-1 of the content."""
        content = ":".join([self.session_id, name, *fields])
        return f"{content}#{sha1(content)}".encode("utf-8")

    def command(self, name: str, *fields: str) -> str:
        return self.send_frame(self.frame(name, *fields))

    def send_frame(self, data: bytes) -> str:
        """Send *data* on a new connection; after exactly ``KO``, send it
        once more on the same socket; return the last reply."""
        with socket.create_connection(self.address, timeout=self.timeout) as sock:
            self._send(sock, data)
            reply = self._recv(sock)
            if reply == "KO":
                self._send(sock, data)
                reply = self._recv(sock)
        return reply

    # The 2017 menu, one method per command.
    def email(self, recipient: str, subject: str, body: str) -> str:
        return self.command("email", recipient, subject, body)

    def getmsg(self, sender: str) -> str:
        return self.command("getmsg", sender)

    def count(self) -> str:
        return self.command("count")

    def delmsg(self, sender: str, subject: str) -> str:
        return self.command("delmsg", sender, subject)

    def dump(self) -> str:
        return self.command("dump")

    def help(self) -> str:
        return self.command("help")

    def logoff(self) -> str:
        return self.command("logoff")


# --------------------------------------------------------------------------
# The server


@dataclass
class Mail2017:
    """One mail as the 2017 server kept it (in a list, in memory)."""

    recipient: str
    sender: str
    subject: str
    body: str
    date: str          # time.strftime("%c") when it arrived


class _Crash(Exception):
    """What brought the real 2017 server down (the exception it died of)."""


class _Stopped(Exception):
    pass


HELP_2017 = (
    "\nCommands: \n"
    "email:RECIPIENT:SUBJECT:BODY\n"
    "getmsg:SENDER\n"
    "count\n"
    "delmsg:SENDER:SUBJECT\n"
    "dump\n"
    "logoff\n"
    "help\n"
)


class Server2017:
    """The 2017 server on 127.0.0.1 (port 0: a free port), serving one
    session at a time from one background thread.

    ``with Server2017({"alice": "wonderland"}) as old:`` starts it,
    ``old.address`` is where it listens, and leaving the block stops it
    (``start()``/``stop()`` do the same; both are safe to call twice).
    ``old.mails`` holds the mail, ``old.received`` every ``recv(1024)``,
    ``old.sizes`` their lengths.  If the real server would have crashed,
    the thread ends, ``old.crashed`` holds the exception, and every
    connection it held is closed, as when a process dies.
    """

    def __init__(self, users: dict[str, str], *, host: str = "127.0.0.1", port: int = 0,
                 seed: int | None = None):
        self.users = dict(users)
        self.host, self.port = host, port
        self.mails: list[Mail2017] = []
        self.received: list[bytes] = []
        self.crashed: BaseException | None = None
        self.session_id: str | None = None     # the one session (None: waiting for a login)
        self.user: str | None = None
        self._random = random.Random(seed)     # 2017 drew session ids from `random`
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._login_conn: socket.socket | None = None   # open for the whole session
        self._last_conn: socket.socket | None = None    # open until the next accept()

    @property
    def sizes(self) -> list[int]:
        """How many bytes each request's one ``recv(1024)`` returned."""
        return [len(data) for data in self.received]

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("the server is not started: use start() or `with`")
        return self._sock.getsockname()[:2]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.crashed is None

    def __repr__(self) -> str:
        where = "%s:%d" % self.address if self._sock else "stopped"
        state = "crashed" if self.crashed else f"session of {self.user}" if self.user else "no session"
        return f"<Server2017 {where}, {state}>"

    def __enter__(self) -> "Server2017":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "Server2017":
        if self.running:
            return self
        self._stop.clear()
        self.crashed = None
        self._sock = socket.create_server((self.host, self.port))
        self._sock.settimeout(POLL_S)
        self._thread = threading.Thread(target=self._serve, name="Server2017", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the listening socket and every
        connection the server still holds open."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._close_all()

    def _close_all(self) -> None:
        for conn in (self._login_conn, self._last_conn, self._sock):
            if conn is not None:
                conn.close()
        self._login_conn = self._last_conn = self._sock = None

    # -- the serving loop (one thread, one thing at a time, as in 2017) -----

    def _serve(self) -> None:
        try:
            while True:
                conn = self._accept()
                data = self._recv(conn)
                self.received.append(data)
                text = data.decode("utf-8", "replace")
                reply = self._command(text, conn) if self.session_id else self._login(text, conn)
                conn.sendall(reply.encode("utf-8"))
                if reply == "OK" and self.session_id is None and self._login_conn is not None:
                    self._login_conn.close()            # logoff: the session's connection ends
                    self._login_conn = None
        except _Stopped:
            pass
        except Exception as exc:                        # the real server died here
            self.crashed = exc                          # set first: a client may look once it sees the close
            log.warning("the 2017 server crashed: %s: %s", type(exc).__name__, exc)
            self._close_all()                           # as the OS does for a dead process

    def _accept(self) -> socket.socket:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            # The previous command's connection was a local variable of the
            # loop: it goes (and closes) only when the next one replaces it.
            if self._last_conn is not None and self._last_conn is not self._login_conn:
                self._last_conn.close()
            self._last_conn = conn
            conn.settimeout(POLL_S)
            return conn

    def _recv(self, conn: socket.socket) -> bytes:
        """ONE recv(1024), waiting as long as it takes (or until stop())."""
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return conn.recv(RECV_SIZE)
            except TimeoutError:
                continue

    def _login(self, text: str, conn: socket.socket) -> str:
        parts = text.split(":")
        if len(parts) == 2 and self.users.get(parts[0]) == parts[1]:
            self.user = parts[0]
            self.session_id = str(self._random.randint(10**9, 10**10 - 1))
            self._login_conn = conn
            return f"OK:{self.session_id}"
        return "KO"

    def _command(self, text: str, conn: socket.socket) -> str:
        if "#" not in text:
            # 2017: `content, check = data.split("#")` -- a login line during
            # a session has no '#' and brought the server down.
            raise _Crash(f"not enough values to unpack (a request without '#' during "
                         f"{self.user}'s session: {text[:40]!r})")
        content, _, check = text.partition("#")      # the first '#'
        if sha1(content) != check:
            return "KO"
        parts = content.split(":")
        if parts[0] != self.session_id or len(parts) < 2:
            return "KO"
        name, fields = parts[1], parts[2:]
        handler = getattr(self, f"_do_{name}", None)
        if handler is None:
            return "KO"
        return handler(*fields)          # too few fields: IndexError, a crash as in 2017

    # One method per command; each returns the 2017 reply text verbatim.

    def _do_email(self, recipient, subject, body, *_cut) -> str:
        if recipient not in self.users:
            return f"Recipient Name Not Recognized: {recipient}"
        self.mails.append(Mail2017(recipient, self.user, subject, body, time.strftime("%c")))
        return "OK: Email Sent"

    def _do_getmsg(self, sender, *_) -> str:
        if sender not in self.users:
            return f"Sender Name Not Recognized: {sender}"
        reply = f"Emails From:{sender}:\n"
        for m in self.mails:
            if m.recipient == self.user and m.sender == sender:
                reply += f"Subject: {m.subject}\nMessage: {m.body}\n{m.date}\n \n"
        return reply

    def _do_count(self, *_) -> str:
        n = sum(1 for m in self.mails if m.recipient == self.user)
        return f"Total emails recived: {n}"

    def _do_delmsg(self, sender, subject, *_) -> str:
        gone = [m for m in self.mails if m.recipient == self.user and m.sender == sender
                and m.subject == subject]
        if not gone:
            return "KO. Email not found."
        self.mails = [m for m in self.mails if m not in gone]
        return "\n".join(f"Email deleated. Subject: {m.subject}" for m in gone)

    def _do_dump(self, *_) -> str:
        reply = "All emails recived:\n"
        for m in self.mails:
            if m.recipient == self.user:
                reply += f"Sender: {m.sender}\nSubject: {m.subject}\nMessage: {m.body}\n{m.date}\n \n"
        return reply

    def _do_help(self, *_) -> str:
        return HELP_2017

    def _do_logoff(self, *_) -> str:
        self.session_id = self.user = None
        return "OK"


# Notebook 03's name for it ("a 2017-style server").
Server2017Style = Server2017


# --------------------------------------------------------------------------
# The 2017 client as a program: its menu on stdin


FIELDS_2017 = {"email": ("recipient", "subject", "body"), "getmsg": ("sender",), "count": (),
               "delmsg": ("sender", "subject"), "dump": (), "help": (), "logoff": ()}


def main(argv: list[str] | None = None) -> int:
    """``python -m mailkit.course.client2017 HOST PORT [--timeout S]``: the
    2017 client's menu, as docs/protocol.md ("Write your own client") writes
    down its stdin: a user name line, a password line, then per command its
    name and one line per field.  It prints each reply; it ends after
    ``logoff`` or at the end of its input.  Like the real one it waits for a
    reply for ever unless ``--timeout`` is given (then it crashes with a
    traceback on a timeout, as the real one did on any socket error)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m mailkit.course.client2017",
                                     description="The 2017 client, driven by its menu on stdin.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds to wait for a reply (default: for ever, as in 2017)")
    args = parser.parse_args(argv)
    client = Client2017(args.host, args.port, timeout=args.timeout)

    def ask(prompt: str) -> str:
        print(prompt, end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    try:
        while not client.session_id:
            user, password = ask("Username: "), ask("Password: ")
            print(client.login(user, password), flush=True)
        while True:
            name = ask("Enter cmd: ").strip()
            if name not in FIELDS_2017:
                print(f"Unknown command: {name}", flush=True)
                continue
            fields = [ask(f"Enter {what}: ") for what in FIELDS_2017[name]]
            print(client.command(name, *fields), flush=True)
            if name == "logoff":
                return 0
    except EOFError:
        return 0

