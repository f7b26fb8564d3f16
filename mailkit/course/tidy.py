"""Committed notebooks, byte for byte as JupyterLab saves them.

A student who opens a course notebook in JupyterLab and saves it (autosave
does, within two minutes) must not see it in ``git status``: a notebook
that JupyterLab rewrites conflicts with the next ``git pull``.  Opening and
saving rewrites three things, and :func:`as_jupyterlab_saves` does the same:

* the kernelspec's ``display_name``: ipykernel's ``python3`` kernel calls
  itself "Python 3 (ipykernel)", and the kernel JupyterLab starts names it
  so in the notebook;
* numbers: the notebook travels to the browser and back as JSON, and
  JavaScript has one number type, so a float with nothing after the point
  (``"min": 0.0`` in a slider's saved state) comes back as ``0``;
* stream outputs: consecutive ``stdout`` (or ``stderr``) outputs of one
  cell are one output in JupyterLab's model, and are saved as one.

The file itself is written by the Jupyter server with ``nbformat``: keys
sorted, one space of indent, text split into lines, a final newline.

``python -m mailkit.course.tidy FILE...`` rewrites notebooks in place
(``make notebooks`` runs it after executing them); with ``--check`` it only
lists those that would change and exits 1 if there are any.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["as_jupyterlab_saves", "tidy", "KERNEL_DISPLAY_NAMES"]

# What the kernel JupyterLab starts calls itself (ipykernel's kernel.json).
KERNEL_DISPLAY_NAMES = {"python3": "Python 3 (ipykernel)"}


def _js_numbers(value):
    """*value* with every integral float as an int, as a JSON round trip
    through JavaScript leaves it (``JSON.stringify(0.0)`` is ``"0"``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_js_numbers(v) for v in value]
    return value


def _merge_streams(outputs: list) -> list:
    merged: list = []
    for out in outputs:
        last = merged[-1] if merged else None
        if (out.get("output_type") == "stream" and last is not None
                and last.get("output_type") == "stream" and last.get("name") == out.get("name")):
            last["text"] = _text(last["text"]) + _text(out["text"])
        else:
            merged.append(out)
    return merged


def _text(text) -> str:
    return "".join(text) if isinstance(text, list) else text


def as_jupyterlab_saves(text: str) -> str:
    """The notebook *text* as JupyterLab would save it after opening it."""
    import nbformat                 # a course tool: the core does not need nbformat

    nb = nbformat.reads(text, as_version=4)
    nb = nbformat.from_dict(_js_numbers(nb))
    spec = nb.metadata.get("kernelspec")
    if spec and spec.get("name") in KERNEL_DISPLAY_NAMES:
        spec["display_name"] = KERNEL_DISPLAY_NAMES[spec["name"]]
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = _merge_streams(cell.get("outputs", []))
    return nbformat.writes(nb) + "\n"


def tidy(path, *, check: bool = False) -> bool:
    """Rewrite the notebook at *path* as JupyterLab saves it (or, with
    *check*, only tell); return whether it was (or would be) changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    tidied = as_jupyterlab_saves(text)
    if tidied == text:
        return False
    if not check:
        path.write_text(tidied, encoding="utf-8")
    return True


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    changed = [p for p in args if p != "--check" and tidy(p, check=check)]
    for p in changed:
        print(("would change " if check else "tidied ") + p)
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
