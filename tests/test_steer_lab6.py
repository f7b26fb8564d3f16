"""Issue 25, lab 6: the hostile senders of tests/test_steer.py's ROWS (decoys,
padding, blocking senders), graded together with lab 6's stub and reference
to compare: each scores no more than the stub plus its honest part.  A batch
of its own, so that another worker grades the rest of the rows meanwhile."""

from __future__ import annotations

import pytest

from test_labs import needs_sandbox
from test_steer import LAB6, ROWS, check_row, grade_rows, released  # noqa: F401 (released: a fixture)


@pytest.fixture(scope="module")
def steered(released, tmp_path_factory):  # noqa: F811
    """Lab 6's rows, its stub and its reference, graded once, together."""
    return grade_rows(released, LAB6, tmp_path_factory.mktemp("steer6"), bench=True)


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", LAB6, ids=[f"{ROWS[i][0]}: {ROWS[i][1]}" for i in LAB6])
def test_a_steering_submission_earns_nothing_it_did_not_do_or_is_flagged(steered, index):
    check_row(steered, index)
