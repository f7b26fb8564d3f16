"""mailkit's benchmarks: throughput, store scaling, 200 concurrent sessions,
a login storm and the time the course's notebooks take to check.

    python benchmarks/run.py              # the full run (a few minutes)
    python benchmarks/run.py --quick      # under a minute
    python benchmarks/run.py --json       # one JSON object on stdout, nothing else
    python benchmarks/run.py --plot benchmarks/plot.png   # needs matplotlib

Absolute times on a shared machine are noise, so every throughput figure is
a ratio against a baseline measured in the same run: the rounds alternate
baseline and mailkit, and a ratio is the median of the rounds' ratios.
Servers run in subprocesses on 127.0.0.1; the load comes from worker
processes (threads inside each).  See benchmarks/README.md for what each
figure compares.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import load
from load import ROOT, percentile, rate, run_senders

HEADLINE_SENDERS = 32      # senders at once for the headline throughput: ~10% of a class of 300
CLASS_SIZE = 300           # accounts in every benchmark database
SESSIONS, MAILS_EACH = 200, 20
SMALL_STORE, BIG_STORE = 1_000, 50_000

PROFILES = {
    # rounds of alternating measurements, seconds per measurement, the numbers of
    # senders for the plot, logins at once in the login storm, time the notebooks?
    "quick": dict(rounds=3, scaling_rounds=5, duration=0.8, sweep=(), sweep_rounds=1,
                  storm=0, course=False),
    "full": dict(rounds=5, scaling_rounds=5, duration=2.0, sweep=(1, 2, 4, 8, 16, 64, 128),
                 sweep_rounds=3, storm=200, course=True),
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- the measurements -----------------------------------------------------------


def fresh_copy(src: Path, dst: Path) -> Path:
    """Copy a database and flush the copy to disk: otherwise the kernel writes
    the copy (150 MB for the big store) back while mailkit fsyncs, and the
    bigger store looks slower for a reason that has nothing to do with it."""
    shutil.copyfile(src, dst)
    with open(dst, "rb+") as f:
        os.fsync(f.fileno())
    return dst


def measure(pool, server: load.Server, kind: str, senders: int, duration: float, *,
            count: int = 10**9, tag: str = "m") -> dict:
    """Start *server*, run *senders* for *duration* seconds, stop it; the rate,
    the latencies, and the server's CPU per mail and peak memory."""
    with server:
        cpu0 = server.cpu_s()
        result = run_senders(pool, kind, server.address, senders, users=CLASS_SIZE,
                             count=count, duration=duration, lead=0.3, tag=tag)
        cpu = server.cpu_s() - cpu0
        rss = server.status("VmHWM")
    sent = len(result.sent)
    return {
        "per_s": rate(result),
        "sent": sent,
        "errors": len(result.errors) + result.login_errors,
        "error_examples": sorted({text for *_, text in result.errors})[:3],
        "latencies": [lat for _, _, lat, _ in result.sent],
        "server_cpu_us": cpu / sent * 1e6 if sent else float("nan"),
        "client_cpu_us": result.client_cpu_s / sent * 1e6 if sent else float("nan"),
        "rss_mb": rss,
        "result": result,
    }


def throughput(pool, dbs: dict, cfg: dict) -> dict:
    """Headline throughput: rounds of baseline / mailkit (file) / iterative
    baseline / mailkit (:memory:), HEADLINE_SENDERS senders each."""
    runs = {k: [] for k in ("baseline", "file", "iterative", "memory")}
    for r in range(cfg["rounds"]):
        log(f"throughput round {r + 1}/{cfg['rounds']}")
        runs["baseline"].append(measure(pool, load.baseline_server(), "baseline", HEADLINE_SENDERS, cfg["duration"]))
        fresh = fresh_copy(dbs["empty"], dbs["dir"] / f"tp{r}.db")
        runs["file"].append(measure(pool, load.mailkit_server(fresh), "mailkit", HEADLINE_SENDERS, cfg["duration"]))
        runs["iterative"].append(measure(pool, load.baseline_server(iterative=True), "baseline",
                                         HEADLINE_SENDERS, cfg["duration"]))
        runs["memory"].append(measure(pool, load.memory_server(CLASS_SIZE), "mailkit", HEADLINE_SENDERS, cfg["duration"]))

    def med(kind, key="per_s"):
        return statistics.median(m[key] for m in runs[kind])

    def ratio(kind, against):
        return statistics.median(a["per_s"] / b["per_s"] for a, b in zip(runs[kind], runs[against]))

    return {
        "senders": HEADLINE_SENDERS,
        "rounds": cfg["rounds"],
        "emails_per_s": med("file"),
        "baseline_per_s": med("baseline"),
        "ratio": ratio("file", "baseline"),
        "memory_per_s": med("memory"),
        "memory_ratio": ratio("memory", "baseline"),
        "iterative_baseline_per_s": med("iterative"),
        "ratio_vs_iterative": ratio("file", "iterative"),
        "server_cpu_us_per_mail": {k: med(k, "server_cpu_us") for k in runs},
        "client_cpu_us_per_mail": {k: med(k, "client_cpu_us") for k in runs},
        "errors": sum(m["errors"] for ms in runs.values() for m in ms),
        "rounds_per_s": {k: [round(m["per_s"]) for m in ms] for k, ms in runs.items()},
    }


def sweep(pool, dbs: dict, cfg: dict, headline: dict) -> list[dict]:
    """Throughput against the number of senders (for the plot): the median of
    sweep_rounds rounds at each number, the headline's figures at its own."""
    rows = []
    for n in sorted(set(cfg["sweep"]) - {headline["senders"]}):
        runs = {"baseline": [], "file": [], "iterative": [], "memory": []}
        for r in range(cfg["sweep_rounds"]):
            log(f"sweep: {n} senders, round {r + 1}/{cfg['sweep_rounds']}")
            fresh = fresh_copy(dbs["empty"], dbs["dir"] / f"sweep{n}.db")
            runs["baseline"].append(measure(pool, load.baseline_server(), "baseline", n, cfg["duration"]))
            runs["file"].append(measure(pool, load.mailkit_server(fresh), "mailkit", n, cfg["duration"]))
            runs["iterative"].append(measure(pool, load.baseline_server(iterative=True), "baseline", n,
                                             cfg["duration"]))
            runs["memory"].append(measure(pool, load.memory_server(CLASS_SIZE), "mailkit", n, cfg["duration"]))
        med = {k: statistics.median(m["per_s"] for m in ms) for k, ms in runs.items()}
        rows.append({"senders": n, "baseline_per_s": med["baseline"], "emails_per_s": med["file"],
                     "iterative_per_s": med["iterative"], "memory_per_s": med["memory"],
                     "ratio": statistics.median(a["per_s"] / b["per_s"]
                                                for a, b in zip(runs["file"], runs["baseline"]))})
    rows.append({"senders": headline["senders"], "baseline_per_s": headline["baseline_per_s"],
                 "emails_per_s": headline["emails_per_s"], "memory_per_s": headline["memory_per_s"],
                 "iterative_per_s": headline["iterative_baseline_per_s"], "ratio": headline["ratio"]})
    return sorted(rows, key=lambda row: row["senders"])


def store_scaling(pool, dbs: dict, cfg: dict) -> dict:
    """Throughput with BIG_STORE messages stored against SMALL_STORE, alternating,
    each round on a fresh copy so the stores do not grow from round to round."""
    runs = {"small": [], "big": []}
    for r in range(cfg["scaling_rounds"]):
        log(f"store scaling round {r + 1}/{cfg['scaling_rounds']}")
        for size in ("small", "big") if r % 2 == 0 else ("big", "small"):
            fresh = fresh_copy(dbs[size], dbs["dir"] / f"scale-{size}.db")
            runs[size].append(measure(pool, load.mailkit_server(fresh), "mailkit", HEADLINE_SENDERS, cfg["duration"]))
            fresh.unlink()
    return {
        "small_messages": SMALL_STORE, "big_messages": BIG_STORE,
        "small_per_s": statistics.median(m["per_s"] for m in runs["small"]),
        "big_per_s": statistics.median(m["per_s"] for m in runs["big"]),
        "store_scaling_ratio": statistics.median(b["per_s"] / s["per_s"] for s, b in zip(runs["small"], runs["big"])),
        # CPU per mail is steadier than a rate on a shared machine: the same question, asked twice
        "small_server_cpu_us": statistics.median(m["server_cpu_us"] for m in runs["small"]),
        "big_server_cpu_us": statistics.median(m["server_cpu_us"] for m in runs["big"]),
        "rounds_per_s": {k: [round(m["per_s"]) for m in ms] for k, ms in runs.items()},
        "errors": sum(m["errors"] for ms in runs.values() for m in ms),
    }


def concurrency(pool, dbs: dict) -> dict:
    """SESSIONS sessions sending MAILS_EACH mails each, all at once; then count
    every mail in the store: lost (missing) and duplicated (stored twice)."""
    log(f"concurrency: {SESSIONS} sessions x {MAILS_EACH} mails")
    db = fresh_copy(dbs["empty"], dbs["dir"] / "concurrency.db")
    server = load.mailkit_server(db)
    m = measure(pool, server, "mailkit", SESSIONS, float("inf"), count=MAILS_EACH, tag="c")
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute(
            "SELECT subject, COUNT(*) FROM messages WHERE subject LIKE 'c-%' GROUP BY subject"))
    conn.close()
    expected = {f"c-s{s}-{i}" for s in range(SESSIONS) for i in range(MAILS_EACH)}
    acked = {f"c-s{s}-{i}" for s, i, _, _ in m["result"].sent}
    lat = m["latencies"]
    base = measure(pool, load.baseline_server(), "baseline", SESSIONS, float("inf"), count=MAILS_EACH, tag="c")
    return {
        "sessions": SESSIONS, "mails_each": MAILS_EACH,
        "acknowledged": len(acked),
        "lost": len(expected - set(stored)),
        "lost_after_ok": len(acked - set(stored)),
        "duplicated": sum(n - 1 for n in stored.values() if n > 1),
        "unexpected": len(set(stored) - expected),
        "errors": m["errors"], "error_examples": m["error_examples"],
        "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": max(lat) * 1000 if lat else float("nan"),
        "rss_mb": m["rss_mb"],
        "per_s": m["per_s"],
        "baseline_p50_ms": percentile(base["latencies"], 50) * 1000,
        "baseline_p99_ms": percentile(base["latencies"], 99) * 1000,
        "latencies_ms": sorted(x * 1000 for x in lat),
        "baseline_latencies_ms": sorted(x * 1000 for x in base["latencies"]),
    }


def login_storm(dbs: dict, n: int) -> dict:
    """*n* logins at once at the real scrypt cost: how long, how much memory."""
    log(f"login storm: {n} logins at once")
    from mailkit import MailClient

    db = dbs["dir"] / "storm.db"
    load.make_db(db, 20, real_cost=True)
    errors, latencies = [], []
    with load.mailkit_server(db) as server:
        rss_before = server.status("VmRSS")

        def login(i: int) -> None:
            client = MailClient(*server.address, timeout=120)
            t0 = time.perf_counter()
            try:
                client.login(load.user_name(i % 20), load.PASSWORD)
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(repr(exc))

        threads = [threading.Thread(target=login, args=(i,)) for i in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - t0
        rss_peak = server.status("VmHWM")
    return {"logins": n, "seconds": took, "errors": len(errors),
            "p50_ms": percentile(latencies, 50) * 1000, "max_ms": max(latencies, default=0) * 1000,
            "rss_before_mb": rss_before, "rss_peak_mb": rss_peak}


def course_speed() -> dict:
    """``pytest --nbval`` over notebooks/ and labs/, as ``make test`` runs it."""
    paths = [p for p in ("notebooks", "labs") if (ROOT / p).is_dir()]
    notebooks = [p for d in paths for p in (ROOT / d).rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
    if not notebooks:
        return {"seconds": None, "notebooks": 0, "note": "no notebooks yet: the lead fills this figure in"}
    log(f"course speed: pytest --nbval over {len(notebooks)} notebooks")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths, "--nbval",
           "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval-sanitize.cfg"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    took = time.perf_counter() - t0
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"seconds": took, "notebooks": len(notebooks), "returncode": proc.returncode,
            "summary": re.sub(r"=+", "", summary).strip()}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "memory_gb": round(mem_gb, 1),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "load_average": [round(x, 2) for x in os.getloadavg()]}


# -- putting it together --------------------------------------------------------


def prepare(tmp: Path) -> dict:
    log("preparing databases")
    dbs = {"dir": tmp, "empty": tmp / "empty.db", "small": tmp / "small.db", "big": tmp / "big.db"}
    load.make_db(dbs["empty"], CLASS_SIZE)
    load.make_db(dbs["small"], CLASS_SIZE, preload=SMALL_STORE)
    load.make_db(dbs["big"], CLASS_SIZE, preload=BIG_STORE)
    os.sync()              # the 150 MB just written must not be flushed during a measurement
    return dbs


def run(cfg: dict, *, course: bool, storm: int) -> dict:
    started = time.perf_counter()
    info = machine()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(max(2, os.cpu_count() or 2)) as pool, \
            tempfile.TemporaryDirectory(prefix="mailkit-bench-") as tmp:
        dbs = prepare(Path(tmp))
        tp = throughput(pool, dbs, cfg)
        sw = sweep(pool, dbs, cfg, tp)
        sc = store_scaling(pool, dbs, cfg)
        cc = concurrency(pool, dbs)
        st = login_storm(dbs, storm) if storm else None
    cs = course_speed() if course else {"seconds": None, "note": "skipped (--quick; add --course)"}
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        # the figures the issue asks for, by the names it gives
        "emails_per_s": round(tp["emails_per_s"], 1),
        "baseline_per_s": round(tp["baseline_per_s"], 1),
        "ratio": round(tp["ratio"], 3),
        "store_scaling_ratio": round(sc["store_scaling_ratio"], 3),
        "sessions": cc["sessions"],
        "lost": cc["lost"],
        "duplicated": cc["duplicated"],
        "p50_ms": round(cc["p50_ms"], 2),
        "p99_ms": round(cc["p99_ms"], 2),
        "rss_mb": round(cc["rss_mb"], 1),
        "course_s": None if cs.get("seconds") is None else round(cs["seconds"], 1),
        # and everything around them
        "throughput": tp,
        "sweep": sw,
        "store_scaling": sc,
        "concurrency": {k: v for k, v in cc.items() if not k.endswith("latencies_ms")},
        "login_storm": st,
        "course": cs,
        "machine": info,
        "profile": "quick" if cfg is PROFILES["quick"] else "full",
        "mailkit_root": str(load.MAILKIT_ROOT),
        "seconds": round(time.perf_counter() - started, 1),
        "latencies_ms": {"mailkit": [round(x, 3) for x in cc["latencies_ms"]],
                         "baseline": [round(x, 3) for x in cc["baseline_latencies_ms"]]},
    }


def report(res: dict) -> str:
    tp, sc, cc = res["throughput"], res["store_scaling"], res["concurrency"]
    m = res["machine"]
    lines = [
        f"mailkit benchmarks ({res['profile']}, {res['seconds']:.0f} s) on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gb']} GB, {m['os']}, Python {m['python']}, SQLite {m['sqlite']}; "
        f"load average {m['load_average'][0]} -> {m['load_average_end'][0]}",
        "",
        f"Throughput, {tp['senders']} senders, median of {tp['rounds']} rounds (file store, fsync per commit):",
        f"  mailkit            {tp['emails_per_s']:8.0f} mails/s",
        f"  baseline (threads) {tp['baseline_per_s']:8.0f} mails/s   ratio {tp['ratio']:.2f}  (goal >= 0.8)",
        f"  mailkit :memory:   {tp['memory_per_s']:8.0f} mails/s   ratio {tp['memory_ratio']:.2f}",
        f"  baseline (1 at a time) {tp['iterative_baseline_per_s']:4.0f} mails/s   mailkit/it {tp['ratio_vs_iterative']:.2f}",
        "  server CPU per mail (us): " + ", ".join(f"{k} {v:.0f}" for k, v in tp["server_cpu_us_per_mail"].items()),
        "  client CPU per mail (us): " + ", ".join(f"{k} {v:.0f}" for k, v in tp["client_cpu_us_per_mail"].items()),
        "",
        "Sweep (median of the rounds at each number of senders):",
        "  senders  baseline  mailkit  ratio  :memory:  1-at-a-time",
    ]
    for row in res["sweep"]:
        lines.append(f"  {row['senders']:7d} {row['baseline_per_s']:9.0f} {row['emails_per_s']:8.0f} "
                     f"{row['ratio']:6.2f} {row['memory_per_s']:9.0f} {row['iterative_per_s']:12.0f}")
    lines += [
        "",
        f"Store scaling: {sc['big_per_s']:.0f} mails/s with {sc['big_messages']:,} stored, "
        f"{sc['small_per_s']:.0f} with {sc['small_messages']:,}: ratio {sc['store_scaling_ratio']:.2f}  (goal >= 0.9)",
        f"  server CPU per mail: {sc['big_server_cpu_us']:.0f} us with {sc['big_messages']:,} stored, "
        f"{sc['small_server_cpu_us']:.0f} us with {sc['small_messages']:,}",
        "",
        f"Concurrency: {cc['sessions']} sessions x {cc['mails_each']} mails: {cc['acknowledged']} acknowledged, "
        f"lost {cc['lost']}, duplicated {cc['duplicated']}, errors {cc['errors']}",
        f"  latency p50 {cc['p50_ms']:.1f} ms, p99 {cc['p99_ms']:.1f} ms, max {cc['max_ms']:.0f} ms "
        f"(baseline p50 {cc['baseline_p50_ms']:.1f}, p99 {cc['baseline_p99_ms']:.1f}); "
        f"server peak RSS {cc['rss_mb']:.1f} MB",
    ]
    if cc["error_examples"]:
        lines.append(f"  errors: {cc['error_examples']}")
    if res["login_storm"]:
        st = res["login_storm"]
        lines += ["", f"Login storm: {st['logins']} logins at once in {st['seconds']:.1f} s "
                      f"(p50 {st['p50_ms']:.0f} ms, max {st['max_ms']:.0f} ms, errors {st['errors']}); "
                      f"server RSS {st['rss_before_mb']:.0f} MB -> peak {st['rss_peak_mb']:.0f} MB"]
    cs = res["course"]
    lines += ["", "Course speed: " + (f"pytest --nbval over {cs['notebooks']} notebooks: {cs['seconds']:.1f} s "
                                     f"({cs.get('summary', '')})" if cs.get("seconds") is not None else cs["note"])]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = res["sweep"]
    n = [r["senders"] for r in rows]
    left.plot(n, [r["baseline_per_s"] for r in rows], "o--", color="grey", label="baseline (threads, no storage)")
    left.plot(n, [r["emails_per_s"] for r in rows], "o-", color="C0", label="mailkit, SQLite file")
    left.plot(n, [r["memory_per_s"] for r in rows], "s:", color="C1", label="mailkit, :memory:")
    left.plot(n, [r["iterative_per_s"] for r in rows], "^:", color="black", alpha=0.5,
              label="baseline, one connection at a time")
    left.set_xscale("log", base=2)
    left.set_xlabel("senders at once")
    left.set_ylabel("mails per second")
    left.set_title("Throughput against concurrency")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8, loc="center right", bbox_to_anchor=(1, 0.6))
    for name, style in (("mailkit", "C0"), ("baseline", "grey")):
        lat = res["latencies_ms"][name]
        if lat:
            right.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))], color=style,
                       label=f"{name} (p99 {percentile(lat, 99):.0f} ms)")
    right.set_xscale("log")
    right.set_xlabel("latency of one send (ms)")
    right.set_ylabel("fraction of sends")
    cc = res["concurrency"]
    right.set_title(f"Latency CDF, {cc['sessions']} sessions x {cc['mails_each']} mails")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    left.grid(alpha=0.3)
    m = res["machine"]
    fig.suptitle(f"mailkit benchmarks ({res['profile']}): {m['cores']} cores, {m['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds: under a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object, nothing else, on stdout")
    parser.add_argument("--course", action="store_true", help="time the notebooks even with --quick")
    parser.add_argument("--storm", type=int, default=None, metavar="N",
                        help="logins at once in the login storm (0: none; default 200, none with --quick)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write the two plots here (needs matplotlib)")
    parser.add_argument("--save", type=Path, metavar="JSON", help="also write the full results here")
    parser.add_argument("--load", type=Path, metavar="JSON",
                        help="measure nothing: report (and --plot) the results --save wrote")
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="benchmark the mailkit of another checkout (before/after an edit)")
    args = parser.parse_args(argv)
    if args.root:
        load.MAILKIT_ROOT = args.root.resolve()
    cfg = PROFILES["quick" if args.quick else "full"]
    storm = cfg["storm"] if args.storm is None else args.storm
    if args.load:
        res = json.loads(args.load.read_text())
    else:
        res = run(cfg, course=cfg["course"] or args.course, storm=storm)
    if args.plot:
        plot(res, args.plot)
    if args.save:   # everything, the latencies too (for --load --plot)
        args.save.write_text(json.dumps(res, indent=None, separators=(",", ":")) + "\n")
    if args.json:   # the figures, without the 8,000 latencies
        print(json.dumps({k: v for k, v in res.items() if k != "latencies_ms"}))
    else:
        print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
