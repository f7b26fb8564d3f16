"""Mail clients with one deliberate flaw each, for tests/test_conform.py.

    python tests/wrong_clients.py FLAW HOST PORT < commands

They read the 2017 menu on stdin like examples/client.py (which is the
flaw ``none``); every other FLAW breaks one rule, and ``conform client``
must fail the check named in :data:`FLAWS`.
"""

import hashlib
import socket
import sys

FLAWS = {
    "none": None,
    "uppercase-checksum": "client/frame-checksum",
    "newline-after-frame": "client/frame-checksum",
    "no-retry-after-KO": "client/resend-after-KO",
    "sends-email-twice": "client/no-resend-after-OK",
    "retries-for-ever": "client/gives-up",
    "waits-for-ever": "client/silent-server",
    "fields-swapped": "client/frame-fields",
}
FIELDS = {"help": 0, "email": 3, "getmsg": 1, "count": 0, "delmsg": 2, "dump": 0, "logoff": 0}


def exchange(address, data, flaw):
    with socket.create_connection(address, timeout=None if flaw == "waits-for-ever" else 5) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            sock.settimeout(0.25 if reply else (None if flaw == "waits-for-ever" else 5))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return reply or None
            if not chunk:
                return reply
            reply += chunk


def frame(session, name, fields, flaw):
    if flaw == "fields-swapped" and name == "email":
        fields = [fields[0], fields[2], fields[1]]
    escaped = [f.replace("#", "#23").replace(":", "#3A") if ":" in f else f for f in fields[:-1]] + fields[-1:]
    content = ":".join([session, name, *escaped]).encode()
    digest = hashlib.sha1(content).hexdigest()
    if flaw == "uppercase-checksum":
        digest = digest.upper()
    return content + b"#" + digest.encode() + (b"\n" if flaw == "newline-after-frame" else b"")


def send(address, name, data, flaw):
    attempts = 50 if flaw == "retries-for-ever" else 1 if flaw == "no-retry-after-KO" else 4
    for _ in range(attempts):
        reply = exchange(address, data, flaw)
        if reply is None:
            if name in ("help", "getmsg", "count", "dump"):
                continue
            return "no reply"
        if flaw == "sends-email-twice" and name == "email":
            exchange(address, data, flaw)
        if reply.strip() != b"KO":
            return reply.decode("utf-8", "replace")
    return "failed (KO)"


def main():
    flaw, address = sys.argv[1], (sys.argv[2], int(sys.argv[3]))
    lines = (line.rstrip("\r\n") for line in sys.stdin)
    user, password = next(lines), next(lines)
    reply = (exchange(address, f"{user}:{password}".encode(), flaw) or b"").decode()
    print(reply)
    session = reply[3:13]
    for name in lines:
        fields = [next(lines, "") for _ in range(FIELDS.get(name, 0))]
        print(send(address, name, frame(session, name, fields, flaw), flaw), flush=True)
        if name == "logoff":
            break


if __name__ == "__main__":
    main()
