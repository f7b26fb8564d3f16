"""Pictures of notebook 07: RTT samples against SRTT and RTO (RFC 6298),
and throughput against window size (theory beside the simulation).

Each shows as a PNG (matplotlib, Agg canvas, no pyplot state); its ``repr``
is the table of numbers behind it (what a check of the notebook compares).
"""

from __future__ import annotations

import io

from .drawing import COLOURS, Shown

__all__ = ["RttPlot", "ThroughputPlot"]


class _Png(Shown):
    def figure(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_png_(self) -> bytes:
        fig = self.figure()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()


def _figure(size=(8.6, 3.9)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


class RttPlot(_Png):
    """RTT samples (dots; the resent ones that Karn's rule leaves out as
    crosses) and, after each, SRTT, SRTT + 4·RTTVAR, and the RTO in force
    with the RFC's 1 s floor and with Linux's 200 ms one.  *rows* are
    ``(sample seconds, resent, srtt, srtt + 4 rttvar, rto_rfc, rto_linux)``.
    Times print in ms."""

    def __init__(self, rows, title: str = "RTT samples and RFC 6298's estimate"):
        self.rows = [tuple(r) for r in rows]
        self.title = title

    @property
    def text(self) -> str:
        lines = [self.title,
                 f"{'#':>3} {'sample':>11} {'SRTT':>11} {'SRTT+4·RTTVAR':>14} "
                 f"{'RTO (RFC)':>11} {'RTO (Linux)':>12}"]
        for i, (s, resent, srtt, var, rfc, linux) in enumerate(self.rows, 1):
            mark = "  resent: no sample (Karn)" if resent else ""
            if srtt is None:                     # no clean sample yet
                lines.append(f"{i:>3} {s * 1000:>8.1f} ms {'-':>11} {'-':>14} "
                             f"{rfc * 1000:>8.1f} ms {linux * 1000:>9.1f} ms{mark}")
                continue
            lines.append(f"{i:>3} {s * 1000:>8.1f} ms {srtt * 1000:>8.1f} ms {var * 1000:>11.1f} ms "
                         f"{rfc * 1000:>8.1f} ms {linux * 1000:>9.1f} ms{mark}")
        return "\n".join(lines)

    def figure(self):
        fig, ax = _figure()
        xs = list(range(1, len(self.rows) + 1))
        ms = [[v * 1000 if isinstance(v, float) else (float("nan") if v is None else v) for v in r]
              for r in self.rows]
        good = [(x, r[0]) for x, r in zip(xs, ms) if not r[1]]
        bad = [(x, r[0]) for x, r in zip(xs, ms) if r[1]]
        ax.plot([x for x, _ in good], [y for _, y in good], "o", color=COLOURS["ink"],
                markersize=4, label="RTT sample")
        if bad:
            ax.plot([x for x, _ in bad], [y for _, y in bad], "x", color=COLOURS["ERROR"],
                    markersize=7, label="resent: not a sample (Karn)")
        ax.step(xs, [r[2] for r in ms], where="post", color=COLOURS["OK"], label="SRTT")
        ax.step(xs, [r[3] for r in ms], where="post", color=COLOURS["KO"], linestyle="--",
                label="SRTT + 4·RTTVAR")
        ax.step(xs, [r[4] for r in ms], where="post", color=COLOURS["no reply"], label="RTO, RFC 6298 (≥ 1 s)")
        ax.step(xs, [r[5] for r in ms], where="post", color=COLOURS["flip"], linestyle=":",
                label="RTO, Linux (≥ SRTT + 200 ms)")
        ax.set_yscale("log")
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("command")
        ax.set_ylabel("milliseconds (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(self.title, fontsize=11)
        fig.tight_layout()
        return fig


class ThroughputPlot(_Png):
    """Mails per second against window size: the theory (no loss) as a
    line, the simulated runs as points, one series per label."""

    def __init__(self, windows, theory, series: dict, title: str):
        self.windows = list(windows)
        self.theory = [float(t) for t in theory]
        self.series = {k: [float(v) for v in vs] for k, vs in series.items()}
        self.title = title

    @property
    def text(self) -> str:
        names = list(self.series)
        head = f"{'window':>6} {'theory':>8} " + " ".join(f"{n:>18}" for n in names)
        lines = [self.title + " (mails per second)", head]
        for i, w in enumerate(self.windows):
            lines.append(f"{w:>6} {self.theory[i]:>8.1f} "
                         + " ".join(f"{self.series[n][i]:>18.1f}" for n in names))
        return "\n".join(lines)

    def figure(self):
        fig, ax = _figure()
        ax.plot(self.windows, self.theory, color=COLOURS["ink"],
                label="theory, no loss: U·R/L,\nU = min(1, N·(L/R)/(RTT + L/R))")
        styles = ["o", "s", "^", "D"]
        colours = [COLOURS["OK"], COLOURS["KO"], COLOURS["flip"], COLOURS["no reply"]]
        for i, (name, values) in enumerate(self.series.items()):
            ax.plot(self.windows, values, styles[i % 4], color=colours[i % 4], markersize=5,
                    label=name, linestyle="-" if i else "none", linewidth=0.8)
        ax.set_xlabel("window N (mails in flight)")
        ax.set_ylabel("mails per second")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        # beside the axes, not over them: inside, it covered GBN's points at N = 8-10
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_title(self.title, fontsize=11)
        fig.tight_layout()
        return fig
