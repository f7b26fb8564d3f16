"""``python -m mailkit``: serve, add users, and a terminal client.

    python -m mailkit serve --port 2525 --db mail.db
    python -m mailkit adduser --db mail.db alice
    python -m mailkit client --port 2525
    python -m mailkit serve --tls-cert cert.pem --tls-key key.pem    # TLS (not in the 2017 protocol)
    python -m mailkit client --tls --cafile cert.pem
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
import logging.handlers
import os
import signal
import ssl
import stat
import sys
import threading

from .client import MailClient, MailClientError
from .protocol import DEFAULT_PORT, LocalProtocolError
from .server import MailServer
from .limits import ClassLimits, LogCap
from .tls import server_context as tls_context, uses_public_key
from .store import QUOTA_BYTES, QUOTA_MESSAGES, MailStore, StoreError, StoreOpenError

DEFAULT_DB = "mail.db"
# The mail a class server keeps, by default: 1 GB (300 students x 3 MB), or
# half the free space on the database's disk at start if that is less, so
# that mail is refused with a clear reply long before the disk is full.
DISK_CAP_MB = 1024
DISK_CAP_FRACTION = 0.5
# What is left above the mail cap for sessions and deletions (they still
# work when the mail is at its cap): SQLite's own hard limit sits that much higher.
DISK_CAP_ROOM_MB = 16
# The log: a night of attacks wrote 36.7 MB in 15 minutes.  At most
# LOG_MB_PER_HOUR an hour (about 200,000 lines of ~100 bytes, 55 a second:
# a class of 300 making a request every 6 s fits, and refusals are
# summarised once per address per minute), and with --log-file the current
# file and LOG_FILES old ones of LOG_MB each (120 MB on disk at most).
LOG_MB_PER_HOUR = 20.0
LOG_MB = 20.0
LOG_FILES = 5


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
    tls = serve.add_argument_group("TLS (a course extension: the 2017 protocol has none)")
    tls.add_argument("--tls-cert", metavar="FILE",
                     help="serve TLS with this PEM certificate (chain); every connection, no plain "
                          "port beside it. Without --tls-cert the wire is the 2017 protocol's")
    tls.add_argument("--tls-key", metavar="FILE",
                     help="the certificate's private key (PEM; default: in the --tls-cert file)")
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
    limits.add_argument("--max-db-mb", type=float, default=None, metavar="MB",
                        help=f"cap the mail in the database at MB megabytes: past it, new mail is "
                             f"refused with 'storage full' (logins and deletions still work). Default: "
                             f"{DISK_CAP_MB} MB or half the free disk space at start, whichever is less "
                             f"(printed at start-up); 0: no cap")
    limits.add_argument("--max-per-prefix", type=int, default=d.per_prefix, metavar="N",
                        help=f"open connections from one network, a /24 for IPv4 or a /64 for IPv6 "
                             f"(default {d.per_prefix})")
    limits.add_argument("--mails-at-once", type=float, default=d.sender_mail_burst, metavar="N",
                        help=f"mails one user may send at once (default {d.sender_mail_burst:g}) ...")
    limits.add_argument("--mail-every", type=float, default=d.sender_mail_every_s, metavar="S",
                        help=f"... then one every S seconds (default {d.sender_mail_every_s:g})")
    limits.add_argument("--mb-per-day", type=float, default=d.sender_bytes_per_day / 2**20, metavar="MB",
                        help=f"megabytes of mail one user may send a day (default {d.sender_bytes_per_day / 2**20:g})")
    limits.add_argument("--pair-mails-at-once", type=float, default=d.pair_mail_burst, metavar="N",
                        help=f"mails one user may send ONE recipient at once (default {d.pair_mail_burst:g}) ...")
    limits.add_argument("--pair-mail-every", type=float, default=d.pair_mail_every_s, metavar="S",
                        help=f"... then one every S seconds (default {d.pair_mail_every_s:g})")
    limits.add_argument("--pair-mb-per-day", type=float, default=d.pair_bytes_per_day / 2**20, metavar="MB",
                        help=f"megabytes of mail one user may send one recipient a day "
                             f"(default {d.pair_bytes_per_day / 2**20:g})")
    limits.add_argument("--logins-at-once", type=float, default=d.hashes_burst, metavar="N",
                        help=f"password checks from one address at once, over all user names "
                             f"(default {d.hashes_burst:g}) ...")
    limits.add_argument("--login-rate", type=float, default=d.hashes_per_s, metavar="N",
                        help=f"... then N a second (default {d.hashes_per_s:g})")
    limits.add_argument("--guess-ceiling", type=float, default=d.guess_ceiling_per_s, metavar="N",
                        help=f"bad session ids the whole server checks a second (default "
                             f"{d.guess_ceiling_per_s:g}, bursts of {d.guess_ceiling_burst:g})")
    limits.add_argument("--bind-sessions", action="store_true",
                        help="a session id works only from the address that logged in (a 2017 "
                             "client always reconnects from the same address)")
    logs = serve.add_argument_group("the log")
    serve.add_argument("--quiet", action="store_true", help="no log line per request")
    logs.add_argument("--log-file", metavar="FILE",
                      help=f"log to FILE, rotated at --log-mb megabytes, {LOG_FILES} old files kept "
                           "(default: standard error)")
    logs.add_argument("--log-mb", type=float, default=LOG_MB, metavar="MB",
                      help=f"size of one log file before it is rotated (default {LOG_MB:g})")
    logs.add_argument("--log-mb-per-hour", type=float, default=LOG_MB_PER_HOUR, metavar="MB",
                      help=f"at most MB megabytes of log an hour; past it, lines are dropped and "
                           f"counted (default {LOG_MB_PER_HOUR:g}; 0: no cap)")

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
    cli.add_argument("--tls", action="store_true", help="connect with TLS, checking the certificate")
    cli.add_argument("--cafile", metavar="FILE",
                     help="trust the CA (or self-signed certificate) in FILE instead of the system's CAs")
    cli.add_argument("--server-hostname", metavar="NAME",
                     help="the name the certificate must carry (default: --host)")

    sub.add_parser("conform", add_help=False,
                   help="conformance checks for any server or client (python -m mailkit conform --help)")

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["conform"]:             # its own parser: it takes a command after --
        from .conform.cli import main as conform
        return conform(argv[1:])
    args = parser.parse_args(argv)
    return {"serve": _serve, "adduser": _adduser, "client": _client}[args.cmd](args)


def disk_cap_mb(db: str, asked: float | None) -> float:
    """The mail cap: *asked* (0: none), else DISK_CAP_MB or DISK_CAP_FRACTION
    of the free space where *db* is, whichever is less."""
    if asked is not None:
        return asked
    folder = os.path.dirname(os.path.abspath(db))
    try:
        st = os.statvfs(folder)
        free_mb = st.f_bavail * st.f_frsize / 2**20
    except (OSError, AttributeError):       # no such folder yet (the store says so), or no statvfs
        return float(DISK_CAP_MB)
    used_mb = os.path.getsize(db) / 2**20 if os.path.exists(db) else 0.0
    return round(min(float(DISK_CAP_MB), used_mb + DISK_CAP_FRACTION * free_mb), 1)


def _log_to(args) -> None:
    """Logging for ``serve``: standard error or a rotated file, capped per hour."""
    if args.quiet:
        return
    if args.log_file:
        handler = logging.handlers.RotatingFileHandler(
            args.log_file, maxBytes=int(args.log_mb * 2**20), backupCount=LOG_FILES, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    if args.log_mb_per_hour:
        handler.addFilter(LogCap(int(args.log_mb_per_hour * 2**20)))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


def _serve(args) -> int:
    # Ctrl-C and SIGTERM ask the server to stop, however early they come: a
    # KeyboardInterrupt between its start and serve_forever() (a loaded
    # machine is slow to get there) left its threads running, and the
    # process with them.
    stop_asked, server = threading.Event(), None

    def ask_to_stop(*_) -> None:
        stop_asked.set()
        if server is not None:
            server.request_stop()

    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)
    _log_to(args)
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
    if args.tls_key and not args.tls_cert:
        print("mailkit: --tls-key needs --tls-cert", file=sys.stderr)
        return 2
    try:
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    except (OSError, ssl.SSLError) as exc:
        print(f"mailkit: cannot use the certificate: {exc}", file=sys.stderr)
        return 2
    cap_mb = disk_cap_mb(args.db, args.max_db_mb)
    try:
        store = MailStore(args.db, quota_messages=args.quota_messages or None,
                          quota_bytes=int(args.quota_mb * 2**20) or None,
                          max_mail_bytes=int(cap_mb * 2**20) or None,
                          max_db_bytes=int((cap_mb + DISK_CAP_ROOM_MB) * 2**20) if cap_mb else None)
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
                             guess_burst=max(1.0, 2 * args.guess_rate),
                             per_prefix=args.max_per_prefix, bind_sessions=args.bind_sessions,
                             sender_mail_burst=args.mails_at_once, sender_mail_every_s=args.mail_every,
                             sender_bytes_per_day=args.mb_per_day * 2**20,
                             pair_mail_burst=args.pair_mails_at_once, pair_mail_every_s=args.pair_mail_every,
                             pair_bytes_per_day=args.pair_mb_per_day * 2**20,
                             hashes_burst=args.logins_at_once, hashes_per_s=args.login_rate,
                             guess_ceiling_per_s=args.guess_ceiling,
                             guess_ceiling_burst=max(args.guess_ceiling, 10 * args.guess_ceiling))
        server = MailServer(users, host=args.host, port=args.port, store=store, limits=limits, tls=tls)
    except (OSError, StoreError, LocalProtocolError, ValueError) as exc:
        store.close()
        print(f"mailkit: cannot serve: {exc}", file=sys.stderr)
        return 1
    try:
        server.start()
    except (OSError, StoreError, LocalProtocolError, ValueError) as exc:
        store.close()
        print(f"mailkit: cannot serve: {exc}", file=sys.stderr)
        return 1
    if stop_asked.is_set():             # before or during start(), which begins by forgetting it
        server.request_stop()
    try:
        host, port = server.address
        print(f"mailkit listening on {host}:{port}", flush=True)
        if tls:     # (standard output stays the one line that scripts wait for)
            print(f"mailkit: TLS only, certificate {args.tls_cert}", file=sys.stderr, flush=True)
        if uses_public_key(tls):    # (MailServer refused it on any address but loopback)
            print("mailkit: WARNING: this is mailkit's teaching certificate; its private key is public, "
                  "so anyone can impersonate this server. Loopback only; for a class server make your "
                  "own (docs/instructor.md)", file=sys.stderr, flush=True)
        # On standard error (standard output is the one line above, which
        # scripts wait for), even with --quiet: the instructor should see it.
        print(f"mailkit: mail storage cap {f'{cap_mb:g} MB' if cap_mb else 'none'} (--max-db-mb); "
              f"{_limits_line(limits)}", file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        server.close()
    return 0


def _limits_line(limits: ClassLimits) -> str:
    return (f"per user {limits.sender_mail_burst:g} mails at once then 1 every "
            f"{limits.sender_mail_every_s:g} s, {limits.sender_bytes_per_day / 2**20:g} MB a day; "
            f"per recipient {limits.pair_mail_burst:g} then 1 every {limits.pair_mail_every_s:g} s, "
            f"{limits.pair_bytes_per_day / 2**20:g} MB a day")


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
    if (args.cafile or args.server_hostname) and not args.tls:
        print("mailkit: --cafile and --server-hostname are for --tls", file=sys.stderr)
        return 2
    client = MailClient(args.host, args.port, tls=args.tls, cafile=args.cafile,
                        server_hostname=args.server_hostname)
    print(f"mailkit client for {args.host}:{args.port}{' (TLS)' if args.tls else ''}")
    try:
        while client.session_id is None:
            user = _ask("username: ")
            try:
                client.login(user, _read_secret("password: ") if sys.stdin.isatty() else _ask("password: "))
            except ssl.SSLCertVerificationError as exc:   # the same certificate every time
                print(f"TLS: the server's certificate is not accepted: {exc.verify_message}")
                return 1
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
