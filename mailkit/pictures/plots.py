"""Pictures of numbers: the retry plot (matplotlib) and a frame cut into
the pieces that ``recv()`` returned."""

from __future__ import annotations

import io

from .drawing import COLOURS, Shown, svg_open

__all__ = ["RetryPlot", "retry_plot", "pieces_svg"]


class RetryPlot(Shown):
    """The chance that a mail gets through within *attempts* attempts,
    against the flip rate: analytic curve and simulated points.

    Shows as a PNG (matplotlib, Agg canvas, no pyplot state); its ``repr``
    is the table of numbers behind the picture.
    """

    def __init__(self, rates, simulated, analytic, attempts: int = 4, *,
                 sends: int | None = None, title: str | None = None):
        self.rates = [float(r) for r in rates]
        self.simulated = [float(s) for s in simulated]
        self.analytic = [float(a) for a in analytic]
        if not len(self.rates) == len(self.simulated) == len(self.analytic):
            raise ValueError("rates, simulated and analytic must have the same length")
        self.attempts, self.sends = attempts, sends
        self.title = title or f"P(mail gets through within {attempts} attempts)"

    @property
    def text(self) -> str:
        sends = f" ({self.sends} sends per rate)" if self.sends else ""
        lines = [self.title + sends,
                 f"{'flip rate':>9}  {'analytic':>8}  {'simulated':>9}"]
        for r, a, s in zip(self.rates, self.analytic, self.simulated):
            lines.append(f"{r:>9.2f}  {a:>8.3f}  {s:>9.3f}")
        return "\n".join(lines)

    def figure(self):
        """A matplotlib ``Figure`` (not registered with pyplot)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.8), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        fine = [i / 200 for i in range(201)]
        ax.plot(fine, [1 - p for p in fine], color=COLOURS["no reply"], linestyle=":",
                label="1 attempt (no retry): 1 - p")
        ax.plot(self.rates, self.analytic, color=COLOURS["OK"],
                label=f"analytic, {self.attempts} attempts: 1 - p^{self.attempts}")
        ax.plot(self.rates, self.simulated, "o", color=COLOURS["KO"], markersize=5,
                label="simulated" + (f" ({self.sends} mails per rate)" if self.sends else ""))
        ax.set_xlabel("flip rate p (chance that a frame is corrupted)")
        ax.set_ylabel("fraction of mails delivered")
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=9)
        ax.set_title(self.title, fontsize=11)
        fig.tight_layout()
        return fig

    def _repr_png_(self) -> bytes:
        import matplotlib

        with matplotlib.rc_context({"svg.hashsalt": "mailkit", "svg.fonttype": "none"}):
            fig = self.figure()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", metadata={"Software": None})
        return buf.getvalue()

    def svg(self) -> str:
        """The plot as SVG text, deterministic for one matplotlib version
        (fixed hash salt, text kept as text, no date)."""
        import matplotlib

        with matplotlib.rc_context({"svg.hashsalt": "mailkit", "svg.fonttype": "none"}):
            fig = self.figure()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        return buf.getvalue()


retry_plot = RetryPlot


def pieces_svg(pieces, size: int, recv_size: int) -> str:
    """The bytes of one frame as a bar, cut where each ``recv()`` stopped."""
    W, H, left, bar = 640, 92, 10, 620
    out = [svg_open(W, H)]
    total = max(size, 1)
    x = 0
    for i, n in enumerate(pieces):
        x0 = left + bar * x / total
        w = bar * n / total
        fill = "#c7d2fe" if i % 2 == 0 else "#818cf8"
        out.append(f'<rect x="{x0:.2f}" y="30" width="{w:.2f}" height="24" fill="{fill}"/>')
        x += n
    out.append(f'<rect x="{left}" y="30" width="{bar}" height="24" fill="none" stroke="{COLOURS["ink"]}"/>')
    out.append(f'<text x="{left}" y="20" fill="{COLOURS["ink"]}">one frame, {size:,} bytes: '
               f'{len(pieces)} recv({recv_size}) calls</text>')
    out.append(f'<text x="{left}" y="74" font-size="11" fill="{COLOURS["no reply"]}">'
               f'each band is what one recv() returned; the checksum at the far right arrives last</text>')
    out.append("</svg>")
    return "\n".join(out)
