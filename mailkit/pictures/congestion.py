"""Pictures of notebook 09: a congestion window against time and against
the bottleneck's queue, and two senders' shares of one bottleneck.

Each shows as a PNG (matplotlib, Agg canvas, no pyplot state); its text
form holds the numbers behind it (what nbval compares). Times are virtual
seconds of a :func:`mailkit.congestion.simulate` run.
"""

from __future__ import annotations

import io

from .drawing import COLOURS, Shown

__all__ = ["CwndPlot", "SharePlot", "FLOW_COLOURS"]

FLOW_COLOURS = ("#2563eb", "#c2410c", "#1a7f37")


class _Png(Shown):
    def figure(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.figure().savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _step(trace, end):
    """(times, values) of a step function that holds each value until the next."""
    xs, ys = [], []
    for t, v in trace:
        if xs:
            xs.append(t)
            ys.append(ys[-1])
        xs.append(t)
        ys.append(v)
    if xs:
        xs.append(end)
        ys.append(ys[-1])
    return xs, ys


class CwndPlot(_Png):
    """cwnd and ssthresh of each flow against time (top) and the
    bottleneck's queue (bottom), with each loss marked where the sender
    saw it: ▼ three duplicate ACKs, ✕ a timeout."""

    def __init__(self, run, title: str = "cwnd against time, and the queue it builds"):
        self.run, self.title = run, title

    @property
    def text(self) -> str:
        run = self.run
        lines = [self.title, run.summary()]
        for f in run.flows:
            events = ", ".join(f"{t:.2f} s {why}" for t, why in f.losses[:6])
            more = f" (+{len(f.losses) - 6} more)" if len(f.losses) > 6 else ""
            peak = max(c for _, c, _ in f.trace)
            lines.append(f"  {f.name}: largest cwnd {peak:.1f}; losses seen at {events or 'none'}{more}")
        lines.append(f"  queue: at most {max(q for _, q in run.queue)} of {run.link.buffer} segments")
        return "\n".join(lines)

    def figure(self):
        run = self.run
        fig, top = _figure((8.6, 4.8))
        top.set_position([0.08, 0.42, 0.74, 0.5])
        bottom = fig.add_axes([0.08, 0.1, 0.74, 0.22], sharex=top)
        for i, f in enumerate(run.flows):
            colour = FLOW_COLOURS[i % len(FLOW_COLOURS)]
            xs, ys = _step([(t, c) for t, c, _ in f.trace], run.duration)
            top.plot(xs, ys, color=colour, lw=1.2, label=f"{f.name}: cwnd")
            xs, ys = _step([(t, min(s, 1e3)) for t, _, s in f.trace if s < 1e6], run.duration)
            if xs:
                top.plot(xs, ys, color=colour, lw=0.9, ls="--", label=f"{f.name}: ssthresh")
            for t, why in f.losses:
                top.plot([t], [f.cwnd_at(t)], marker="v" if why == "3 dup ACKs" else "x",
                         color=COLOURS["ERROR"], ms=6, ls="none")
        top.axhline(run.link.bdp + run.link.buffer, color=COLOURS["no reply"], lw=0.8, ls=":")
        top.text(run.duration, run.link.bdp + run.link.buffer, "BDP + queue ", va="bottom", ha="right",
                 fontsize=8, color=COLOURS["no reply"])
        top.set_ylabel("segments")
        top.set_title(self.title, fontsize=10)
        top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
        xs, ys = _step(run.queue, run.duration)
        bottom.fill_between(xs, ys, step=None, color=COLOURS["no reply"], alpha=0.5, lw=0)
        bottom.set_ylim(0, run.link.buffer + 1)
        bottom.set_ylabel("queue")
        bottom.set_xlabel("virtual seconds")
        return fig


class SharePlot(_Png):
    """Each flow's throughput per *window* virtual seconds, stacked up to
    the bottleneck's rate, and Jain's index of the whole run."""

    def __init__(self, run, window: float = 1.0, title: str = "two senders share one bottleneck"):
        self.run, self.window, self.title = run, window, title
        self.rows = self._rows()

    def _rows(self):
        run = self.run
        slots = int(run.duration / self.window)
        rows = []
        for f in run.flows:
            delivered = f.delivered_by
            counts = [delivered(self.window * (k + 1)) - delivered(self.window * k) for k in range(slots)]
            rows.append([c / self.window for c in counts])
        return rows

    @property
    def text(self) -> str:
        run = self.run
        shares = [sum(r) for r in self.rows]
        total = sum(shares) or 1
        lines = [self.title, run.summary()]
        lines += [f"  {f.name}: {share / total:.0%} of what was delivered"
                  for f, share in zip(run.flows, shares)]
        return "\n".join(lines)

    def figure(self):
        fig, ax = _figure((8.6, 3.4))
        xs = [self.window * (k + 0.5) for k in range(len(self.rows[0]))]
        ax.stackplot(xs, *self.rows, labels=[f.name for f in self.run.flows],
                     colors=FLOW_COLOURS[:len(self.rows)], alpha=0.8)
        ax.axhline(self.run.link.rate, color=COLOURS["ink"], lw=0.8, ls=":")
        ax.set_ylim(0, self.run.link.rate * 1.1)
        ax.set_xlabel("virtual seconds")
        ax.set_ylabel("segments / s")
        ax.set_title(f"{self.title} · Jain's index {self.run.jain():.3f}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        fig.subplots_adjust(bottom=0.16)
        return fig
