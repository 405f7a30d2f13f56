"""Every lab end to end: the solution autogrades to full marks with no error in any cell; the student
release autogrades without crashing the batch and scores 0. Slow: about a minute or two per lab.
Lab 00 is checked the same way in tests/test_grade_class.py, whose class holds its solution and release."""

import pytest

from autograder import lab_names
from autograder.selfcheck import check_lab

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("lab", [lab for lab in lab_names() if lab != "00_orientation"])
def test_solution_full_marks_and_release_zero(lab):
    problems, results = check_lab(lab, workers=2)
    assert results["solution"].max_total > 0, f"{lab} has no graded cells"
    assert problems == [], "\n".join(problems)
