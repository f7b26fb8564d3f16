"""Stage 5 of grading, *record*: the gradebook, as CSV (for a spreadsheet
or an LMS), as one HTML page, as Canvas's import, and as one feedback file
per student and lab (the journal, written as each result comes, is
:class:`mailkit.labs.grading.Journal`).

One row per student and lab: the points of each check (a column named
``LAB/CHECK``, empty for another lab's checks), the total, the maximum and
the feedback.

Names come from students' folders and notebooks: a CSV cell that a
spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return) gets a leading ``'``, as OWASP's CSV
injection guidance says (:func:`csv_cell`), and each student gets a
feedback folder of their own even when two names clean to the same one
(:func:`feedback_folders`).
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import os
from pathlib import Path

from .grading import Gradebook
from .judging import NOT_RUN

__all__ = ["write_csv", "write_html", "write_canvas_csv", "write_feedback", "check_columns", "write_atomically",
           "csv_cell", "feedback_folders", "safe_name"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")   # OWASP CSV injection: what a spreadsheet may evaluate


def csv_cell(value) -> str:
    """*value* as a CSV cell no spreadsheet runs as a formula: text that
    starts like one gets a leading ``'`` (shown, and readable: ``'=1+2``).
    Quoting of commas and quotes is the csv module's."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _row(cells) -> list[str]:
    return [csv_cell(c) for c in cells]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def check_columns(book: Gradebook) -> list[tuple[str, str]]:
    """``(lab id, check name)`` for every check of every graded lab, in order."""
    return [(lab.id, c.name) for lab in book.labs for c in lab.checks]


def write_atomically(path: str | Path, text: str) -> Path:
    """Write *text* to a temporary file beside *path*, then rename it over
    *path*: a reader (or a kill) never sees half a gradebook."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _sandbox_cell(r) -> str:
    if r.problem in NOT_RUN:
        return ""
    return "yes" if r.sandboxed else "UNSANDBOXED"


def write_csv(book: Gradebook, path: str | Path) -> Path:
    columns = check_columns(book)
    f = io.StringIO()
    w = csv.writer(f)
    w.writerow(_row(["student", "lab", "notebook", *(f"{lab}/{name}" for lab, name in columns),
                     "total", "max", "sandbox", "flags", "feedback"]))
    for r in book.results:
        points = {(r.lab, c.name): _num(c.points) for c in r.checks}
        w.writerow(_row([r.student, r.lab, r.notebook, *(points.get(col, "") for col in columns),
                         _num(r.points), _num(r.max_points), _sandbox_cell(r), "; ".join(r.flags),
                         r.feedback()]))
    return write_atomically(path, f.getvalue())


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
            flags = "".join(f"<br><strong>flagged: {e(f)}</strong>" for f in r.flags)
            unsafe = "" if r.sandboxed or r.problem in NOT_RUN else "<br><strong>UNSANDBOXED</strong>"
            parts.append(f"<td><pre>{e(r.feedback())}</pre>{flags}{unsafe}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return write_atomically(path, "\n".join(parts) + "\n")


def write_canvas_csv(book: Gradebook, path: str | Path) -> Path:
    """The gradebook as Canvas's gradebook import takes it (Grades → Import):
    the columns ``Student``, ``ID``, ``SIS User ID``, ``SIS Login ID`` and
    ``Section`` that identify a student, then one column per lab (a column
    whose title is not yet an assignment becomes a new one), and a second
    row ``Points Possible``.  A student is the folder name, put in
    ``SIS Login ID``: name the folders by the students' Canvas logins (an LMS
    zip usually is), or fill ``ID`` in before importing."""
    # Checked (2026-11-30) against Canvas's own importer, GradebookImporter in
    # canvas-lms (app/models/gradebook_importer.rb): a header row whose
    # columns are Student, ID, then SIS User ID and SIS Login ID, with Section
    # the last student column; a row whose first cell matches /Points Possible/
    # sets each assignment's points; a student is found by ID, else by SIS
    # User ID or SIS Login ID, else by name; a title not yet an assignment
    # makes a new one.  The same columns are listed for instructors in
    # https://teaching.resources.osu.edu/toolsets/carmencanvas/guides/calculating-final-grades/import-csv-file-carmen-grades
    # (name OR ID OR SIS User ID, SIS Login ID, Section, then assignments).
    f = io.StringIO()
    w = csv.writer(f)
    w.writerow(_row(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *(lab.title for lab in book.labs)]))
    w.writerow(_row(["Points Possible", "", "", "", "", *(_num(lab.max_points) for lab in book.labs)]))
    for student in book.students:
        by_lab = {r.lab: r for r in book.results if r.student == student}
        w.writerow(_row([student, "", "", student, "",
                         *(_num(by_lab[lab.id].points) if lab.id in by_lab and by_lab[lab.id].problem != "grader error"
                           else "" for lab in book.labs)]))
    return write_atomically(path, f.getvalue())


def write_feedback(book: Gradebook, folder: str | Path) -> list[Path]:
    """One text file per student and lab, ``FOLDER/STUDENT/LAB.txt``, to hand
    back: each check with PASS or FAIL, its points and what to look at.  A
    hidden check says only its name and how it failed, never what it
    expected or its code; the instructor's flags are not in it."""
    folder = Path(folder).resolve()
    titles = {lab.id: lab.title for lab in book.labs}
    folders = feedback_folders(book.students)
    written = []
    for r in book.results:
        lines = [f"{titles.get(r.lab, r.lab)} ({r.lab}): {_num(r.points)}/{_num(r.max_points)} points", ""]
        if r.notebook:
            lines[0] += f" for {r.notebook}"
        lines += [f"note: {note}" for note in r.notes]
        width = max((len(c.name) for c in r.checks), default=10)
        for c in r.checks:
            hidden = " (hidden)" if c.hidden else ""
            lines.append(f"{'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  "
                         f"{_num(c.points)}/{_num(c.max_points)}{hidden}")
            if not c.passed and r.problem not in NOT_RUN:
                lines += [f"      {line}" for line in c.feedback.splitlines()]
        student_dir = folder / folders[r.student]
        student_dir.mkdir(parents=True, exist_ok=True)
        written.append(write_atomically(student_dir / f"{safe_name(r.lab)}.txt", "\n".join(lines) + "\n"))
    return written


def safe_name(name: str) -> str:
    """A file name from a student's folder name or a lab id: letters,
    digits, ``-_.`` kept, anything else ``_``, no leading dot."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return cleaned or "_"


def feedback_folders(students: list[str]) -> dict[str, str]:
    """A folder name for each student, no two the same (also on a
    file system that ignores case): a name that is already safe is kept,
    one that had to be cleaned gets a short hash of the real name
    (``Bob Smith`` -> ``Bob_Smith-1f0c9a2e``, beside ``Bob_Smith``)."""
    taken: dict[str, str] = {}
    out: dict[str, str] = {}
    for student in sorted(students, key=lambda s: (safe_name(s) != s, s)):   # the safe names first
        name = safe_name(student)
        if name != student or name.casefold() in taken:
            name = f"{name}-{hashlib.sha256(student.encode()).hexdigest()[:8]}"
        n = 2
        base = name
        while name.casefold() in taken:
            name, n = f"{base}-{n}", n + 1
        taken[name.casefold()] = student
        out[student] = name
    return out
