"""Make the notebooks that go to students, and refresh a source's reference
outputs.

* :func:`execute` runs a source notebook (with its solutions) and stores the
  outputs in it: they become the reference that students' outputs are
  compared with.  Run it after editing a lab.
* :func:`release` writes the student version of each lab, after checking
  that the source passes its own checks (so the reference outputs are those
  of the solution as it is now).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from ..course.tidy import as_jupyterlab_saves
from .check import check_notebook
from .notebook import Lab, LabError, is_check, load_lab, student_version

__all__ = ["execute", "release", "verify"]

EXECUTE_TIMEOUT_S = 60   # per cell, while an instructor refreshes a lab


def execute(path: str | Path, *, timeout: float = EXECUTE_TIMEOUT_S) -> Path:
    """Run the source notebook at *path* in a fresh kernel (this Python's)
    and store its outputs in place."""
    from nbclient import NotebookClient   # only the instructor needs it, and it is slow to import

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute()
    path.write_text(as_jupyterlab_saves(nbformat.writes(nb)), encoding="utf-8")
    return path


def verify(lab: Lab) -> None:
    """Raise :class:`LabError` unless every check of *lab* has been run and
    passes against the source's own solution."""
    unrun = [c.metadata["mailkit"]["check"] for c in lab.nb.cells
             if is_check(c) and c.execution_count is None]
    if unrun:
        raise LabError(f"{lab.path.name}: check(s) {', '.join(unrun)} have no reference output; "
                       f"run: python -m mailkit.labs execute {lab.path}")
    result = check_notebook(lab.path, lab, student="(source)", hidden=True)
    failed = [f"{c.name}: {c.feedback.splitlines()[0] if c.feedback else 'failed'}"
              for c in result.checks if not c.passed]
    if failed:
        raise LabError(f"{lab.path.name} fails its own checks ({'; '.join(failed)}); its reference "
                       f"outputs may be stale: run python -m mailkit.labs execute {lab.path}")


def release(sources: list[str | Path], out: str | Path, *, check: bool = True) -> list[Path]:
    """Write the student version of each source notebook into *out*
    (same file names); with *check*, first make sure each source passes its
    own checks.  Returns the paths written."""
    out = Path(out)
    labs = []
    for source in sources:
        source = Path(source)
        paths = sorted(source.glob("*.ipynb")) if source.is_dir() else [source]
        labs += [load_lab(p) for p in paths]
    if not labs:
        raise LabError(f"no source notebooks in {', '.join(map(str, sources))}")
    for lab in labs:
        if out.resolve() == lab.path.parent.resolve():
            raise LabError(f"--out {out} is the sources' own folder: the student versions would replace them")
        if check:
            verify(lab)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for lab in labs:
        target = out / lab.path.name
        target.write_text(as_jupyterlab_saves(nbformat.writes(student_version(lab))), encoding="utf-8")
        written.append(target)
    return written
