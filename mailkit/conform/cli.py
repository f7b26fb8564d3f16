"""``python -m mailkit conform server|client|matrix``: the command line.

    python -m mailkit conform server 127.0.0.1:2525 --user alice:wonderland --user bob:builder
    python -m mailkit conform server -- ./myserver {port} {users}
    python -m mailkit conform client -- ./myclient {host} {port}
    python -m mailkit conform matrix --server 127.0.0.1:2525 --client "./myclient {host} {port}"

Exit status: 0 if every required check passed, 1 if one failed, 2 for a
usage error or a program under test that would not start.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import report
from .target import DEFAULT_USERS, AddressTarget, CommandTarget, StartFailed, parse_address

__all__ = ["main"]


def _usage(message: str):
    print(f"python -m mailkit conform: {message}", file=sys.stderr)
    raise SystemExit(2)


def _users(specs: list[str]) -> dict[str, str]:
    users = {}
    for spec in specs:
        name, sep, password = spec.partition(":")
        if not sep or not name or not password:
            _usage(f"--user wants NAME:PASSWORD, got {spec!r}")
        users[name] = password
    if users and len(users) < 2:
        _usage("give at least two --user accounts (a sender and a recipient)")
    return users


def _outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the faults and texts (default: a new one, printed)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    parser.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    parser.add_argument("--gradescope", metavar="FILE",
                        help="also write Gradescope's autograder results.json to FILE")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="show the exchange of passing checks too")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mailkit conform",
                                     description="Conformance checks for any mail server or client "
                                                 "(docs/protocol.md), directly and through a noisy link.")
    sub = parser.add_subparsers(dest="what", required=True, metavar="server|client|matrix")

    server = sub.add_parser("server", help="check a server at HOST:PORT, or one started from a command",
                            description="Check a server. Give HOST:PORT, or -- and a command with "
                                        "{port} (and {users}, {db}, {dir}) that the suite fills in.")
    server.add_argument("address", nargs="?", metavar="HOST:PORT")
    server.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                        help="an account the server has (at least two; default alice:wonderland and "
                             "bob:builder for HOST:PORT, two random ones written to {users} for a command)")
    server.add_argument("--strict", action="store_true", help="the SHOULD checks count too")
    server.add_argument("--no-noise", action="store_true", help="skip the pass through the noisy link")
    server.add_argument("--check", action="append", metavar="NAME",
                        help="run only this check (may be repeated); --list shows them")
    server.add_argument("--list", action="store_true", help="list the checks and the sections they test")
    server.add_argument("--budget", type=float, default=None, metavar="S",
                        help="stop starting checks after S seconds (those left fail as not run)")
    _outputs(server)

    client = sub.add_parser("client", help="check a client program: -- COMMAND {host} {port}",
                            description="Run a client program against a reference server the suite "
                                        "controls, driving it through the 2017 menu on its stdin "
                                        "(docs/protocol.md, 'Write your own client').")
    client.add_argument("--strict", action="store_true", help="the SHOULD checks count too")
    client.add_argument("--list", action="store_true", help="list the checks")
    _outputs(client)

    matrix = sub.add_parser("matrix", help="every client against every server, through noise",
                            description="Who interoperates with whom: each client program sends "
                                        "mail through a noisy link to each server.")
    matrix.add_argument("--server", action="append", default=[], metavar="HOST:PORT|COMMAND",
                        help="a server: HOST:PORT, or a command (quoted) with {port} and {users}")
    matrix.add_argument("--client", action="append", default=[], metavar="COMMAND",
                        help="a client command (quoted) with {host} and {port}")
    matrix.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                        help="accounts of the HOST:PORT servers (as for conform server)")
    matrix.add_argument("--mails", type=int, default=5, help="mails per pair (default 5)")
    matrix.add_argument("--svg", metavar="FILE", help="also draw the matrix as an SVG picture")
    matrix.add_argument("--seed", type=int, default=None)
    matrix.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    args = build_parser().parse_args(argv)
    if getattr(args, "seed", 0) is None:
        import secrets
        args.seed = secrets.randbelow(10**6)
    try:
        if args.what == "server":
            return _server(args, command)
        if args.what == "client":
            return _client(args, command)
        return _matrix(args)
    except StartFailed as exc:
        print(f"conform: {exc}", file=sys.stderr)
        return 2


def _list(checks: dict) -> int:
    for c in checks.values():
        level = "required" if c.required else "SHOULD  "
        print(f"{c.name:42} {level} [{c.section}]{'  (also through noise)' if getattr(c, 'noise', False) else ''}")
    return 0


def _finish(args, suite) -> int:
    if args.json:
        print(report.json_report(suite))
    else:
        print(report.text_report(suite, verbose=args.verbose))
    if args.junit:
        Path(args.junit).write_text(report.junit_xml(suite), encoding="utf-8")
    if args.gradescope:
        Path(args.gradescope).write_text(report.gradescope_json(suite), encoding="utf-8")
    return 0 if suite.ok else 1


def _server(args, command: list[str]) -> int:
    from .context import CHECKS
    from .runner import run_suite
    if args.list:
        return _list(CHECKS)
    users = _users(args.user)
    if command and args.address:
        _usage("give HOST:PORT or -- COMMAND, not both")
    if command:
        target = CommandTarget(command, users or None)
    elif args.address:
        target = AddressTarget(parse_address(args.address), users or DEFAULT_USERS)
    else:
        _usage("give HOST:PORT, or -- and a command with {port}")
    unknown = [n for n in args.check or [] if n not in CHECKS]
    if unknown:
        _usage(f"no such check: {unknown} (--list shows them)")
    try:
        suite = run_suite(target, seed=args.seed, strict=args.strict or bool(args.check),
                          noise=not args.no_noise, only=args.check, budget=args.budget)
    finally:
        if isinstance(target, CommandTarget):
            target.close()
    return _finish(args, suite)


def _client(args, command: list[str]) -> int:
    from .clients import CLIENT_CHECKS, run_client_suite
    if args.list:
        return _list(CLIENT_CHECKS)
    if not command:
        _usage("give -- and the client command, with {host} and {port}")
    suite = run_client_suite(command, seed=args.seed, strict=args.strict)
    return _finish(args, suite)


def _matrix(args) -> int:
    from .matrix import matrix_text, run_matrix
    if not args.server or not args.client:
        _usage("give at least one --server and one --client")
    servers = [s if ":" in s and " " not in s and s.rpartition(":")[2].isdigit() else shlex.split(s)
               for s in args.server]
    clients = [shlex.split(c) for c in args.client]
    result = run_matrix(servers, clients, users=_users(args.user) or None, seed=args.seed, mails=args.mails)
    if args.json:
        import json
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(matrix_text(result))
    if args.svg:
        from ..pictures.matrix import matrix_svg
        Path(args.svg).write_text(matrix_svg(result.rows, result.cols, result.cells), encoding="utf-8")
    return 0
