"""The notebook's kernel: stop what it started, and press Ctrl-C from a timer."""

from __future__ import annotations

import threading

from ..noise import NoisyLink
from ..server import MailServer

__all__ = ["stop_everything", "press_ctrl_c_after"]


def stop_everything() -> int:
    """Stop every server and noisy link this kernel started (so re-running a
    notebook from the top never meets "address in use"); return how many."""
    return MailServer.stop_all() + NoisyLink.stop_all()


def press_ctrl_c_after(seconds: float) -> threading.Timer:
    """Start a timer thread that "presses Ctrl-C" (interrupts the kernel's
    main thread) after *seconds*: a way to show a cell that blocks in
    ``serve_forever()`` and is stopped the way a student would stop it."""
    import _thread

    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.daemon = True
    timer.start()
    return timer
