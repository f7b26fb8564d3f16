"""Hidden checks that the grader judges from outside the student's kernel.

A hidden check cell of a lab's source is a function decorated with
:func:`hidden_check`::

    from mailkit.labs.probe import hidden_check, Raised

    @hidden_check
    def special_password(kernel, rng):
        user, password = word(rng), password_like(rng)
        with MailServer({user: password}) as server:          # in the grader
            session_id = kernel.call("login", *server.address, user, password)
            print("the server knows the session:", server.store.session_user(session_id) == user)

The function runs where the *grader* is, never in the student's kernel:

* in the source notebook (``make test``, ``execute``) the decorator runs it
  at once with a :class:`LocalKernel` over the notebook's own names and a
  fixed seed, so the cell's output is the reference, as for any check;
* when grading, the harness (:mod:`mailkit.labs.harness`) runs the cell in
  its own process with a kernel proxy: ``kernel.call("login", ...)``
  runs ``login(...)`` in the student's kernel and brings back only a value
  (plain data: the ``repr`` read with ``ast.literal_eval``), or raises
  :class:`Raised` with the name of the exception the student's code
  raised.  *rng* is seeded with a number the grader drew for this run: the
  inputs are in no file the kernel can read, and the expected results are
  computed here.

So a check's verdict rests on what the grader's own servers and clients saw
and on values the student's code could only produce by doing the work.
What a probe prints must not depend on the seed (print comparisons, not
the random inputs).
"""

from __future__ import annotations

import ast
import contextlib
import random
import socket
import string
import sys
import threading
import time

__all__ = ["Raised", "LocalKernel", "hidden_check", "use", "serving", "word", "password_like",
           "text_like", "ScriptedServer", "forward_to", "NOTEBOOK_SEED", "damaged_reply_plan",
           "many_at_once", "scratch_file"]

NOTEBOOK_SEED = 2017       # the inputs a source notebook's own run uses


class Raised(Exception):
    """The student's code raised *name* (or the kernel did not answer:
    ``Timeout``, ``KernelDied``)."""

    def __init__(self, name: str, message: str = ""):
        super().__init__(f"{name}: {message}" if message else name)
        self.name, self.message = name, message


def _plain(value):
    """*value* as it arrives from a remote kernel: through repr and literal_eval."""
    try:
        return ast.literal_eval(repr(value))
    except Exception as exc:            # (what failed, for whoever reads the feedback)
        raise Raised("BadValue", f"the value is not plain data ({type(exc).__name__}: {str(exc)[:100]})") from None


class LocalKernel:
    """The kernel API of a probe, over a notebook's own names (no sandbox:
    for the source notebook and for tests)."""

    remote = False

    def __init__(self, namespace: dict):
        self.ns = namespace

    def exec(self, code: str) -> None:
        try:
            exec(compile(code, "<probe>", "exec"), self.ns)
        except Exception as exc:
            raise Raised(type(exc).__name__, str(exc)[:300]) from None

    def eval(self, expression: str):
        try:
            value = eval(compile(expression, "<probe>", "eval"), self.ns)
        except Exception as exc:
            raise Raised(type(exc).__name__, str(exc)[:300]) from None
        return _plain(value)

    def call(self, name: str, *args, **kwargs):
        params = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        return self.eval(f"{name}({params})")


_state = threading.local()     # .current: (kernel, seed) while the harness runs a probe (per thread)


def use(kernel, seed: int) -> None:
    """The harness: run the next probes against *kernel* with *seed* (None: stop)."""
    _state.current = None if kernel is None else (kernel, seed)


def hidden_check(fn):
    """Run *fn(kernel, rng)* now: against the grader's kernel proxy when the
    harness runs this cell, else against the calling notebook's own names."""
    current = getattr(_state, "current", None)
    if current is not None:
        kernel, seed = current
    else:
        kernel, seed = LocalKernel(sys._getframe(1).f_globals), NOTEBOOK_SEED
    fn(kernel, random.Random(f"{seed}/{fn.__name__}"))
    return fn


def run_locally(source: str, namespace: dict, seed: int) -> None:
    """Run a hidden check cell against *namespace* with *seed* (tests: a
    lab's solution must pass its hidden checks for any seed)."""
    use(LocalKernel(namespace), seed)
    try:
        exec(compile(source, "<hidden check>", "exec"), dict(namespace))
    finally:
        use(None, 0)


@contextlib.contextmanager
def serving(kernel, factory: str, *, handler: bool = False):
    """Serve ``eval(factory)`` from the student's kernel with
    :func:`~mailkit.labs.support.run_server` (or ``run_handler``); yield its
    ``(host, port)``; stop it at the end."""
    kind = "run_handler" if handler else "run_server"
    kernel.exec("import mailkit.labs.support as __mk_support\n"
                f"__mk_serving = __mk_support.{kind}({factory}).start()")
    try:
        yield tuple(kernel.eval("__mk_serving.address"))
    finally:
        with contextlib.suppress(Raised):
            kernel.exec("__mk_serving.stop()")


def forward_to(address):
    """``respond(frame) -> reply``: the mail server at *address* answering
    over a socket (lab 5's Deduplicator, when the mail server is the grader's)."""
    from mailkit.client import request_once

    def respond(frame: bytes) -> bytes:
        return request_once(tuple(address), frame)
    return respond


# -- random inputs -----------------------------------------------------------

def word(rng: random.Random, n: int = 8) -> str:
    return rng.choice(string.ascii_lowercase) + "".join(rng.choice(string.ascii_lowercase + string.digits)
                                                        for _ in range(n - 1))


def text_like(rng: random.Random, n: int = 16, *, punctuation: bool = True, unicode: bool = True) -> str:
    """Random text; with punctuation it has ':' and '#' in it, with unicode letters beyond ASCII."""
    alphabet = string.ascii_letters + string.digits + " .,!?-"
    extra = (":#" if punctuation else "") + ("äöüßéçñ✉日本語Ωж" if unicode else "")
    chars = [rng.choice(alphabet) for _ in range(n)]
    for c in rng.sample(extra, min(len(extra), 3)) if extra else ():
        chars.insert(rng.randrange(len(chars) + 1), c)
    return "".join(chars)


def password_like(rng: random.Random) -> str:
    return text_like(rng, 10)


# -- a server that behaves as a test needs -----------------------------------

class ScriptedServer:
    """A one-connection-at-a-time TCP server on 127.0.0.1 that records what
    each client sent and whether it half-closed, then answers with
    ``reply(request)`` in *pieces* (with *pause* seconds between them).
    With *wait_for_half_close*, it answers only once the client has shut
    down its sending side (or closes without a word after *patience* s)."""

    def __init__(self, reply, *, pieces: int = 1, pause: float = 0.05,
                 wait_for_half_close: bool = False, patience: float = 1.5):
        self.reply, self.pieces, self.pause = reply, pieces, pause
        self.wait_for_half_close, self.patience = wait_for_half_close, patience
        self.requests: list[bytes] = []
        self.half_closed: list[bool] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.address = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        with contextlib.suppress(OSError):      # wake accept() now, not at its next timeout
            socket.create_connection(self.address, timeout=1).close()
        self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                if self._stop.is_set():
                    break
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        data, closed, deadline = b"", False, time.monotonic() + self.patience
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                if data and not self.wait_for_half_close:
                    break
                continue
            except OSError:
                break
            if not chunk:
                closed = True
                break
            data += chunk
        self.requests.append(data)
        self.half_closed.append(closed)
        if self.wait_for_half_close and not closed:
            return                      # no "that was all": no reply
        reply = self.reply(data)
        step = max(1, -(-len(reply) // self.pieces))
        try:
            for i in range(0, len(reply), step):
                conn.sendall(reply[i:i + step])
                if i + step < len(reply):
                    time.sleep(self.pause)
        except OSError:
            pass


class KernelBench:
    """Lab 5's bench with the student's side in the kernel: the grader's
    mail server, the student's ``front`` (``Deduplicator``) served from the
    kernel and answering through :func:`forward_to` the grader's server, and
    the grader's :class:`~mailkit.noise.NoisyLink` in front of it.  What
    crossed the link and what reached the mailbox are seen here."""

    def __init__(self, kernel, front: str = "Deduplicator"):
        from mailkit.labs.support import Bench
        self._kernel, self._front = kernel, front
        self.bench = Bench()
        self._serving = None

    def __enter__(self) -> "KernelBench":
        from mailkit import NoisyLink
        bench = self.bench
        bench.server.start()
        try:
            self._serving = serving(self._kernel, f"{self._front}(__import__('mailkit.labs.probe', "
                                                  f"fromlist=['_']).forward_to({tuple(bench.server.address)!r}))",
                                    handler=True)
            front = self._serving.__enter__()
            bench.link = NoisyLink(front).start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.bench.link is not None:
            self.bench.link.stop()
        if self._serving is not None:
            self._serving.__exit__(None, None, None)
        self.bench.server.close()

    def sender(self, name: str) -> None:
        """A new ``SequencedSender`` in the kernel, called *name* there, pointed at the link."""
        self._kernel.exec(f"{name} = SequencedSender{tuple(self.bench.link.address)!r}")

    def send(self, name: str, frame: bytes):
        return self._kernel.eval(f"{name}.send({frame!r})")


# -- lab 4: many at once -------------------------------------------------------

SWITCH_INTERVAL_S = 1e-6    # the kernel's threads take turns ~5000x as often as by default (5 ms)


def many_at_once(kernel, server: str, frames: list[bytes], *, threads: int = 8, each: int = 250,
                 rounds: int = 3) -> None:
    """Call ``server.respond(frame)`` in the student's kernel from *threads*
    threads at once, *each* calls per thread (cycling through *frames*), for
    *rounds* rounds, with ``sys.setswitchinterval`` lowered meanwhile (put
    back after).  A server whose shared state is read, changed and written
    back without a lock (``mails = list(inbox[r]); mails.append(m);
    inbox[r] = mails``) then loses updates: under CPython's GIL a thread is
    switched out only between bytecodes that may switch (calls, loops), so
    at the default 5 ms interval such a window is rarely hit, at 1 µs often.
    The verdict is not here: the caller counts the mail through its own
    client over TCP, as the grader computed it."""
    kernel.exec(
        "import sys as __mk_sys, threading as __mk_threading\n"
        f"__mk_frames = {list(frames)!r}\n"
        "def __mk_one(i):\n"
        f"    for k in range({each}):\n"
        f"        {server}.respond(__mk_frames[(i + k) % len(__mk_frames)])\n"
        "__mk_switch = __mk_sys.getswitchinterval()\n"
        f"__mk_sys.setswitchinterval({SWITCH_INTERVAL_S!r})\n"
        "try:\n"
        f"    for __mk_round in range({rounds}):\n"
        f"        __mk_ts = [__mk_threading.Thread(target=__mk_one, args=(i,)) for i in range({threads})]\n"
        "        for __mk_t in __mk_ts: __mk_t.start()\n"
        "        for __mk_t in __mk_ts: __mk_t.join()\n"
        "finally:\n"
        "    __mk_sys.setswitchinterval(__mk_switch)")

# -- lab 5: damaged replies ----------------------------------------------------

REPLY_TEXT = b"0/OK: Email Sent"    # the part of lab 5's email reply before its '#' and checksum


def damaged_reply_plan(rng: random.Random, n: int) -> list[list[tuple[int, int]]]:
    """*n* reply damages for lab 5's ``damaged-replies``: each one flipped
    bit ``[(byte, bit)]`` for ``NoisyLink.plan_next(reply_flips=...)``.
    The first half land in the reply's text after its ``SEQ/`` (where a
    sender that checks only the number takes the damage for the server's
    answer); the rest anywhere in ``SEQ/`` and the text, or in the 40
    hex digits of the checksum (counted from the end).  Drawn per run."""
    plan = []
    for i in range(n):
        if i < (n + 1) // 2:
            byte = rng.randrange(2, len(REPLY_TEXT))
        elif rng.random() < 0.5:
            byte = rng.randrange(len(REPLY_TEXT))
        else:
            byte = -rng.randrange(1, 41)
        plan.append([(byte, rng.randrange(8))])
    return plan


# -- a file for the student's code to read (lab 7) ------------------------------

@contextlib.contextmanager
def scratch_file(kernel, data: bytes, name: str = "capture.pcap"):
    """Write *data* (made in the grader, for this run) to a new file in the
    kernel's own scratch space (its ``/tmp`` in the sandbox); yield the path
    as the kernel sees it; remove the file at the end.  The kernel may
    change the file: what it answers is compared with what the grader knows
    about the bytes it wrote."""
    import base64
    encoded = base64.b64encode(data).decode("ascii")
    kernel.exec("import base64 as __mk_b64, os as __mk_os, tempfile as __mk_tf\n"
                f"__mk_file = __mk_os.path.join(__mk_tf.mkdtemp(prefix='mailkit-'), {name!r})\n"
                "with open(__mk_file, 'wb') as __mk_f:\n"
                f"    __mk_f.write(__mk_b64.b64decode({encoded!r}))")
    path = kernel.eval("__mk_file")
    try:
        yield path
    finally:
        with contextlib.suppress(Raised):
            kernel.exec(f"__mk_os.remove({path!r}); __mk_os.rmdir(__mk_os.path.dirname({path!r}))")
