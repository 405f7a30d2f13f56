"""Validate's dialog for students: a count of passed and failed test cells, and short failure reports.

nbgrader's **Validate** button lists every failing cell with its whole source and its traceback, and no
count. The student's JupyterLab configuration (`jupyter/nbgrader_config.py`, installed into the
environment's `etc/jupyter/`) calls `install()`, which wraps nbgrader's `Validator` so that the first
report opens with "N of M test cells failed, K passed" and each failing cell's source is cut to its first
lines. Grading is untouched: the grader never loads the student configuration.
"""

from __future__ import annotations

SOURCE_LINES = 4  # the lines of a failing cell's source the dialog shows (the test's first statements)


def _short(source: str) -> str:
    lines = source.splitlines()
    more = len(lines) - SOURCE_LINES
    return "\n".join(lines[:SOURCE_LINES] + ([f"... ({more} more lines)"] if more > 0 else []))


def summary(passed: int, failed: int) -> str:
    """The dialog's first line: `2 of 7 test cells failed, 5 passed.`"""
    return f"{failed} of {passed + failed} test cells failed, {passed} passed."


def install() -> None:
    """Wrap `nbgrader.validator.Validator` (once): count the graded cells, shorten the failure reports."""
    from nbgrader import utils
    from nbgrader.validator import Validator

    if getattr(Validator, "_ptlab_summary", False):
        return
    get_passed, get_failed, validate = Validator._get_passed_cells, Validator._get_failed_cells, Validator.validate

    def _get_passed_cells(self, nb):
        cells = get_passed(self, nb)
        self._ptlab_passed = sum(utils.is_grade(c) for c in cells)
        return cells

    def _get_failed_cells(self, nb):
        cells = get_failed(self, nb)
        self._ptlab_failed = sum(utils.is_grade(c) for c in cells)
        return cells

    def _validate(self, filename):
        results = validate(self, filename)
        failed = results.get("failed")
        if failed:
            line = summary(getattr(self, "_ptlab_passed", 0), getattr(self, "_ptlab_failed", len(failed)))
            for entry in failed:
                entry["source"] = _short(entry["source"])
            failed[0]["error"] = f"{line}\n\n{failed[0]['error']}"
            failed[0]["raw_error"] = f"{line}\n\n{failed[0]['raw_error']}"
        return results

    Validator._get_passed_cells, Validator._get_failed_cells = _get_passed_cells, _get_failed_cells
    Validator.validate, Validator._ptlab_summary = _validate, True
