"""Mail servers with one deliberate flaw each, for tests/test_conform.py.

    python tests/wrong_servers.py FLAW PORT USERS_FILE DB

With FLAW ``none`` this is a small correct server written from
docs/protocol.md alone (standard library only, no mailkit): one thread per
connection, requests complete by the doc's rules, a SQLite file committed
before each ``OK``.  Every other FLAW breaks exactly one rule, and
``conform server`` must fail the check named in :data:`FLAWS`.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import sqlite3
import sys
import threading
import time

# flaw -> the conformance check it must fail
FLAWS = {
    "none": None,
    "no-checksum-check": "frame/checksum-mismatch",
    "reply-in-two-pieces": "reply/one-piece",
    "predictable-session-ids": "session/ids-unpredictable",
    "crashes-on-hash-in-subject": "email/hash-in-subject",
    "closes-before-resend": "retry/resend-after-KO-same-socket",
    "duplicates-resent-mail": "retry/resent-mail-stored-once",
    "one-client-at-a-time": "concurrency/silent-client",
    "never-half-closes": "reply/closes-after-reply",
    "mail-in-memory": "durability/after-OK",
    "bare-ko-for-errors": "frame/bad-session-id",
    "one-recv-1024": "stream/large-frame",
    "no-colon-unescape": "email/colon-in-subject",
    "waits-for-close": "login/ok",
    "one-session-at-a-time": "concurrency/two-sessions",
}

ARITY = {"help": 0, "email": 3, "getmsg": 1, "count": 0, "delmsg": 2, "dump": 0, "logoff": 0}
FRAMED = re.compile(rb"#[0-9a-f]{40}\Z")


class Server:
    def __init__(self, flaw: str, port: int, users: dict[str, str], db: str):
        self.flaw, self.users = flaw, users
        self.sessions: dict[str, str] = {}
        self.next_id = 1000000000
        self.lock = threading.Lock()
        self.memory: list[tuple] = []
        self.db = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS mail (rcpt, sender, subject, body)")
        self.sock = socket.create_server(("127.0.0.1", port))

    # -- reading a request -------------------------------------------------

    def read(self, conn: socket.socket) -> tuple[bytes, bool]:
        if self.flaw == "one-recv-1024":
            return conn.recv(1024), False
        data, closed = b"", False
        while True:
            if self.flaw == "waits-for-close":
                wait = 5.0
            elif FRAMED.search(data):
                wait = 0.0 if self.verifies(data) else 0.1
            elif data and not data[:1].isdigit() and b":" in data:
                wait = 0.05
            else:
                wait = 2.0
            if wait == 0.0:
                return data, closed
            conn.settimeout(wait)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                return data, closed
            if not chunk:
                return data, True
            data += chunk

    @staticmethod
    def verifies(data: bytes) -> bool:
        content, _, check = data.rpartition(b"#")
        return hashlib.sha1(content).hexdigest().encode() == check

    # -- answering -----------------------------------------------------------

    def respond(self, data: bytes) -> str:
        if re.match(rb"\d{10}:", data) or re.search(rb"#[0-9a-f]{40}\Z", data):
            return self.command(data)           # a frame, even if a flipped bit hit its session id
        user, _, password = data.decode("utf-8", "replace").rstrip("\n").partition(":")
        if self.users.get(user) != password:
            return "KO: wrong username or password"
        with self.lock:
            if self.flaw == "predictable-session-ids":
                self.next_id += 1
                sid = str(self.next_id)
            else:
                sid = str(1000000000 + secrets.randbelow(9000000000))
            if self.flaw == "one-session-at-a-time":
                self.sessions.clear()
            self.sessions[sid] = user
        return f"OK:{sid}"

    def command(self, data: bytes) -> str:
        if self.flaw == "crashes-on-hash-in-subject":
            content, _, check = data.partition(b"#")         # the 2017 split: at the FIRST '#'
            if len(check) != 40:
                os._exit(3)                                  # "crashes": the process dies
        else:
            content, _, check = data.rpartition(b"#")
        text = content.decode("utf-8", "replace")
        sid, _, rest = text.partition(":")
        name = rest.partition(":")[0]
        fields = rest.split(":", ARITY.get(name, 0))[1:]
        if self.flaw == "duplicates-resent-mail" and name == "email" and sid in self.sessions:
            self.store(self.sessions[sid], *fields)          # stored BEFORE the checksum is checked
        if self.flaw != "no-checksum-check" and hashlib.sha1(content).hexdigest().encode() != check:
            return "KO"
        user = self.sessions.get(sid)
        if user is None:
            return "KO" if self.flaw == "bare-ko-for-errors" else f"ERROR: unknown session id {sid}"
        if name not in ARITY or len(fields) != ARITY[name]:
            return "KO" if self.flaw == "bare-ko-for-errors" else f"ERROR: unknown command {name!r}"
        if self.flaw != "no-colon-unescape":
            fields = [unescape(f) for f in fields[:-1]] + fields[-1:]
        return getattr(self, "do_" + name)(user, sid, *fields)

    def store(self, user, rcpt, subject, body) -> None:
        if self.flaw == "mail-in-memory":
            self.memory.append((rcpt, user, subject, body))
        else:
            with self.lock:
                self.db.execute("INSERT INTO mail VALUES (?, ?, ?, ?)", (rcpt, user, subject, body))

    def mails(self, user, sender=None):
        with self.lock:
            rows = self.memory if self.flaw == "mail-in-memory" else \
                self.db.execute("SELECT * FROM mail").fetchall()
        return [r for r in rows if r[0] == user and (sender is None or r[1] == sender)]

    def do_help(self, user, sid):
        return "OK: commands: " + " ".join(ARITY)

    def do_email(self, user, sid, rcpt, subject, body):
        if rcpt not in self.users:
            return f"ERROR: unknown recipient {rcpt!r}"
        if self.flaw != "duplicates-resent-mail":
            self.store(user, rcpt, subject, body)
        return "OK: Email Sent"

    def listing(self, rows, title=""):
        n = len(rows)
        lines = [f"OK: {n} message{'' if n == 1 else 's'}{title}"]
        for i, (rcpt, sender, subject, body) in enumerate(rows, 1):
            lines += [f"--- message {i} of {n} ---", f"From: {sender}", f"To: {rcpt}",
                      f"Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
                      "Subject: " + subject.replace("\\", "\\\\").replace("\n", "\\n"),
                      f"Length: {len(body.encode())}", "", body]
        return "\n".join(lines)

    def do_getmsg(self, user, sid, sender):
        if sender not in self.users:
            return f"ERROR: unknown user {sender!r}"
        return self.listing(self.mails(user, sender), f" from {sender}")

    def do_count(self, user, sid):
        n = len(self.mails(user))
        return f"OK: {n} message{'' if n == 1 else 's'}"

    def do_delmsg(self, user, sid, sender, subject):
        with self.lock:
            n = self.db.execute("DELETE FROM mail WHERE rcpt=? AND sender=? AND subject=?",
                                (user, sender, subject)).rowcount
        return f"OK: {n} message{'' if n == 1 else 's'} deleted" if n else "ERROR: no such message"

    def do_dump(self, user, sid):
        return self.listing(self.mails(user))

    def do_logoff(self, user, sid):
        self.sessions.pop(sid, None)
        return "OK: Logged off"

    # -- one connection ----------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        with conn:
            for attempt in range(2):                 # a request, and one resend after KO
                data, closed = self.read(conn)
                if not data:
                    return
                reply = self.respond(data).encode()
                if self.flaw == "reply-in-two-pieces" and len(reply) > 4:
                    conn.sendall(reply[:4])
                    time.sleep(0.4)
                    reply = reply[4:]
                conn.sendall(reply)
                if reply != b"KO" or closed or self.flaw == "closes-before-resend":
                    break
            if self.flaw == "never-half-closes":
                time.sleep(5)                        # held open, whatever the client does

    def serve(self) -> None:
        while True:
            conn, _ = self.sock.accept()
            if self.flaw == "one-client-at-a-time":
                self.handle(conn)
            else:
                threading.Thread(target=self.handle, args=(conn,), daemon=True).start()


def unescape(field: str) -> str:
    if not re.search("#(?:23)*3A", field):
        return field
    return re.sub("#(23|3A)", lambda m: "#" if m.group(1) == "23" else ":", field)


def main(argv: list[str]) -> None:
    flaw, port, users_file, db = argv
    if flaw not in FLAWS:
        raise SystemExit(f"unknown flaw {flaw!r}: one of {', '.join(FLAWS)}")
    users = dict(line.strip().split(":", 1) for line in open(users_file) if ":" in line)
    Server(flaw, int(port), users, db).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
