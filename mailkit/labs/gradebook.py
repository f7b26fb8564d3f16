"""The gradebook, as CSV (for a spreadsheet or an LMS) and as one HTML page.

One row per student and lab: the points of each check (a column named
``LAB/CHECK``, empty for another lab's checks), the total, the maximum and
the feedback.
"""

from __future__ import annotations

import csv
import html
from pathlib import Path

from .grading import Gradebook

__all__ = ["write_csv", "write_html", "check_columns"]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_columns(book: Gradebook) -> list[tuple[str, str]]:
    """``(lab id, check name)`` for every check of every graded lab, in order."""
    return [(lab.id, c.name) for lab in book.labs for c in lab.checks]


def write_csv(book: Gradebook, path: str | Path) -> Path:
    path = Path(path)
    columns = check_columns(book)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "lab", "notebook", *(f"{lab}/{name}" for lab, name in columns),
                    "total", "max", "feedback"])
        for r in book.results:
            points = {(r.lab, c.name): _num(c.points) for c in r.checks}
            w.writerow([r.student, r.lab, r.notebook, *(points.get(col, "") for col in columns),
                        _num(r.points), _num(r.max_points), r.feedback()])
    return path


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.pass { background: #e6f4e6; text-align: center; }
td.fail { background: #fbe3e3; text-align: center; }
td.total { font-weight: bold; text-align: right; }
pre { margin: 0; white-space: pre-wrap; font-size: 0.85em; }
"""


def write_html(book: Gradebook, path: str | Path) -> Path:
    path = Path(path)
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>mailkit gradebook</title>", f"<style>{_STYLE}</style></head><body>",
             "<h1>Gradebook</h1>", f"<p>{e(book.summary())}</p>"]
    for lab in book.labs:
        rows = [r for r in book.results if r.lab == lab.id]
        parts.append(f"<h2>{e(lab.title)} <small>({e(lab.id)}, {_num(lab.max_points)} points)</small></h2>")
        parts.append("<table><tr><th>student</th>")
        for c in lab.checks:
            label = f"{c.name} ({_num(c.points)})" + (" hidden" if c.hidden else "")
            parts.append(f'<th title="{e(c.title)}">{e(label)}</th>')
        parts.append("<th>total</th><th>feedback</th></tr>")
        for r in rows:
            parts.append(f"<tr><td>{e(r.student)}</td>")
            by_name = {c.name: c for c in r.checks}
            for c in lab.checks:
                got = by_name.get(c.name)
                if got is None:
                    parts.append("<td></td>")
                    continue
                cls, mark = ("pass", "✓") if got.passed else ("fail", "✗")
                parts.append(f'<td class="{cls}" title="{e(got.feedback)}">{mark} {_num(got.points)}</td>')
            parts.append(f'<td class="total">{_num(r.points)}/{_num(r.max_points)}</td>')
            parts.append(f"<td><pre>{e(r.feedback())}</pre></td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
