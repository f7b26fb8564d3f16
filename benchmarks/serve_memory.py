"""``python -m mailkit serve`` for a ``:memory:`` store, which cannot be filled
before the server starts: the benchmark accounts are added here, with the
cheap scrypt cost of :func:`load.make_db` (logins are not what is measured).

    python benchmarks/serve_memory.py --users 64
"""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
from pathlib import Path

# The checkout to benchmark (run.py --root sets it), else this one.
sys.path.insert(0, os.environ.get("MAILKIT_ROOT") or str(Path(__file__).resolve().parent.parent))

import mailkit.store  # noqa: E402
from mailkit import MailServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import CHEAP_N, PASSWORD, user_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=64)
    args = parser.parse_args()
    mailkit.store.SCRYPT_N = CHEAP_N          # an older mailkit's hash_password reads it
    users = {user_name(i): PASSWORD for i in range(args.users)}
    if (Path(mailkit.store.__file__).parent / "limits.py").exists():
        # the class-server limits, two raised as in load.BENCH_LIMIT_FLAGS (see there)
        from load import BENCH_PER_ADDRESS  # noqa: PLC0415
        from mailkit.limits import ClassLimits  # noqa: PLC0415
        from mailkit.store import MailStore  # noqa: PLC0415
        store = MailStore(":memory:", scrypt_n=CHEAP_N, quota_messages=100_000_000, quota_bytes=10**12)
        big = 10.0 ** 12            # issue 21's limits, raised as in load.BENCH_SENDER_FLAGS
        extra = ({"per_prefix": BENCH_PER_ADDRESS, "hashes_burst": big,
                  "sender_mail_burst": big, "sender_bytes_per_day": big,
                  "pair_mail_burst": big, "pair_bytes_per_day": big}
                 if "sender_mail_burst" in inspect.signature(ClassLimits).parameters else {})
        server = MailServer(users, store=store, limits=ClassLimits(per_address=BENCH_PER_ADDRESS, **extra))
    else:   # an older mailkit (run.py --root): as it was
        cheap = {"scrypt_n": CHEAP_N} if "scrypt_n" in inspect.signature(MailServer).parameters else {}
        server = MailServer(users, db=":memory:", **cheap)
    server.start()
    # request_stop() where there is one (run.py --root may point at an older mailkit)
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    print("mailkit listening on %s:%d" % server.address, flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
