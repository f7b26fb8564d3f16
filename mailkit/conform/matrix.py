"""``conform matrix``: every client program against every server, through noise.

For each pair the server is started (a command) or used (HOST:PORT), a
:class:`~mailkit.noise.NoisyLink` that flips bits in frames is put in
front of it, and the client program is driven through the 2017 menu
(docs/protocol.md, "Write your own client") to send *mails* mails from
alice to bob.  Then the suite reads bob's mail from alice directly (no
noise) and counts each subject: a cell is ``ok`` when every mail arrived
exactly once, ``lossy`` when some never arrived (none twice), ``broken``
when one arrived twice, none arrived, or the login failed.  Princeton
COS461's every-client-against-every-server test, with a noisy wire.
"""

from __future__ import annotations

import random
import shlex
import sys
import time
from dataclasses import dataclass, field

from .. import protocol as P
from ..noise import NoisyLink
from .clients import run_program
from .context import SESSION_RE
from .target import DEFAULT_USERS, AddressTarget, CommandTarget, parse_address
from .wire import Wire

__all__ = ["MatrixResult", "Cell", "run_matrix", "matrix_text", "MATRIX_NOISE"]

MATRIX_NOISE = {"rate": 0.1}     # a flipped bit in 1 frame in 10
RUN_BUDGET_S = 20.0


@dataclass
class Cell:
    status: str              # "ok", "lossy", "broken"
    delivered: int           # mails that arrived exactly once
    mails: int
    detail: str = ""
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.delivered}/{self.mails}" + ("" if self.status == "ok" else f" {self.status}")


@dataclass
class MatrixResult:
    rows: list[str]                                   # servers
    cols: list[str]                                   # clients
    cells: list[list[Cell]] = field(default_factory=list)
    seed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"servers": self.rows, "clients": self.cols, "seed": self.seed,
                "seconds": round(self.seconds, 2),
                "cells": [[{"status": c.status, "delivered": c.delivered, "mails": c.mails,
                            "detail": c.detail, "seconds": round(c.seconds, 2)} for c in row]
                          for row in self.cells]}


def _target(server, users):
    if isinstance(server, str):
        return AddressTarget(parse_address(server), users or DEFAULT_USERS)
    if isinstance(server, tuple):
        return AddressTarget(server, users or DEFAULT_USERS)
    return CommandTarget(list(server), users)


def _label(thing) -> str:
    if isinstance(thing, str):
        return thing
    if isinstance(thing, tuple):
        return "%s:%d" % thing
    return " ".join(thing).replace(sys.executable, "python")


def _inbox(address, users: dict[str, str]) -> str:  # raises OSError if it cannot
    """bob's messages from alice, read directly from the server."""
    wire = Wire(tuple(address))
    (sender, _), (recipient, password) = list(users.items())[:2]
    answer = wire.ask(f"{recipient}:{password}".encode(), "log in")
    match = SESSION_RE.fullmatch(answer.text)
    if not match:
        raise OSError(f"{recipient}'s login to read the inbox got {answer.text[:60]!r} ({answer.ending})")
    listing = wire.ask(P.make_frame(match.group(1), "getmsg", sender), "getmsg", half_close=True).text
    # log off: a 2017 server serves one session at a time (and dies of a second login)
    wire.ask(P.make_frame(match.group(1), "logoff"), "logoff", half_close=True)
    return listing


def run_pair(target, client: list[str], *, seed: int, mails: int, budget: float = RUN_BUDGET_S) -> Cell:
    started = time.monotonic()
    rng = random.Random(f"{seed}:{_label(client)}:{target.label}")
    token = "m" + "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(6))
    (sender, password), (recipient, _) = list(target.users.items())[:2]
    lines = [sender, password]
    for i in range(mails):
        lines += ["email", recipient, f"M{i} {token}", f"body {i} {token}"]
    lines.append("logoff")
    with NoisyLink(target.address, seed=seed, **MATRIX_NOISE) as link:
        output, status = run_program(client, link.address, "\n".join(lines) + "\n", budget)
    try:
        listing = _inbox(target.address, target.users)
    except OSError as exc:
        listing, output = "", output + f"\n(reading the inbox failed: {exc})"
        unread = f"; reading bob's inbox failed: {exc}"
    else:
        unread = ""
    copies = [listing.count(f"M{i} {token}\n") + listing.count(f"M{i} {token}\r") for i in range(mails)]
    once = sum(c == 1 for c in copies)
    twice = sum(c > 1 for c in copies)
    detail = (f"copies per mail {copies}; client {'stopped after %g s' % budget if status is None else f'exit {status}'}"
              + unread)
    if twice or once == 0:
        state = "broken"
    elif once < mails:
        state = "lossy"
    else:
        state = "ok"
    return Cell(state, once, mails, detail, time.monotonic() - started)


def run_matrix(servers: list, clients: list[list[str]], *, users: dict[str, str] | None = None,
               seed: int = 0, mails: int = 5, budget: float = RUN_BUDGET_S) -> MatrixResult:
    """Every client (a command with ``{host}`` and ``{port}``) against every
    server (``"HOST:PORT"``, a ``(host, port)`` tuple, or a command with
    ``{port}`` and ``{users}``); never prints."""
    result = MatrixResult([_label(s) for s in servers], [_label(c) for c in clients], seed=seed)
    started = time.monotonic()
    for server in servers:
        target = _target(server, users)
        row = []
        try:
            target.start()
            for client in clients:
                row.append(run_pair(target, client, seed=seed, mails=mails, budget=budget))
                if getattr(target, "alive", lambda: True)() is False:
                    row[-1].status, row[-1].detail = "broken", row[-1].detail + "; the server died"
                    target.restart()
        except Exception as exc:          # a server that would not start: its whole row says so
            row += [Cell("broken", 0, mails, f"{type(exc).__name__}: {exc}"[:300])
                    for _ in range(len(clients) - len(row))]
        finally:
            getattr(target, "close", target.stop)()
        result.cells.append(row)
    result.seconds = time.monotonic() - started
    return result


def matrix_text(result: MatrixResult) -> str:
    """The matrix as a table: a row per server, a column per client."""
    width = max(12, *(len(c.label) for row in result.cells for c in row))
    lines = [f"clients (columns) against servers (rows), each through a link flipping a bit in "
             f"{MATRIX_NOISE['rate']:.0%} of frames; seed {result.seed}", ""]
    for j, name in enumerate(result.cols):
        lines.append(f"  C{j + 1} = {name}")
    lines.append("")
    lines.append(f"{'':{max(len(r) for r in result.rows)}}  " + "  ".join(f"{'C%d' % (j + 1):>{width}}"
                                                                         for j in range(len(result.cols))))
    for name, row in zip(result.rows, result.cells):
        lines.append(f"{name:{max(len(r) for r in result.rows)}}  " + "  ".join(f"{c.label:>{width}}" for c in row))
    lines.append("")
    lines.append("ok: every mail exactly once; lossy: some never arrived; broken: one arrived twice, "
                 "or none, or the login failed")
    for name, row in zip(result.rows, result.cells):
        for j, c in enumerate(row):
            if c.status != "ok":
                lines.append(f"  {name} x C{j + 1}: {c.detail}")
    return "\n".join(lines)
