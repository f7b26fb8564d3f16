#!/usr/bin/env python3
"""A mail client written from docs/protocol.md alone (no mailkit import).

    python3 examples/client.py HOST PORT < commands.txt

Standard input, as the 2017 client's menu reads it: a user name line, a
password line, then per command its name and one line per field.  One
connection per request; the request goes out in one send and the client
half-closes; the reply is everything until the server closes, or bytes and
then 0.25 s of nothing (a 2017 server never closes).  Exactly ``KO``: the
same frame again on a new connection, at most 3 more times.  No reply in
5 s: ``help``, ``getmsg``, ``count``, ``dump`` are sent again (they change
nothing); the others are reported and not sent again.
"""

import hashlib
import socket
import sys

FIELDS = {"help": 0, "email": 3, "getmsg": 1, "count": 0, "delmsg": 2, "dump": 0, "logoff": 0}
SAFE_TO_REPEAT = {"help", "getmsg", "count", "dump"}
RETRIES, TIMEOUT, QUIET = 3, 5.0, 0.25


def exchange(address, data: bytes) -> bytes | None:
    """One request on a new connection; its reply, or None if none came in time."""
    with socket.create_connection(address, timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            sock.settimeout(QUIET if reply else TIMEOUT)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return reply or None
            if not chunk:
                return reply
            reply += chunk


def frame(session: str, name: str, fields: list[str]) -> bytes:
    escaped = [f.replace("#", "#23").replace(":", "#3A") if ":" in f or "#3A" in f else f
               for f in fields[:-1]] + fields[-1:]
    content = ":".join([session, name, *escaped]).encode("utf-8")
    return content + b"#" + hashlib.sha1(content).hexdigest().encode("ascii")


def send(address, name: str, data: bytes) -> str:
    for attempt in range(1 + RETRIES):
        try:
            reply = exchange(address, data)
        except OSError as exc:
            return f"failed: {exc}"
        if reply is None:
            if name in SAFE_TO_REPEAT:
                continue
            return "failed: no reply (the server may still have done it)"
        text = reply.decode("utf-8", "replace")
        if text.strip() != "KO":
            return text
    return f"failed after {1 + RETRIES} attempts (KO every time)"


def main() -> int:
    address = (sys.argv[1], int(sys.argv[2]))
    lines = (line.rstrip("\r\n") for line in sys.stdin)
    user, password = next(lines, ""), next(lines, "")
    reply = (exchange(address, f"{user}:{password}".encode()) or b"").decode("utf-8", "replace")
    print(reply)
    if not reply.startswith("OK:"):
        return 1
    session = reply[3:13]
    for name in lines:
        if name not in FIELDS:
            print(f"unknown command {name!r}")
            continue
        fields = [next(lines, "") for _ in range(FIELDS[name])]
        print(send(address, name, frame(session, name, fields)))
        if name == "logoff":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
