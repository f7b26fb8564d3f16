"""Two mailkit checkouts under the SAME load at the SAME moment.

    python benchmarks/side_by_side.py --old /tmp/mk-old            # this checkout against an older one
    python benchmarks/side_by_side.py --old A --new B --rounds 8 --seconds 2 --senders 16

On a shared machine, runs of the same code one after the other differ by
3-4x (benchmarks/README.md, issue 21), so a 10 % question cannot be
answered by interleaving alone.  Here both servers (``python -m mailkit
serve`` of each checkout, with load.py's benchmark flags) start together,
and each gets ``--senders`` senders from its own worker processes for the
same ``--seconds``: whatever else the machine does hits both.  Each round
prints both rates and server CPU per mail and their ratios (new / old);
the last line gives the medians.  Standard library and mailkit only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import load
import run


def one_round(pools, roots: dict, empty: Path, tmp: Path, r: int, seconds: float, senders: int) -> dict:
    servers = {}
    try:
        for name, root in roots.items():
            load.MAILKIT_ROOT = root            # read by Server.start(): each server runs its checkout
            servers[name] = load.mailkit_server(run.fresh_copy(empty, tmp / f"{name}{r}.db")).start()
        time.sleep(0.2)
        out: dict = {}

        def drive(name: str, pool) -> None:
            s = servers[name]
            cpu0 = s.cpu_s()
            res = load.run_senders(pool, "mailkit", s.address, senders, users=run.CLASS_SIZE,
                                   count=10**9, duration=seconds, lead=0.5)
            out[name] = {"per_s": load.rate(res), "cpu_us": (s.cpu_s() - cpu0) / max(1, len(res.sent)) * 1e6,
                         "errors": len(res.errors) + res.login_errors}

        threads = [threading.Thread(target=drive, args=(name, pools[name])) for name in roots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out
    finally:
        for s in servers.values():
            s.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the checkout to compare against")
    parser.add_argument("--new", type=Path, default=load.ROOT, help="the checkout measured (default: this one)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="sending time per round")
    parser.add_argument("--senders", type=int, default=16, help="senders per server")
    args = parser.parse_args(argv)
    roots = {"old": args.old.resolve(), "new": args.new.resolve()}
    ctx = multiprocessing.get_context("fork")
    rows = []
    with ctx.Pool(2) as p_old, ctx.Pool(2) as p_new, \
            tempfile.TemporaryDirectory(prefix="mailkit-side-") as tmp:
        empty = Path(tmp) / "empty.db"
        load.make_db(empty, run.CLASS_SIZE)
        for r in range(args.rounds):
            out = one_round({"old": p_old, "new": p_new}, roots, empty, Path(tmp), r, args.seconds, args.senders)
            o, n = out["old"], out["new"]
            rows.append((n["per_s"] / o["per_s"], n["cpu_us"] / o["cpu_us"]))
            print(f"round {r + 1}: load {os.getloadavg()[0]:.1f}; old {o['per_s']:.0f} mails/s "
                  f"{o['cpu_us']:.0f} us/mail, new {n['per_s']:.0f} mails/s {n['cpu_us']:.0f} us/mail "
                  f"(errors {o['errors']}, {n['errors']}); new/old: rate {rows[-1][0]:.3f}, "
                  f"CPU per mail {rows[-1][1]:.3f}", flush=True)
    print(f"median new/old over {len(rows)} rounds: rate {statistics.median(r[0] for r in rows):.3f}, "
          f"server CPU per mail {statistics.median(r[1] for r in rows):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
