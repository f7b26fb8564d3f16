"""Lab 7: wrong solutions (rows of WRONG_67 in tests/test_labs67.py), each
graded below full with the check that catches it named; the example's
answers hard-coded earn the visible points only; a solution that calls
mailkit's own code is flagged.  Graded as their own batch, so that another
worker grades lab 6's at the same time."""

from __future__ import annotations

import pytest

from test_labs import needs_sandbox
from test_labs67 import L7, WRONG_67, Batch, check_kit, check_wrong, kit_ids, wrong_ids

LAB7 = Batch.of(lambda lab, catcher: lab == L7)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return LAB7.grade(tmp_path_factory)


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", LAB7.wrong, ids=wrong_ids(LAB7))
def test_a_wrong_solution_is_graded_below_full(graded, index):
    check_wrong(graded, index)


@pytest.mark.slow
@needs_sandbox
def test_hard_coded_answers_earn_the_visible_points_only(graded):
    index = next(i for i, w in enumerate(WRONG_67) if w[1] == "the example's answers, hard-coded")
    result = graded.wrong_result(index)
    assert [c.name for c in result.checks if c.passed] == [c.name for c in result.checks if not c.hidden]
    assert result.points == sum(c.max_points for c in result.checks if not c.hidden)


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", LAB7.kit, ids=kit_ids(LAB7))
def test_calling_mailkits_own_implementation_is_flagged(graded, index):
    check_kit(graded, index)
