"""Lab 6: the wrong timers of tests/test_lab6_rto.py (WRONG_TIMERS), graded by
the real grader and caught by drifting-delay.  They are rows of WRONG_67 in
tests/test_labs67.py, graded here as their own batch so that another worker
grades the rest of lab 6 at the same time."""

from __future__ import annotations

import pytest

from test_labs import needs_sandbox
from test_labs67 import L6, Batch, check_wrong, wrong_ids

TIMERS = Batch.of(lambda lab, catcher: lab == L6 and catcher == "drifting-delay")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return TIMERS.grade(tmp_path_factory)


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", TIMERS.wrong, ids=wrong_ids(TIMERS))
def test_a_wrong_timer_is_graded_below_full(graded, index):
    check_wrong(graded, index)
