"""The interop table (issue 12): every command, both directions, with the
faithful 2017 doubles (mailkit/course/legacy2017.py); and mail through a
NoisyLink at 5%.

    python benchmarks/interop.py            # a markdown table on stdout
    python benchmarks/interop.py --mails 150 --seed 5

Times are wall-clock milliseconds of one command on 127.0.0.1 (one run, a
shared machine: read them as "well under a second" or not, nothing finer).
"copies" is how many copies of the mail the server holds after the
command (email only).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailkit import BitFlipChannel, MailClient, MailServer, NoisyLink, SimpleMailServer  # noqa: E402
from mailkit.course.legacy2017 import Client2017, Server2017  # noqa: E402

USERS = {"alice": "wonderland", "bob": "builder"}


def _timed(fn):
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:                       # the table shows what went wrong
        result = f"{type(exc).__name__}: {exc}"
    return result, (time.perf_counter() - start) * 1000


def _short(value) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text.replace("\n", "\\n").replace("|", "\\|")[:60]


def old_client_rows(make_server, name: str) -> list[tuple]:
    rows = []
    with make_server() as srv:
        old = Client2017(*srv.address)

        def copies():
            reader = MailClient(*srv.address)
            reader.login("bob", "builder")
            return sum(m.subject == "Hello" for m in reader.dump())

        steps = [("login", lambda: old.login("alice", "wonderland")),
                 ("help", old.help),
                 ("email", lambda: old.email("bob", "Hello", "from 2017")),
                 ("email (unknown)", lambda: old.email("nobody", "s", "b")),
                 ("getmsg", lambda: old.getmsg("bob")),
                 ("count", old.count),
                 ("delmsg", lambda: old.delmsg("bob", "none")),
                 ("dump", old.dump),
                 ("logoff", old.logoff)]
        for command, fn in steps:
            reply, ms = _timed(fn)
            rows.append((command, f"2017 client -> {name}", _short(reply), ms,
                         copies() if command == "email" else ""))
    return rows


def new_client_rows() -> list[tuple]:
    rows = []
    with Server2017(USERS) as old:
        client = MailClient(*old.address)

        def copies():
            return sum(m.subject == "Hello" for m in old.mails)

        steps = [("login", lambda: client.login("alice", "wonderland")),
                 ("help", lambda: client.help().strip().splitlines()[0]),
                 ("email", lambda: client.send("bob", "Hello", "from mailkit")),
                 ("email (self)", lambda: client.send("alice", "Note", "to self")),
                 ("email (unknown)", lambda: client.send("nobody", "s", "b")),
                 ("getmsg", lambda: [m.subject for m in client.messages_from("alice")]),
                 ("getmsg (unknown)", lambda: client.messages_from("nobody")),
                 ("count", client.count),
                 ("delmsg", lambda: client.delete("alice", "Note")),
                 ("delmsg (none)", lambda: client.delete("alice", "Note")),
                 ("dump", lambda: client.dump()),
                 ("logoff", client.logoff)]
        for command, fn in steps:
            reply, ms = _timed(fn)
            rows.append((command, "MailClient -> 2017 server", _short(reply), ms,
                         copies() if command == "email" else ""))
        crashed = old.crashed
    rows.append(("(after)", "MailClient -> 2017 server", f"server crashed: {crashed!r}", 0, ""))
    return rows


def _tally(meant, delivered) -> str:
    counts = collections.Counter(delivered)
    once = sum(counts[s] == 1 for s in meant)
    dup = sum(counts[s] > 1 for s in meant)
    lost = sum(counts[s] == 0 for s in meant)
    return f"sent {len(meant)}, delivered once {once}, duplicated {dup}, lost {lost}"


def noisy_2017_client(n: int, seed: int, make_server, name: str) -> str:
    with make_server() as srv, NoisyLink(srv.address, rate=0.05, seed=seed, idle_timeout=0.3) as link:
        old = Client2017(*link.address, timeout=10)
        old.login("alice", "wonderland")
        outcomes = collections.Counter()
        start = time.perf_counter()
        for i in range(n):
            try:
                reply = old.email("bob", f"noisy {i}", f"body {i}")
            except OSError as exc:
                reply = type(exc).__name__
            outcomes["OK" if reply == "OK: Email Sent" else reply or "(closed)"] += 1
        secs = time.perf_counter() - start
        flipped = sum(bool(e.request_flips) for e in link.events)
        ko = sum(e.reply == b"KO" for e in link.events)
        resends = sum(1 for first, again in zip(link.events, link.events[1:])
                      if first.reply == b"KO" and again.request == first.request)
        reader = MailClient(*srv.address)
        reader.login("bob", "builder")
        tally = _tally([f"noisy {i}" for i in range(n)], [m.subject for m in reader.dump()])
    return (f"2017 client -> NoisyLink 5% -> {name}: {flipped} frames flipped, {ko} KO replies, "
            f"{resends} same-socket resends; {tally}; client saw {dict(outcomes)}; {secs:.1f} s")


def noisy_new_client(n: int, seed: int) -> list[str]:
    lines = []
    with Server2017(USERS) as old:
        client = MailClient(*old.address, channel=BitFlipChannel(rate=0.05, seed=seed))
        client.login("alice", "wonderland")
        start = time.perf_counter()
        for i in range(n):
            try:
                client.send("bob", f"noisy {i}", f"body {i}")
            except OSError:
                pass
        secs = time.perf_counter() - start
        ko = sum(e.outcome == "KO" for e in client.transcript)
        tally = _tally([f"noisy {i}" for i in range(n)], [m.subject for m in old.mails])
        lines.append(f"MailClient (BitFlipChannel 5%) -> 2017 server: {ko} KO; {tally}; "
                     f"crashed {old.crashed is not None}; {secs:.1f} s")
    with Server2017(USERS) as old, NoisyLink(old.address, rate=0.05, seed=seed, idle_timeout=0.3) as link:
        client = MailClient(*link.address)
        login, login_ms = _timed(lambda: client.login("alice", "wonderland"))
        start = time.perf_counter()
        failed = collections.Counter()
        for i in range(n):
            try:
                client.send("bob", f"noisy {i}", f"body {i}")
            except Exception as exc:     # noqa: BLE001 - counted and shown
                failed[type(exc).__name__] += 1
        secs = time.perf_counter() - start
        flipped = sum(bool(e.request_flips) for e in link.events)
        ko = sum(e.outcome == "KO" for e in client.transcript)
        tally = _tally([f"noisy {i}" for i in range(n)], [m.subject for m in old.mails])
        lines.append(f"MailClient -> NoisyLink 5% -> 2017 server: login {'OK' if str(login).isdigit() else _short(login)} in {login_ms:.0f} ms; "
                     f"{flipped} frames flipped, {ko} KO (resent on new connections); {tally}; "
                     f"client errors {dict(failed)}; crashed {old.crashed is not None}; {secs:.1f} s")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mails", type=int, default=150)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    servers = [(lambda: MailServer(users=USERS), "MailServer"),
               (lambda: SimpleMailServer(users=USERS), "SimpleMailServer")]
    rows = []
    for make, name in servers:
        rows += old_client_rows(make, name)
    rows += new_client_rows()
    print("| command | direction | reply | ms | copies |")
    print("| --- | --- | --- | ---: | ---: |")
    for command, direction, reply, ms, copies in rows:
        print(f"| {command} | {direction} | `{reply}` | {ms:.0f} | {copies} |")
    print()
    for make, name in servers:
        print("- " + noisy_2017_client(args.mails, args.seed, make, name))
    for line in noisy_new_client(args.mails, args.seed):
        print("- " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
