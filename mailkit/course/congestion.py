"""Notebook 09's helpers: the checks of its *your turn* cells, the Nagle
comparison in words, and asking the kernel for Reno on one socket.

The simulation is :mod:`mailkit.congestion`, the live sockets
:mod:`mailkit.flowcontrol`, the pictures :mod:`mailkit.pictures.congestion`.
"""

from __future__ import annotations

import math
import socket

from ..flowcontrol import DELACK_MIN_S, NagleRun
from ..pictures import Shown
from .exercises import NOT_ANSWERED, Verdict

__all__ = ["check_ssthresh_after_loss", "check_slow_start_rounds", "nagle_comparison", "capture_button",
           "ask_for_reno", "HINTS"]

HINTS = {
    "ssthresh": "RFC 5681 eq. (4) halves what is in flight, but never below a floor of 2*SMSS: "
                "what is that floor when windows count segments? Try a flight of 1, and an odd one "
                "(no rounding).",
    "rounds": "in slow start every ACK adds one segment, and a round trip brings an ACK for "
              "every segment of the window (RFC 5681 3.1; Kurose & Ross 3.7.1): how does cwnd grow "
              "per round trip? Count round trips until cwnd is at least the target.",
}


class _Text(Shown):
    def __init__(self, text: str):
        self.text = text


def _verdict(cases, fn, hint: str, what: str) -> Verdict:
    for args, want in cases:
        try:
            got = fn(*args)
        except NotImplementedError:
            return Verdict(False, NOT_ANSWERED, stub=True)
        except Exception as exc:
            return Verdict(False, f"for {', '.join(map(repr, args))} your function raised "
                                  f"{type(exc).__name__}: {exc}. Hint: {hint}")
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isclose(got, want):
            return Verdict(False, f"for {', '.join(map(repr, args))} you returned {got!r}. Hint: {hint}")
    return Verdict(True, what)


def check_ssthresh_after_loss(fn) -> Verdict:
    """``fn(flight)``: ssthresh after a loss with *flight* segments outstanding."""
    cases = [((20,), 10), ((7,), 3.5), ((3,), 2), ((2,), 2), ((1,), 2), ((64,), 32)]
    return _verdict(cases, fn, HINTS["ssthresh"],
                    "half the flight, never under 2 segments (RFC 5681 eq. 4).")


def check_slow_start_rounds(fn) -> Verdict:
    """``fn(target)``: round trips of slow start from cwnd = 1 until cwnd >= target."""
    cases = [((t,), math.ceil(math.log2(t))) for t in (1, 2, 3, 16, 17, 64, 100)]
    return _verdict(cases, fn, HINTS["rounds"],
                    "cwnd doubles every round trip, so log2(target) of them, rounded up.")


def nagle_comparison(on: NagleRun, off: NagleRun, one_write: NagleRun) -> Shown:
    """The three runs in words: times (masked in checks) and what holds on any Linux."""
    waited = DELACK_MIN_S * 0.75      # a delayed ACK costs at least TCP_DELACK_MIN (40 ms)
    lines = [on.text, off.text, f"one write, Nagle on: median {one_write.median * 1000:.2f} ms per exchange",
             f"Nagle on, two writes: each exchange waited for a delayed ACK: {on.median >= waited}",
             f"TCP_NODELAY: no exchange waited for one: {off.median < waited}",
             f"one write (Nagle on): no exchange waited for one: {one_write.median < waited}",
             f"the server's delayed-ACK timeout (TCP_INFO ato) is at least Linux's 40 ms: "
             f"{on.ato >= DELACK_MIN_S * 0.99}"]
    return _Text("\n".join(lines))


def ask_for_reno() -> Shown:
    """A socket asks the kernel for Reno (``TCP_CONGESTION``; without root a
    program may choose only what ``net.ipv4.tcp_allowed_congestion_control``
    lists, and Linux always allows ``reno``) and reads back what it got; and says what Linux would
    choose on its own (``net.ipv4.tcp_congestion_control``), as a family."""
    with socket.socket() as sock:
        default = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")
        chosen = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).split(b"\0")[0].decode()
    return _Text("\n".join([f"this socket now runs: {chosen}",
                            f"a new socket here would run, unasked: one of reno, cubic, bbr: {default in ('reno', 'cubic', 'bbr')}"]))


def capture_button():
    """A button that runs the zero-window demonstration again with a live
    capture on ``lo`` (root or ``CAP_NET_RAW``) and lists the zero windows
    and the probes.  Before the press it shows the same everywhere, so the
    committed notebook matches on every machine."""
    import ipywidgets as W          # a front end: only the course needs it

    from ..capture import can_capture
    from ..flowcontrol import zero_window, zero_window_probes

    class CaptureButton(W.VBox):
        text = ("[Capture it live] (needs root or CAP_NET_RAW: the same zero window, "
                "recorded on lo, its zero windows and probes listed)")

        def __init__(self):
            self.button = W.Button(description="Capture it live", button_style="primary")
            self.output = W.Output()
            self.result = None
            self.button.on_click(lambda _b: self.click())
            super().__init__([self.button, self.output])
            self.add_class("mailkit-capture-button")

        def click(self) -> str:
            self.button.disabled = True
            try:
                self.result = zero_window_probes(zero_window(capture=can_capture()))
            except OSError as exc:
                self.result = f"{type(exc).__name__}: {exc}"
            finally:
                self.button.disabled = False
            self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                    "data": {"text/plain": self.result}},)
            return self.result

        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs)
            data["text/plain"] = self.text
            return data

    return CaptureButton()
