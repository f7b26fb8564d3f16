"""A client and a server as a 2017 student would have written them from the
course specification (PROTOCOL.md): one ``send``, one ``recv(1024)``, a new
connection per command, the checksum split off at the FIRST ``#``.

They exist to prove that mailkit interoperates with them byte for byte.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import threading


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class Client2017:
    """The 2017 client: no terminator, no half-close, one recv(1024)."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0):
        self.address = (host, port)
        self.timeout = timeout
        self.session_id = ""
        self.sent: list[bytes] = []

    def _exchange(self, text: str) -> str:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        try:
            data = text.encode("utf-8")
            self.sent.append(data)
            sock.sendall(data)
            return sock.recv(1024).decode("utf-8", "replace")
        finally:
            sock.close()

    def login(self, user: str, password: str) -> str:
        reply = self._exchange(f"{user}:{password}")
        if reply.split(":")[0] == "OK":
            self.session_id = reply.split(":")[1]
        return reply

    def command(self, name: str, *fields: str) -> str:
        content = ":".join([self.session_id, name, *fields])
        frame = f"{content}#{sha1(content)}"
        for _ in range(4):            # first try + 3 retries
            reply = self._exchange(frame)
            if reply != "KO":
                return reply
        return reply


class Server2017:
    """The 2017 server, serving one connection at a time in a thread."""

    def __init__(self, users: dict[str, str]):
        self.users = users
        self.sessions: dict[str, str] = {}
        self.inbox: list[tuple[str, str, str, str]] = []   # (to, from, subject, body)
        self.received: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = conn.recv(1024)
                self.received.append(data)
                conn.sendall(self._reply(data.decode("utf-8")).encode("utf-8"))

    def _reply(self, text: str) -> str:
        if "#" not in text:                       # a handshake
            user, _, password = text.partition(":")
            if self.users.get(user) != password:
                return "KO"
            sid = f"{secrets.randbelow(10**10):010d}"
            self.sessions[sid] = user
            return f"OK:{sid}"
        content, _, check = text.partition("#")   # the 2017 bug: first '#'
        if sha1(content) != check:
            return "KO"
        parts = content.split(":")
        user = self.sessions.get(parts[0])
        if user is None:
            return "Invalid session"
        command = parts[1]
        if command == "email":
            self.inbox.append((parts[2], user, parts[3], parts[4]))
            return "OK: Email Sent"
        if command == "count":
            return str(sum(1 for m in self.inbox if m[0] == user))
        if command == "getmsg":
            return "\n".join(f"{m[2]}: {m[3]}" for m in self.inbox if m[0] == user and m[1] == parts[2])
        if command == "help":
            return "help email getmsg count delmsg dump logoff"
        if command == "logoff":
            del self.sessions[parts[0]]
            return "OK"
        return "Unknown command"
