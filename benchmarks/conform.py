"""How long a full ``conform server`` run against ``mailkit serve`` takes
(issue 22: under 10 s on 2 cores, so a student runs it after every change).

    .venv/bin/python benchmarks/conform.py [--runs 3] [--json]

Each run is the command a student types (a new process that starts the
server itself), timed from outside.  Times on a shared machine are noise,
so the report also gives a baseline measured in the same run: the same
checks against examples/server.c (built here with gcc, when there is one),
and the ratio.  It splits where the time goes (the direct pass, the pass
through the noisy link, durability's kill-and-restart) from the suite's
JSON.  Standard library only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVE = [sys.executable, "-m", "mailkit", "serve", "--port", "{port}", "--db", "{db}",
         "--users-file", "{users}", "--quiet"]


def one_run(server: list[str], seed: int) -> dict:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mailkit", "conform", "server", "--json", "--seed", str(seed),
                          "--", *server], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    report = json.loads(out.stdout)
    split: dict[str, float] = {}
    for r in report["results"]:
        key = "durability" if r["check"] == "durability/after-OK" else r["mode"]
        split[key] = split.get(key, 0.0) + r["seconds"]
    failed = [r["name"] for r in report["results"] if r["status"] not in ("pass", "skip")]
    return {"wall_s": wall, "ok": report["ok"], "failed": failed, "checks": len(report["results"]),
            "split": split}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    servers = {"mailkit serve": SERVE}
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("gcc"):
            subprocess.run(["gcc", "-O2", "-pthread", "-o", f"{tmp}/server", str(ROOT / "examples" / "server.c")],
                           check=True)
            servers["examples/server.c"] = [f"{tmp}/server", "{port}", "{users}", "{db}"]
        runs: dict[str, list[dict]] = {name: [] for name in servers}
        for i in range(args.runs):                       # alternate, so load hits both alike
            for name, words in servers.items():
                runs[name].append(one_run(words, seed=i + 1))
                print(f"run {i + 1} {name}: {runs[name][-1]['wall_s']:.2f} s", file=sys.stderr)
    result = {}
    for name, rs in runs.items():
        result[name] = {
            "median_s": round(statistics.median(r["wall_s"] for r in rs), 2),
            "max_s": round(max(r["wall_s"] for r in rs), 2),
            "all_ok": all(r["ok"] for r in rs),
            "failed": sorted({f for r in rs for f in r["failed"]}),
            "checks": rs[0]["checks"],
            "split_s": {k: round(statistics.median(r["split"].get(k, 0.0) for r in rs), 2)
                        for k in rs[0]["split"]},
        }
    if "examples/server.c" in result:
        result["ratio_to_c_server"] = round(result["mailkit serve"]["median_s"]
                                            / result["examples/server.c"]["median_s"], 2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, r in result.items():
            print(f"{name}: {r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
