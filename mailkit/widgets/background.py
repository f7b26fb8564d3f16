"""The app's two background threads: a worker that runs network calls one at
a time, so that a click returns at once and the kernel stays free, and a
poller that ticks every few seconds for the "live" inbox.  Both stop
cleanly: :meth:`Worker.shutdown`, :meth:`Poller.stop`."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Worker", "Poller"]

log = logging.getLogger("mailkit.widgets")


class Worker:
    """Runs jobs one at a time in a background thread (or inline, for
    scripts and tests that pass ``background=False``)."""

    def __init__(self, background: bool):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mailkit-app") if background else None

    def submit(self, job) -> None:
        if self._pool is None:
            job()
            return
        try:
            self._pool.submit(job)
        except RuntimeError:     # shut down: the app was closed
            pass

    def wait(self, timeout: float) -> None:
        """Return once every job submitted so far has finished."""
        if self._pool is None:
            return
        try:
            marker = self._pool.submit(lambda: None)
        except RuntimeError:     # shut down: nothing more will run
            return
        marker.result(timeout)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class Poller:
    """Calls *tick* every *interval* seconds in a daemon thread until stopped."""

    def __init__(self, interval: float, tick):
        self.interval, self._tick = interval, tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,),
                                        name="mailkit-app-poll", daemon=True)
        self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self._tick()
            except Exception:    # a tick must not end the loop; the app reports its own errors
                log.exception("poll tick failed")

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
