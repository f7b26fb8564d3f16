"""Labs 1-5 and 10: each wrong solution of tests/test_labs.py (WRONG) graded below
full, with the check that catches it named; each solution that calls
mailkit's own implementation (KIT) flagged.  One batch, graded once by the
real grader (a module fixture); in its own file so that another worker
grades it while tests/test_labs.py runs the rest."""

from __future__ import annotations

import pytest

from mailkit.labs import release
from test_labs import KIT, LABS, WRONG, grade_variants, needs_sandbox


@pytest.fixture(scope="module")
def wrong_gradebook(tmp_path_factory):
    released = tmp_path_factory.mktemp("release")
    release([LABS], released, check=False)
    entries = WRONG + [(lab, "kit", code, "") for lab, code, _ in KIT]
    return grade_variants(released, entries, tmp_path_factory.mktemp("wrong"))


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", range(len(WRONG)), ids=[f"{lab}: {what}" for lab, what, _, _ in WRONG])
def test_a_wrong_solution_is_graded_below_full(wrong_gradebook, index):
    lab_id, what, _, catcher = WRONG[index]
    result = wrong_gradebook.result(f"s{index:02d}", lab_id)
    failed = [c.name for c in result.checks if not c.passed]
    assert catcher in failed, (what, failed)
    assert result.points < result.max_points


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("index", range(len(KIT)), ids=[lab for lab, _, _ in KIT])
def test_calling_mailkits_own_implementation_is_flagged(wrong_gradebook, index):
    lab_id, _, name = KIT[index]
    result = wrong_gradebook.result(f"s{len(WRONG) + index:02d}", lab_id)
    assert any(f"uses mailkit's {name}" in flag for flag in result.flags), result.flags
    honest = wrong_gradebook.result("s00", "01-handshake-client")
    assert honest.flags == []
