"""``python -m mailkit``: serve, add users, and a terminal client.

    python -m mailkit serve --port 2525 --db mail.db
    python -m mailkit adduser --db mail.db alice
    python -m mailkit client --port 2525
    python -m mailkit conform server -- ./myserver {port} {users}

Passwords never need to appear on a command line (where ``ps`` shows them to
every user of the machine): ``adduser`` asks for one (or reads a line from
standard input), and ``serve --users-file FILE`` reads ``name:password``
lines from a file only its owner can read.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import stat
import sys

from .client import MailClient, MailClientError
from .protocol import DEFAULT_PORT, LocalProtocolError
from .server import MailServer
from .limits import ClassLimits
from .store import QUOTA_BYTES, QUOTA_MESSAGES, MailStore, StoreError, StoreOpenError

DEFAULT_DB = "mail.db"


def main(argv: list[str] | None = None) -> int:
    # The docstring's first line, without its reST backticks (--help is plain text).
    parser = argparse.ArgumentParser(prog="python -m mailkit",
                                     description=__doc__.split("\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a mail server until Ctrl-C",
                           description="Run a mail server. Prints 'mailkit listening on HOST:PORT' "
                                       "when ready; Ctrl-C (or SIGTERM) stops it.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; 0.0.0.0 for a class server)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file (default {DEFAULT_DB})")
    serve.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                       help="add (or reset) an account before serving; may be repeated. "
                            "The password shows in ps to everyone on the machine: for a class "
                            "server use --users-file or the adduser command instead")
    serve.add_argument("--users-file", metavar="FILE",
                       help="add (or reset) the accounts in FILE before serving: one NAME:PASSWORD "
                            "per line ('#' starts a comment). FILE must not be readable by group "
                            "or others (chmod 600 FILE)")
    limits = serve.add_argument_group("limits for a class server (the defaults fit a class of 300)")
    d = ClassLimits()
    limits.add_argument("--max-per-address", type=int, default=d.per_address, metavar="N",
                        help=f"open connections from one address (default {d.per_address}; raise it "
                             "when a whole class reaches the server through one NAT address)")
    limits.add_argument("--max-connections", type=int, default=d.max_connections, metavar="N",
                        help=f"open connections in all (default {d.max_connections}); when fewer than "
                             "1/8 are free, the longest idle are closed first")
    limits.add_argument("--login-free", type=int, default=d.login_free, metavar="N",
                        help=f"wrong passwords per user and address before a delay (default {d.login_free}); "
                             "then 1, 2, 4 ... s for that address only")
    limits.add_argument("--login-max-delay", type=float, default=d.login_max_delay, metavar="S",
                        help=f"longest delay after wrong passwords (default {d.login_max_delay:g} s)")
    limits.add_argument("--guess-rate", type=float, default=d.guesses_per_s, metavar="N",
                        help=f"bad session ids a second from one address (default {d.guesses_per_s:g}, "
                             "bursts of twice that)")
    limits.add_argument("--quota-messages", type=int, default=QUOTA_MESSAGES, metavar="N",
                        help=f"messages one mailbox holds (default {QUOTA_MESSAGES}; 0: no limit)")
    limits.add_argument("--quota-mb", type=float, default=QUOTA_BYTES / 2**20, metavar="MB",
                        help=f"megabytes one mailbox holds (default {QUOTA_BYTES / 2**20:g}; 0: no limit)")
    limits.add_argument("--max-db-mb", type=float, default=0, metavar="MB",
                        help="cap the database file at MB megabytes: past it, mail is refused with "
                             "'storage full', as on a full disk (default 0: no cap)")
    serve.add_argument("--quiet", action="store_true", help="no log line per request")

    add = sub.add_parser("adduser", help="add an account to a mail database",
                         description="Add an account. Prompts for the password on a terminal; "
                                     "otherwise reads one line from standard input (so the "
                                     "password never shows in ps): "
                                     "echo \"$PW\" | python -m mailkit adduser NAME")
    add.add_argument("name")
    add.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file (default {DEFAULT_DB})")
    add.add_argument("--replace", action="store_true", help="reset the password of an existing account")

    cli = sub.add_parser("client", help="an interactive terminal client (the 2017 menu)",
                         description="An interactive client with the 2017 menu's commands.")
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=DEFAULT_PORT)

    sub.add_parser("conform", add_help=False,
                   help="conformance checks for any server or client (python -m mailkit conform --help)")

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["conform"]:             # its own parser: it takes a command after --
        from .conform.cli import main as conform
        return conform(argv[1:])
    args = parser.parse_args(argv)
    return {"serve": _serve, "adduser": _adduser, "client": _client}[args.cmd](args)


def _serve(args) -> int:
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")
    users = {}
    for spec in args.user:
        name, sep, password = spec.partition(":")
        if not sep:
            print(f"--user wants NAME:PASSWORD, got {spec!r}", file=sys.stderr)
            return 2
        users[name] = password
    if args.users_file:
        try:
            users.update(read_users_file(args.users_file))
        except (OSError, ValueError) as exc:
            print(f"mailkit: {exc}", file=sys.stderr)
            return 2
    try:
        store = MailStore(args.db, quota_messages=args.quota_messages or None,
                          quota_bytes=int(args.quota_mb * 2**20) or None,
                          max_db_bytes=int(args.max_db_mb * 2**20) or None)
    except StoreOpenError as exc:       # one line naming the path, no traceback
        print(f"mailkit: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"mailkit: cannot serve: {exc}", file=sys.stderr)
        return 2
    try:
        limits = ClassLimits(per_address=args.max_per_address, max_connections=args.max_connections,
                             login_free=args.login_free,
                             login_max_delay=args.login_max_delay, guesses_per_s=args.guess_rate,
                             guess_burst=max(1.0, 2 * args.guess_rate))
        server = MailServer(users, host=args.host, port=args.port, store=store, limits=limits)
        server.start()
    except (OSError, StoreError, LocalProtocolError, ValueError) as exc:
        store.close()
        print(f"mailkit: cannot serve: {exc}", file=sys.stderr)
        return 1
    # SIGTERM stops as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    host, port = server.address
    print(f"mailkit listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    return 0


def read_users_file(path: str) -> dict[str, str]:
    """``{name: password}`` from a file of ``NAME:PASSWORD`` lines (blank
    lines and lines starting with ``#`` are skipped).  ValueError, naming the
    file and line, for a bad line or a file that group or others can read."""
    with open(path, encoding="utf-8") as f:
        if os.name == "posix":
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            if mode & 0o044:
                raise ValueError(f"{path} is readable by group or others (mode {mode:o}): "
                                 f"it holds passwords; run chmod 600 {path}")
        users = {}
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, sep, password = line.partition(":")
            if not sep or not name.strip() or not password:
                raise ValueError(f"{path}, line {number}: expected NAME:PASSWORD")
            users[name.strip()] = password
    return users


def _read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    return sys.stdin.readline().rstrip("\r\n")


def _adduser(args) -> int:
    password = _read_secret(f"password for {args.name}: ")
    if not password:
        print("mailkit: empty password, no account added", file=sys.stderr)
        return 1
    try:
        with MailStore(args.db) as store:
            store.add_user(args.name, password, replace=args.replace)
    except StoreOpenError as exc:
        print(f"mailkit: {exc}", file=sys.stderr)
        return 2
    except (StoreError, ValueError) as exc:
        print(f"mailkit: {exc}", file=sys.stderr)
        return 1
    print(f"added {args.name} to {args.db}")
    return 0


MENU = """\
  1) help     2) email    3) getmsg   4) count
  5) delmsg   6) dump     7) logoff   (q to quit)"""


def _ask(prompt: str) -> str:
    print(prompt, end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _ask_body() -> str:
    print("body (end with a line holding only '.'):", flush=True)
    lines = []
    while (line := _ask("")) != ".":
        lines.append(line)
    return "\n".join(lines)


def _client(args) -> int:
    client = MailClient(args.host, args.port)
    print(f"mailkit client for {args.host}:{args.port}")
    try:
        while client.session_id is None:
            user = _ask("username: ")
            try:
                client.login(user, _read_secret("password: ") if sys.stdin.isatty() else _ask("password: "))
            except (MailClientError, LocalProtocolError) as exc:
                print(f"login failed: {exc}")
                continue
            print(f"logged in as {user} (session {client.session_id})")
        while client.session_id is not None:
            print(MENU)
            choice = _ask("> ").strip().lower()
            try:
                if choice in ("1", "help"):
                    print(client.help())
                elif choice in ("2", "email"):
                    to, subject = _ask("to: "), _ask("subject: ")
                    print(client.send(to, subject, _ask_body()))
                elif choice in ("3", "getmsg"):
                    print(client.command("getmsg", _ask("from: ")).text)
                elif choice in ("4", "count"):
                    print(client.command("count").text)
                elif choice in ("5", "delmsg"):
                    print(client.command("delmsg", _ask("from: "), _ask("subject: ")).text)
                elif choice in ("6", "dump"):
                    print(client.command("dump").text)
                elif choice in ("7", "logoff"):
                    print(client.logoff())
                elif choice in ("q", "quit", "exit"):
                    break
                else:
                    print(f"no such choice: {choice!r}")
            except (MailClientError, LocalProtocolError) as exc:
                print(f"error: {exc}")
    except (EOFError, KeyboardInterrupt):
        print()
    return 0
