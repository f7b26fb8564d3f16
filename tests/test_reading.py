"""Stages 1, 2 and 5 of grading on their own, without a kernel (issue 19):
reading a submission is bounded and follows no link, the plan takes roles
from the source alone, and the gradebook's names are safe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from mailkit.labs import reading
from mailkit.labs.gradebook import csv_cell, feedback_folders
from mailkit.labs.notebook import is_solution, load_lab, student_version
from mailkit.labs.planning import DEFAULT_RUN_LIMIT_S, plan
from mailkit.labs.reading import Submission, Unreadable, parse_notebook, read_submission

ROOT = Path(__file__).resolve().parent.parent
LAB = load_lab(ROOT / "labs" / "01-handshake-client.ipynb")


def released() -> nbformat.NotebookNode:
    return student_version(LAB)


def as_bytes(nb) -> bytes:
    return json.dumps(nb).encode()


# -- read -------------------------------------------------------------------------


def test_a_released_notebook_reads_as_its_code_cells_and_nothing_else():
    read = parse_notebook("lab.ipynb", as_bytes(released()))
    assert isinstance(read, Submission) and read.lab_id == LAB.id
    code = [c for c in released().cells if c.cell_type == "code"]
    assert [(c.id, c.source) for c in read.cells] == [(c.id, c.source) for c in code]
    assert not hasattr(read.cells[0], "metadata")


@pytest.mark.parametrize("data, why", [
    (b"[" * 100_000 + b"]" * 100_000, "not a notebook: nested 100000 deep (at most 64)"),
    (b"\xff\xfe", "not a notebook: not even UTF-8 text"),
    (b"I ran out of time", "not a notebook: not JSON: it starts 'I ran out of time'"),
    (b'{"cells": [], "nbformat": 3}', "not a notebook: nbformat 3, not 4 (save it with a current Jupyter)"),
    (b'{"cells": {}}', "not a notebook: it has no list of cells"),
])
def test_what_is_not_a_notebook_says_why(data, why):
    read = parse_notebook("x.ipynb", data)
    assert isinstance(read, Unreadable) and read.why == why


def test_strings_do_not_count_as_nesting():
    assert reading.nesting_depth(b'{"a": "[[[[{{{{\\"[[", "b": [[1]]}') == 3


def test_cell_count_and_cell_size_are_bounded():
    many = {"nbformat": 4, "cells": [{"cell_type": "code", "source": "1"}] * (reading.MAX_CELLS + 1)}
    assert parse_notebook("x", as_bytes(many)).why == (f"not a notebook: {reading.MAX_CELLS + 1} cells "
                                                       f"(at most {reading.MAX_CELLS})")
    big = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("#" * (reading.MAX_CELL_CHARS + 1))])
    assert "characters (at most" in parse_notebook("x", as_bytes(big)).why


def test_a_file_too_big_is_not_read(tmp_path):
    path = tmp_path / "big.ipynb"
    with open(path, "wb") as f:
        f.truncate(reading.MAX_NOTEBOOK_BYTES + 1)        # sparse: no disk used
    assert read_submission(path).why == "not a notebook: 16 MB, more than 16 MB"


def test_a_link_or_a_fifo_is_never_opened(tmp_path):
    real = tmp_path / "real.ipynb"
    nbformat.write(released(), real)
    (tmp_path / "link.ipynb").symlink_to(real)
    os.mkfifo(tmp_path / "pipe.ipynb")                   # opening it to read would block
    assert read_submission(tmp_path / "link.ipynb").why.startswith("skipped: symlink")
    assert read_submission(tmp_path / "pipe.ipynb").why == "skipped: not a regular file"
    assert isinstance(read_submission(real), Submission)


def test_a_student_folder_is_walked_without_following_links(tmp_path):
    subs = tmp_path / "submissions"
    (subs / "ann" / "deep").mkdir(parents=True)
    nbformat.write(released(), subs / "ann" / "deep" / "lab1.ipynb")
    (subs / "ann" / "elsewhere").symlink_to(tmp_path)                 # a loop, if followed
    (subs / "ann" / "lab1-link.ipynb").symlink_to(subs / "ann" / "deep" / "lab1.ipynb")
    (subs / "ann" / ".ipynb_checkpoints").mkdir()
    nbformat.write(released(), subs / "ann" / ".ipynb_checkpoints" / "lab1-checkpoint.ipynb")
    (subs / "bo").symlink_to(subs / "ann")
    (subs / "readme.txt").write_text("hi")
    folders, ignored = reading.student_folders(subs)
    by_name = {f.name: f for f in folders}
    assert ignored == ["readme.txt"]
    assert list(by_name["ann"].notebooks) == ["deep/lab1.ipynb"]
    assert sorted(rel for rel, _ in by_name["ann"].skipped) == ["elsewhere", "lab1-link.ipynb"]
    assert by_name["bo"].notebooks == {} and by_name["bo"].skipped[0][1].startswith("skipped: symlink bo/")


# -- plan ---------------------------------------------------------------------------


def hostile() -> nbformat.NotebookNode:
    """The stub, with an added cell whose metadata says it is a hidden check,
    and a solution cell whose metadata says it is one too."""
    nb = released()
    for cell in nb.cells:
        if is_solution(cell):
            cell.metadata["mailkit"] = {"check": "right-password", "hidden": True, "reference": ""}
    extra = nbformat.v4.new_code_cell("open('/tmp/x', 'w')")
    extra.metadata["mailkit"] = {"check": "anything", "hidden": True, "points": 100}
    nb.cells.insert(4, extra)
    return nb


def test_roles_references_and_probes_come_from_the_source_only():
    job = plan(LAB, parse_notebook("x", as_bytes(hostile())), hidden=True)
    probes = [c for c in job.cells if c.probe]
    assert [c.name for c in probes] == [c.name for c in LAB.checks if c.hidden]
    sources = {c.get("id"): c.source for c in LAB.nb.cells}
    assert all(c.source == sources[f"check-{c.name}"] for c in job.cells if c.kind == "check")
    assert [c.kind for c in job.cells if c.source == "open('/tmp/x', 'w')"] == ["extra"]
    assert all(c.reference is None for c in job.cells if c.students)
    assert all(set(item) == {"source", "probe", "keep"} for item in job.for_harness())   # no reference leaves
    assert not any(item["probe"] and item["source"] == "open('/tmp/x', 'w')" for item in job.for_harness())


def test_a_students_copy_of_a_check_is_ignored():
    nb = released()
    for cell in nb.cells:
        if cell.get("id") == "check-right-password":
            cell.source = "print('all good')"
    job = plan(LAB, parse_notebook("x", as_bytes(nb)))
    assert "print('all good')" not in [c.source for c in job.cells]


def test_the_run_limit_is_the_sources_and_does_not_grow_with_cells():
    nb = released()
    nb.cells += [nbformat.v4.new_code_cell("pass") for _ in range(500)]
    assert plan(LAB, parse_notebook("x", as_bytes(nb))).run_limit_s == DEFAULT_RUN_LIMIT_S <= 120
    longer = load_lab(LAB.path)
    longer.nb.metadata["mailkit"]["run_limit_s"] = 300
    assert plan(longer, parse_notebook("x", as_bytes(nb))).run_limit_s == 300


# -- record -------------------------------------------------------------------------


@pytest.mark.parametrize("text, cell", [("=1+2", "'=1+2"), ("+1", "'+1"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"),
                                        ("\tx", "'\tx"), ("\rx", "'\rx"), ("ada", "ada"), ("9", "9")])
def test_csv_cells_that_start_like_a_formula_get_a_quote(text, cell):
    assert csv_cell(text) == cell


def test_feedback_folders_never_collide():
    names = ["Bob Smith", "Bob_Smith", "bob_smith", "BOB_SMITH", "=1+2", "_1_2", "ada"]
    folders = feedback_folders(names)
    assert len({f.casefold() for f in folders.values()}) == len(names)
    assert folders["_1_2"] == "_1_2" and folders["ada"] == "ada"     # safe names stay as they are
    assert folders["Bob Smith"].startswith("Bob_Smith-")
    assert all(f == reading_safe(f) for f in folders.values())


def reading_safe(name: str) -> str:
    from mailkit.labs.gradebook import safe_name
    return safe_name(name)


# -- judge: a student's code is parsed, never run, and never crashes the judging ---


@pytest.mark.parametrize("source", ["1+" * 99_999 + "1", "x" + ".a" * 99_990, "-" * 99_999 + "1"])
def test_a_cell_too_deep_for_the_parser_is_flagged_not_a_grader_error(source):
    from mailkit.labs.judging import kit_calls, random_draws
    from mailkit.labs.notebook import CellRole
    assert random_draws(source)[0].startswith("dynamic: a cell the grader cannot parse")
    flags = kit_calls(LAB, [(CellRole("extra", "x"), source)])     # issue 25: said, never silently passed
    assert len(flags) == 1 and flags[0].startswith("cannot tell: computed import (a cell the grader cannot parse"), flags


@pytest.mark.parametrize("data, depth", [
    (b'{"a": "x\\"[[\\\\", "b": [[1]]}', 3),           # an escaped quote, then an escaped backslash
    (b'"' + b'\\"' * 200_000, 0),                      # was quadratic: a rescan from every quote
    (b'["\\\\"]', 1),
])
def test_nesting_is_counted_in_one_pass_whatever_the_quotes(data, depth):
    assert reading.nesting_depth(data) == depth


def test_what_one_student_folder_costs_to_read_is_bounded(tmp_path, monkeypatch):
    (tmp_path / "ann").mkdir()
    for name in ("a.ipynb", "b.ipynb", "c.ipynb", "d.ipynb"):
        nbformat.write(released(), tmp_path / "ann" / name)
    size = (tmp_path / "ann" / "a.ipynb").stat().st_size
    monkeypatch.setattr(reading, "MAX_BYTES_PER_STUDENT", int(2.5 * size))     # a, b, c read; then over
    folders, _ = reading.student_folders(tmp_path)
    assert list(folders[0].notebooks) == ["a.ipynb", "b.ipynb", "c.ipynb"]
    assert folders[0].skipped == [("d.ipynb", "skipped: d.ipynb (more than 0 MB of notebooks in this folder)")]
