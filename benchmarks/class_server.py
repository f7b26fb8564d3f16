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

Issue 21 (one student against classmates): one scenario per row of its
table, each with the honest student's success rate and p50/p99:

    python benchmarks/class_server.py fillbox      # 1,000 mails to alice from one sender
    python benchmarks/class_server.py fillall      # eve mails 200 classmates from 20 addresses
    python benchmarks/class_server.py filldisk     # 300 x 1 MB mails round the class
    python benchmarks/class_server.py madeup       # made-up user names, 1 then 10 addresses
    python benchmarks/class_server.py spread       # alice's password from 2,000 addresses
    python benchmarks/class_server.py drip         # 20 addresses x 31 dripping connections
    python benchmarks/class_server.py dumps        # 16 x 32 unread 2 MB dumps
    python benchmarks/class_server.py guessids     # session ids from 200 addresses
    python benchmarks/class_server.py lognight     # how fast refusals grow the log
    git archive 189710f | tar -x -C /tmp/mk-old    # the server before issue 21
    python benchmarks/class_server.py classmates --old /tmp/mk-old --out /tmp/rows.json
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



# == issue 21: one student against classmates ======================================
#
# Each row of issue 21's table, against the server in --root (run twice:
# the old checkout and this one; ``classmates`` does both side by side).
# The honest student on 127.0.0.2 sends a `count` every 0.25 s and logs in
# every 2 s throughout; each row reports the attack's figure and the
# honest student's success rate and p50/p99 (seconds).

CLASS = [f"s{i:03d}" for i in range(200)]      # 200 classmates, for the rows that need them


class Honest:
    """The honest student: a count every 0.25 s, a login every 2 s."""

    def __init__(self, address):
        self.address = address
        self.results: list[tuple[str, bool, float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    MIN_S = 5.0         # at least this long, so that a quick attack still has a sample

    def __enter__(self):
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.wait(max(0.0, self._started + self.MIN_S - time.monotonic()))
        self._stop.set()
        self._thread.join(30)

    def _one(self, kind: str, data: bytes) -> bytes:
        t0 = time.monotonic()
        try:
            reply = request(self.address, data, HONEST, timeout=5)
            ok = reply.startswith(b"OK")
            why = "" if ok else reply[:40].decode(errors="replace")
        except OSError as exc:
            reply, ok, why = b"", False, type(exc).__name__
        self.results.append((kind, ok, time.monotonic() - t0, why))
        return reply

    def _run(self):
        sid, next_login = None, 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_login or sid is None:
                reply = self._one("login", b"alice:wonderland")
                if reply.startswith(b"OK:"):
                    sid = reply[3:].decode()
                next_login = time.monotonic() + 2.0
            else:
                self._one("count", make_frame(sid, "count"))
            self._stop.wait(0.25)

    def summary(self) -> dict:
        took = sorted(t for _, _, t, _ in self.results)
        def pct(p):
            return round(took[min(len(took) - 1, int(p * len(took)))], 3) if took else None
        out = {"honest_ok": f"{sum(ok for _, ok, _, _ in self.results)}/{len(self.results)}",
               "honest_p50_s": pct(0.50), "honest_p99_s": pct(0.99)}
        for kind in ("count", "login"):
            rs = [r for r in self.results if r[0] == kind]
            out[f"honest_{kind}s"] = f"{sum(ok for _, ok, _, _ in rs)}/{len(rs)}"
        fails = {}
        for _, ok, _, why in self.results:
            if not ok:
                fails[why] = fails.get(why, 0) + 1
        if fails:
            out["honest_failures"] = fails
        return out


def served_class(root: Path, tmp: Path, name: str, *, accounts: bool = False, log: Path | None = None,
                 extra=()) -> Served:
    """A server with alice, bob, eve, mallory (and the 200 classmates)."""
    USERS.update(eve="apple", mallory="pear")
    if accounts:
        USERS.update({n: "pw" for n in CLASS})
    try:
        return Served(root, tmp / f"{name}.db", *extra, log=log)
    finally:
        for n in CLASS:
            USERS.pop(n, None)


def run_for(seconds: float, threads: int, fn) -> None:
    """Call ``fn(k, i)`` in *threads* threads for *seconds* (or until it returns False)."""
    end = time.monotonic() + seconds

    def worker(k):
        i = 0
        while time.monotonic() < end:
            try:
                if fn(k, i) is False:
                    return
            except OSError:
                pass
            i += 1

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))


def tally() -> tuple[dict, threading.Lock]:
    return {}, threading.Lock()


def count_reply(counts: dict, lock, reply: bytes) -> None:
    key = reply[:28].decode(errors="replace") or "(nothing)"
    with lock:
        counts[key] = counts.get(key, 0) + 1


def fillbox(root: Path, tmp: Path) -> dict:
    """Fill alice's mailbox from one address: 1,000 one-byte mails."""
    served = served_class(root, tmp, "fillbox")
    try:
        with Honest(served.address) as honest:
            eve = login(served.address, "eve", ATTACKER)
            counts, lock = tally()
            t0 = time.monotonic()
            run_for(60, 8, lambda k, i: (i * 8 + k < 1000) and count_reply(
                counts, lock, request(served.address, make_frame(eve, "email", "alice", f"x{k}-{i}", "x"),
                                      ATTACKER)) is None)
            took = time.monotonic() - t0
            bob = login(served.address, "bob")
            bob_reply = request(served.address, make_frame(bob, "email", "alice", "hi", "from bob")).decode()
            alice = login(served.address)
            cleared = request(served.address, make_frame(alice, "delmsg", "*", "*")).decode()
            left = request(served.address, make_frame(alice, "count")).decode()
        return {"attack": f"1000 one-byte mails eve->alice in {took:.2f} s: "
                          f"{counts.get('OK: Email Sent', 0)} stored", "replies": counts,
                "bob_to_alice": bob_reply[:90], "alice_delmsg_*_*": cleared, "alice_count_after": left,
                **honest.summary()}
    finally:
        served.stop()


def fillall(root: Path, tmp: Path, seconds: float = 10.0) -> dict:
    """eve mails the 200 classmates from 20 addresses, as fast as she can."""
    served = served_class(root, tmp, "fillall", accounts=True)
    try:
        with Honest(served.address) as honest:
            sids = [login(served.address, "eve", f"127.0.3.{a + 1}") for a in range(20)]
            counts, lock = tally()
            run_for(seconds, 16, lambda k, i: count_reply(counts, lock, request(
                served.address, make_frame(sids[(k + i) % 20], "email", CLASS[(k * 131 + i) % 200], "x", "x"),
                f"127.0.3.{(k + i) % 20 + 1}")))
        stored = counts.get("OK: Email Sent", 0)
        return {"attack": f"{stored} mails stored in {seconds:g} s ({stored / seconds:.0f}/s) from 20 addresses",
                "replies": counts, **honest.summary()}
    finally:
        served.stop()


def filldisk(root: Path, tmp: Path, mails: int = 300) -> dict:
    """mallory sends 1 MB mails round the class (at most *mails*: 300 MB)."""
    served = served_class(root, tmp, "filldisk", accounts=True)
    try:
        with Honest(served.address) as honest:
            sid = login(served.address, "mallory", ATTACKER)
            body = "d" * 1_000_000
            counts, lock = tally()
            t0 = time.monotonic()
            run_for(60, 4, lambda k, i: (i * 4 + k < mails) and count_reply(counts, lock, request(
                served.address, make_frame(sid, "email", CLASS[(i * 4 + k) % 200], "big", body), ATTACKER,
                timeout=30)) is None)
            took = time.monotonic() - t0
        db_mb = sum(p.stat().st_size for p in tmp.glob("filldisk.db*")) / 2**20
        return {"attack": f"{mails} x 1 MB mails in {took:.1f} s: database {db_mb:.0f} MB",
                "replies": counts, **honest.summary()}
    finally:
        served.stop()


def madeup(root: Path, tmp: Path, seconds: float = 10.0) -> dict:
    """Logins with made-up user names: one address x 32, then 10 addresses x 8."""
    out = {}
    for label, addresses, threads in (("1 address", 1, 32), ("10 addresses", 10, 80)):
        served = served_class(root, tmp, f"madeup{addresses}")
        try:
            with Honest(served.address) as honest:
                counts, lock = tally()
                run_for(seconds, threads, lambda k, i: count_reply(counts, lock, request(
                    served.address, f"nobody{k}x{i}:guess".encode(), f"127.0.4.{k % addresses + 1}",
                    timeout=30)))
            checked = sum(v for r, v in counts.items() if r.startswith("KO: wrong username"))
            logins = [t for kind, ok, t, _ in honest.results if kind == "login"]
            out[label] = {"hashes_per_s": round(checked / seconds, 1), "replies": counts,
                          "honest_login_p50_s": round(sorted(logins)[len(logins) // 2], 3) if logins else None,
                          "honest_login_max_s": round(max(logins), 3) if logins else None,
                          **honest.summary()}
        finally:
            served.stop()
    return out


def spread(root: Path, tmp: Path, seconds: float = 15.0, addresses: int = 2000) -> dict:
    """alice's password from a fresh address per guess (2,000 addresses)."""
    served = served_class(root, tmp, "spread")
    try:
        login(served.address)                       # alice's own address: she has logged in from it
        with Honest(served.address) as honest:
            counts, lock = tally()
            run_for(seconds, 16, lambda k, i: count_reply(counts, lock, request(
                served.address, f"alice:guess{k}-{i}".encode(),
                f"127.1.{((i * 16 + k) % addresses) // 250}.{((i * 16 + k) % addresses) % 250 + 1}",
                timeout=30)))
        checked = sum(v for r, v in counts.items() if r.startswith("KO: wrong username"))
        logins = [t for kind, ok, t, _ in honest.results if kind == "login"]
        return {"attack": f"{checked / seconds:.1f} real checks/s ({checked * 3600 / seconds:,.0f} an hour)",
                "replies": counts, "alice_login_max_s": round(max(logins), 3) if logins else None,
                **honest.summary()}
    finally:
        served.stop()


def drip(root: Path, tmp: Path, seconds: float = 15.0, addresses: int = 20, per: int = 31,
         one_net: bool = True) -> dict:
    """A byte every 0.45 s on *per* connections from each of *addresses*."""
    served = served_class(root, tmp, "drip")
    frame = b"0123456789:email:bob:slow:" + b"x" * 200
    src = [f"127.0.1.{a + 1}" if one_net else f"127.0.{10 + a}.1" for a in range(addresses)]
    stop = threading.Event()
    opened = [0]

    def dripper():
        socks = {}                              # sock -> (address index, bytes sent)
        while not stop.is_set():
            for a in range(addresses):
                have = sum(1 for v in socks.values() if v[0] == a)
                for _ in range(per - have):
                    try:
                        s = connect(served.address, src[a], 1)
                        s.setblocking(False)
                        socks[s] = (a, 0)
                        opened[0] += 1
                    except OSError:
                        break
            for s, (a, n) in list(socks.items()):
                try:
                    if select.select([s], [], [], 0)[0]:
                        raise OSError
                    s.send(frame[n % len(frame):n % len(frame) + 1])
                    socks[s] = (a, n + 1)
                except OSError:
                    s.close()
                    del socks[s]
            stop.wait(0.45)
        for s in socks:
            s.close()

    try:
        t = threading.Thread(target=dripper)
        t.start()
        time.sleep(1.0)
        with Honest(served.address) as honest:
            time.sleep(seconds)
        stop.set()
        t.join()
        return {"attack": f"{addresses} addresses x {per} dripping ({'one /24' if one_net else f'{addresses} /24s'}),"
                          f" {opened[0]} connections opened", **honest.summary()}
    finally:
        served.stop()


def dumps(root: Path, tmp: Path, seconds: float = 15.0, addresses: int = 16, per: int = 32) -> dict:
    """2 MB dumps never read, from 16 addresses (16 /24s) x 32."""
    served = served_class(root, tmp, "dumps")
    try:
        sid = login(served.address, "eve", ATTACKER)
        for i in range(2):
            request(served.address, make_frame(sid, "email", "eve", f"big {i}", "b" * 1_000_000), ATTACKER, 30)
        time.sleep(0.5)
        rss0 = served.mb("VmRSS")
        stop = threading.Event()

        def holder():
            socks = []
            while not stop.is_set():
                while len(socks) < addresses * per and not stop.is_set():
                    a = len(socks) % addresses
                    try:
                        s = connect(served.address, f"127.0.{20 + a}.1", 2)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                        s.sendall(make_frame(sid, "dump"))
                        s.shutdown(socket.SHUT_WR)
                        socks.append(s)
                    except OSError:
                        break
                stop.wait(0.5)
                for s in list(socks):               # closed by the server: open another
                    try:
                        if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                            s.close()
                            socks.remove(s)
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        socks.remove(s)
            for s in socks:
                s.close()

        t = threading.Thread(target=holder)
        t.start()
        time.sleep(1.0)
        with Honest(served.address) as honest:
            time.sleep(seconds)
        peak = served.mb("VmHWM")
        stop.set()
        t.join()
        return {"attack": f"{addresses} x {per} unread 2 MB dumps: server RSS {rss0:.0f} -> peak {peak:.0f} MB",
                **honest.summary()}
    finally:
        served.stop()


def guessids(root: Path, tmp: Path, seconds: float = 8.0, addresses: int = 200) -> dict:
    """Session ids guessed from 200 addresses."""
    served = served_class(root, tmp, "guessids")
    try:
        with Honest(served.address) as honest:
            counts, lock = tally()
            run_for(seconds, 32, lambda k, i: count_reply(counts, lock, request(
                served.address, make_frame(f"{(k * 7919 + i * 104729) % 10**10:010d}", "count"),
                f"127.2.{((i * 32 + k) % addresses) // 100}.{((i * 32 + k) % addresses) % 100 + 1}")))
        checked = sum(v for r, v in counts.items() if "unknown session" in r)
        per_s = checked / seconds
        chance = 1 - (1 - 300 / 1e10) ** (per_s * 3 * 3600)
        return {"attack": f"{per_s:.0f} checked/s; {chance:.1%} chance to hit one of 300 sessions in 3 h",
                "replies": counts, **honest.summary()}
    finally:
        served.stop()


def lognight(root: Path, tmp: Path, seconds: float = 20.0) -> dict:
    """Mixed refusals from 20 addresses; how fast does the log grow?"""
    log = tmp / "night.log"
    served = served_class(root, tmp, "lognight", log=log)
    try:
        with Honest(served.address) as honest:
            def attack(k, i):
                src = f"127.0.5.{k % 20 + 1}"
                # cheap refusals (no password hash), as fast as they come back
                data = [make_frame(f"{(k * 31 + i) % 10**10:010d}", "dump"), b"garbage without a frame",
                        b"x" * 40 + b":pw"][i % 3]
                request(served.address, data, src, timeout=10)
            run_for(seconds, 20, attack)
        size = log.stat().st_size
        per_hour = size / seconds * 3600 / 2**20
        return {"attack": f"{size / 2**20:.2f} MB of log in {seconds:g} s = {per_hour:,.0f} MB/hour at this rate",
                **honest.summary()}
    finally:
        served.stop()


ROWS = {f.__name__: f for f in (fillbox, fillall, filldisk, madeup, spread, drip, dumps, guessids, lognight)}
SCENARIOS.update(ROWS)
SCENARIOS["drip_nets"] = lambda root, tmp: drip(root, tmp, one_net=False)


def classmates(old: Path, new: Path, rows: list[str], out: Path | None) -> dict:
    """Each row against the old and the new server, one after the other."""
    results = {}
    for name in rows:
        results[name] = {}
        for side, root in (("old", old), ("new", new)):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.monotonic()
                try:
                    results[name][side] = SCENARIOS[name](root.resolve(), Path(tmp))
                except Exception as exc:  # noqa: BLE001 - reported, the next row runs
                    results[name][side] = {"error": repr(exc)}
                results[name][side]["took_s"] = round(time.monotonic() - t0, 1)
            print(json.dumps({"row": name, "side": side, **results[name][side]}), flush=True)
        if out:
            out.write_text(json.dumps(results, indent=1))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all", "classmates"])
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose mailkit serves")
    parser.add_argument("--old", type=Path, help="classmates: the old checkout (git archive 189710f)")
    parser.add_argument("--rows", default=",".join([*ROWS, "drip_nets"]), help="classmates: which rows")
    parser.add_argument("--out", type=Path, help="classmates: write the results here (JSON)")
    parser.add_argument("-n", type=int, help="storm: how many logins (default 200)")
    args = parser.parse_args(argv)
    if args.scenario == "classmates":
        if args.old is None:
            parser.error("classmates needs --old (a checkout of the old mailkit)")
        classmates(args.old, args.root, args.rows.split(","), args.out)
        return 0
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            kwargs = {"n": args.n} if name == "storm" and args.n else {}
            result = SCENARIOS[name](args.root.resolve(), Path(tmp), **kwargs)
        print(json.dumps({"scenario": name, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
