"""mailkit.labs: graded lab notebooks: release, check, grade.

    python -m mailkit.labs release labs/*.ipynb --out release/
    python -m mailkit.labs check my-lab.ipynb --source labs/
    python -m mailkit.labs grade submissions/ --source labs/ --out gradebook.csv

The Python API behind the command line:

* :func:`load_lab`, :func:`find_labs` - a source notebook and its checks
* :func:`execute` - run a source and store its reference outputs
* :func:`release` - write the student versions
* :func:`check_notebook` - check one notebook, with points and feedback
* :func:`grade` - grade a folder of submissions; :func:`write_csv`,
  :func:`write_html` write the gradebook

Grading is five stages, one module each, and a submission goes through
them top to bottom: :mod:`~mailkit.labs.reading` (the submission as
bounded plain data, no links, no metadata) -> :mod:`~mailkit.labs.planning`
(the job, from the lab source alone) -> :mod:`~mailkit.labs.runner` with
:mod:`~mailkit.labs.harness` and :mod:`~mailkit.labs.sandbox` (the run) ->
:mod:`~mailkit.labs.judging` (points and feedback, in the grader) ->
:mod:`~mailkit.labs.gradebook` (the record).

Check cells import :mod:`mailkit.labs.support` inside students' kernels, so
this package imports nbformat and the rest only when one of the names above
is used.
"""

from __future__ import annotations

import importlib

__all__ = [
    "load_lab", "find_labs", "Lab", "Check", "LabError", "NotANotebook",
    "execute", "release", "check_notebook", "CheckResult", "LabResult",
    "grade", "Gradebook", "write_csv", "write_html",
]

_WHERE = {
    "load_lab": "notebook", "find_labs": "notebook", "Lab": "notebook", "Check": "notebook",
    "LabError": "notebook", "NotANotebook": "notebook",
    "execute": "releasing", "release": "releasing",
    "check_notebook": "check", "CheckResult": "check", "LabResult": "check",
    "grade": "grading", "Gradebook": "grading",
    "write_csv": "gradebook", "write_html": "gradebook",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
