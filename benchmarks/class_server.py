"""One student against the class: the abuse figures of issue 12 (part B).

Each scenario starts ``python -m mailkit serve`` in a subprocess (on
127.0.0.1, port 0) from the checkout given by ``--root`` (default: this
one, so the same script measures before and after an edit), attacks it
from 127.0.0.3 and serves an honest client from 127.0.0.2, and prints one
JSON object.  Every loop is bounded in count and time; loopback only.

    python benchmarks/class_server.py conns        # B1: 600 held connections
    python benchmarks/class_server.py throttle     # B2: wrong passwords from another address
    python benchmarks/class_server.py guess        # B3: session ids in the log, guesses/s
    python benchmarks/class_server.py longnames    # B4: 1 MB user names
    python benchmarks/class_server.py quota        # B5: 200 x 1 MB mails, 4 dumps at once
    python benchmarks/class_server.py storm        # B6: N logins at once at the real hash cost
    python benchmarks/class_server.py diskfull     # B7: a full disk, an unopenable DB, file modes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mailkit.protocol import make_frame  # noqa: E402

HONEST, ATTACKER = "127.0.0.2", "127.0.0.3"
USERS = {"alice": "wonderland", "bob": "builder"}


class Served:
    """``python -m mailkit serve`` in a subprocess; its log goes to a file."""

    def __init__(self, root: Path, db: Path, *extra: str, log: Path | None = None, env=None):
        args = [sys.executable, "-m", "mailkit", "serve", "--port", "0", "--db", str(db), *extra]
        if (root / "mailkit" / "limits.py").exists():      # --users-file: no password in `ps`
            users = db.with_suffix(".users")
            users.write_text("".join(f"{n}:{p}\n" for n, p in USERS.items()))
            users.chmod(0o600)
            args += ["--users-file", str(users)]
        else:                                               # an older mailkit: only --user
            for name, password in USERS.items():
                args += ["--user", f"{name}:{password}"]
        self.log = log
        self._err = open(log, "wb") if log else subprocess.DEVNULL
        if log is None:
            args.append("--quiet")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._err, text=True, cwd=root,
                                     env={**os.environ, "PYTHONPATH": str(root), **(env or {})})
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        host, port = line.strip().rpartition(" ")[2].rsplit(":", 1)
        self.address = (host, int(port))

    def mb(self, key: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        if self.log:
            self._err.close()


def connect(address, source: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(address)
    return sock


def request(address, data: bytes, source: str = HONEST, timeout: float = 10.0) -> bytes:
    with connect(address, source, timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def login(address, user="alice", source: str = HONEST) -> str:
    reply = request(address, f"{user}:{USERS[user]}".encode(), source).decode()
    if not reply.startswith("OK:"):
        raise RuntimeError(f"login failed: {reply}")
    return reply[3:]


# -- B1 ---------------------------------------------------------------------------


def conns(root: Path, tmp: Path, held: int = 600, requests: int = 60) -> dict:
    """*held* idle connections from the attacker, re-opened as the server
    closes them; the honest client makes *requests* requests meanwhile."""
    served = Served(root, tmp / "b1.db")
    stop = threading.Event()
    opened = [0]

    def attacker():
        socks = []
        end = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < end:
            while len(socks) < held:
                try:
                    s = connect(served.address, ATTACKER, 2)
                    s.setblocking(False)
                    socks.append(s)
                    opened[0] += 1
                except OSError:
                    break
            readable, _, _ = select.select(socks, [], [], 0.05)
            for s in readable:      # closed (or answered "busy"): open another
                s.close()
                socks.remove(s)
        for s in socks:
            s.close()

    try:
        t = threading.Thread(target=attacker)
        t.start()
        time.sleep(2.0)
        sid = None
        served_ok, took = 0, []
        for i in range(requests):
            t0 = time.monotonic()
            try:
                if sid is None:
                    sid = login(served.address)
                    ok = True
                else:
                    ok = request(served.address, make_frame(sid, "count"), timeout=5).startswith(b"OK")
            except Exception:  # noqa: BLE001 - counted
                ok = False
            took.append(time.monotonic() - t0)
            served_ok += ok
            time.sleep(0.05)
        stop.set()
        t.join()
    finally:
        served.stop()
    return {"held": held, "requests": requests, "served": served_ok, "max_s": round(max(took), 3),
            "attacker_connections_opened": opened[0]}


# -- B2 ---------------------------------------------------------------------------


def throttle(root: Path, tmp: Path, duration: float = 65.0, wrong: int = 15, burst: int = 5,
             period: float = 30.5) -> dict:
    """*wrong* wrong passwords for alice from the attacker, in bursts of
    *burst* every *period* seconds (15 in 65 s: the old lock-out of 30 s
    after 5 wrong, renewed as soon as it ends); alice logs in from her own
    address every 2 s for *duration* seconds."""
    served = Served(root, tmp / "b2.db")
    stop = threading.Event()

    def attacker():
        for b in range(wrong // burst):
            for i in range(burst):
                try:
                    request(served.address, f"alice:guess{b}-{i}".encode(), ATTACKER)
                except OSError:
                    pass
            if stop.wait(period):
                return

    try:
        t = threading.Thread(target=attacker)
        t.start()
        time.sleep(0.5)
        ok = tries = 0
        end = time.monotonic() + duration
        while time.monotonic() < end:
            tries += 1
            ok += request(served.address, b"alice:wonderland").startswith(b"OK:")
            time.sleep(2.0)
        stop.set()
        t.join()
    finally:
        served.stop()
    return {"wrong_passwords": wrong, "over_s": duration, "alice_logins": tries, "alice_ok": ok}


# -- B3 ---------------------------------------------------------------------------


def guess(root: Path, tmp: Path, seconds: float = 3.0, threads: int = 4) -> dict:
    log = tmp / "b3.log"
    served = Served(root, tmp / "b3.db", log=log)
    try:
        sid = login(served.address)
        request(served.address, make_frame(sid, "count"))
        counts = {"checked": 0, "limited": 0, "other": 0}
        lock = threading.Lock()
        end = time.monotonic() + seconds

        def guesser(k):
            n = 0
            while time.monotonic() < end:
                n += 1
                g = f"{(k * 7919 + n * 104729) % 10**10:010d}"
                try:
                    reply = request(served.address, make_frame(g, "dump"), ATTACKER).decode()
                except OSError:
                    reply = ""
                kind = ("checked" if "unknown session id" in reply else
                        "limited" if "too many" in reply else "other")
                with lock:
                    counts[kind] += 1

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(guesser, range(threads)))
        # the honest client is still served
        honest_ok = request(served.address, make_frame(sid, "count")).startswith(b"OK")
    finally:
        served.stop()
    text = log.read_text(errors="replace")
    return {"session_id_in_log": sid in text, "seconds": seconds,
            "guesses_checked_per_s": round(counts["checked"] / seconds),
            "guesses_limited_per_s": round(counts["limited"] / seconds),
            "other": counts["other"], "honest_ok_after": honest_ok}


# -- B4 ---------------------------------------------------------------------------


def longnames(root: Path, tmp: Path, n: int = 300, size: int = 1_000_000) -> dict:
    log = tmp / "b4.log"
    served = Served(root, tmp / "b4.db", log=log)
    try:
        login(served.address)
        time.sleep(0.5)
        rss0, log0 = served.mb("VmRSS"), log.stat().st_size
        replies = set()
        for i in range(n):
            name = (f"u{i:04d}" + "x" * size)[:size]
            try:
                r = request(served.address, f"{name}:pw".encode(), ATTACKER, timeout=30)
                replies.add(r[:50].decode(errors="replace"))
            except OSError as exc:
                replies.add(type(exc).__name__)
        time.sleep(1.0)
        rss1, log1 = served.mb("VmRSS"), log.stat().st_size
        ok = request(served.address, b"alice:wonderland").startswith(b"OK:")
    finally:
        served.stop()
    return {"names": n, "bytes_each": size, "rss_growth_mb": round(rss1 - rss0, 1),
            "log_growth_mb": round((log1 - log0) / 1e6, 2), "replies": sorted(replies)[:3],
            "alice_ok_after": ok}


# -- B5 ---------------------------------------------------------------------------


def quota(root: Path, tmp: Path, mails: int = 200, size: int = 1_000_000, readers: int = 4) -> dict:
    served = Served(root, tmp / "b5.db")
    try:
        sid = login(served.address)
        body = "m" * size
        replies = {}
        for i in range(mails):
            r = request(served.address, make_frame(sid, "email", "alice", f"big {i}", body),
                        timeout=30).decode()
            key = r.split(" (")[0][:60]
            replies[key] = replies.get(key, 0) + 1
        time.sleep(0.5)
        rss0 = served.mb("VmRSS")
        sizes = []

        def dump(_):
            sizes.append(len(request(served.address, make_frame(sid, "dump"), timeout=120)))

        honest = {}

        def normal():
            time.sleep(0.3)
            t0 = time.monotonic()
            bsid = login(served.address, "bob")
            request(served.address, make_frame(bsid, "count"))
            honest["login_count_s"] = round(time.monotonic() - t0, 3)

        with ThreadPoolExecutor(readers + 1) as pool:
            futs = [pool.submit(dump, k) for k in range(readers)] + [pool.submit(normal)]
            for f in futs:
                f.result()
        peak = served.mb("VmHWM")
    finally:
        served.stop()
    return {"mails": mails, "body_bytes": size, "email_replies": replies, "rss_before_dumps_mb": rss0,
            "peak_rss_mb": peak, "dump_reply_bytes": sorted(sizes), **honest}


# -- B6 ---------------------------------------------------------------------------


def storm(root: Path, tmp: Path, n: int = 200, senders: int = 200) -> dict:
    served = Served(root, tmp / "b6.db")
    try:
        login(served.address)
        time.sleep(0.5)
        rss0 = served.mb("VmRSS")
        ok = [0]
        lock = threading.Lock()
        start = threading.Barrier(min(n, senders))

        def one(i):
            if i < senders:
                try:
                    start.wait(10)
                except threading.BrokenBarrierError:
                    pass
            src = f"127.0.{1 + i // 250}.{2 + i % 250}"        # a class: distinct addresses
            try:
                good = request(served.address, b"alice:wonderland", src, timeout=120).startswith(b"OK:")
            except OSError:
                good = False
            with lock:
                ok[0] += good

        t0 = time.monotonic()
        with ThreadPoolExecutor(senders) as pool:
            list(pool.map(one, range(n)))
        took = time.monotonic() - t0
        peak = served.mb("VmHWM")
        time.sleep(3.0)
        after = served.mb("VmRSS")
    finally:
        served.stop()
    return {"logins": n, "ok": ok[0], "took_s": round(took, 1), "rss_before_mb": rss0,
            "peak_rss_mb": peak, "rss_3s_after_mb": after, "held_after_mb": round(after - rss0, 1)}


# -- B7 ---------------------------------------------------------------------------


def diskfull(root: Path, tmp: Path) -> dict:
    out: dict = {}
    mnt = tmp / "tiny"
    mnt.mkdir()
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode == 0:
        try:
            served = Served(root, mnt / "full.db")
            try:
                sid = login(served.address)
                replies = {}
                acked = 0
                for i in range(100):
                    r = request(served.address, make_frame(sid, "email", "alice", f"s{i}", "x" * 30_000)).decode()
                    replies[r[:70]] = replies.get(r[:70], 0) + 1
                    acked += r.startswith("OK: Email Sent")
                stored = len(re.findall(r"^--- message", request(served.address, make_frame(sid, "dump")).decode(),
                                        re.M))
            finally:
                served.stop()
            out["disk_full_replies"] = replies
            out["acked"], out["stored"] = acked, stored
        finally:
            subprocess.run(["umount", str(mnt)])
    else:
        out["disk_full"] = "skipped (needs root for a tmpfs)"
    r = subprocess.run([sys.executable, "-m", "mailkit", "serve", "--port", "0", "--db",
                        str(tmp / "no" / "such" / "dir" / "x.db")], capture_output=True, text=True,
                       cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=30)
    out["bad_db_exit"], out["bad_db_stderr_lines"] = r.returncode, len(r.stderr.splitlines())
    out["bad_db_traceback"] = "Traceback" in r.stderr
    out["bad_db_names_path"] = "no/such/dir" in r.stderr
    served = Served(root, tmp / "mode.db")
    try:
        login(served.address)
        out["modes"] = {p.name: oct(p.stat().st_mode & 0o777) for p in sorted(tmp.glob("mode.db*"))}
        cmdline = Path(f"/proc/{served.proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        out["password_in_ps"] = "wonderland" in cmdline
    finally:
        served.stop()
    return out


SCENARIOS = {f.__name__: f for f in (conns, throttle, guess, longnames, quota, storm, diskfull)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose mailkit serves")
    parser.add_argument("-n", type=int, help="storm: how many logins (default 200)")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            kwargs = {"n": args.n} if name == "storm" and args.n else {}
            result = SCENARIOS[name](args.root.resolve(), Path(tmp), **kwargs)
        print(json.dumps({"scenario": name, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
