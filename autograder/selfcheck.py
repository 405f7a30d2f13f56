"""Self-check of a lab: the solution autogrades to full marks, the release to 0, nothing crashes.

    python -m autograder.selfcheck            # every lab
    python -m autograder.selfcheck 05_lora    # one lab

Both notebooks go through the real class-grading pipeline (nbgrader autograde in fast mode, library
noise stripped, hidden tests run). Exit status 1 if any lab fails; a table says which cell and why.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from autograder import LABS, SOLUTIONS, lab_names
from autograder.grade_class import Result, grade_class


def check_lab(lab: str, workers: int = 2) -> tuple[list[str], dict[str, Result]]:
    """Grade the solution and the release of `lab` as two students; return (problems, results)."""
    with tempfile.TemporaryDirectory() as tmp:
        klass = Path(tmp) / "class"
        for student, source in (("solution", SOLUTIONS), ("release", LABS)):
            (klass / student).mkdir(parents=True)
            shutil.copy(source / lab / f"{lab}.ipynb", klass / student / f"{lab}.ipynb")
        results = {r.student: r for r in grade_class(klass, lab, Path(tmp) / "out", workers=workers, quiet=True)}
    problems = []
    sol, rel = results["solution"], results["release"]
    if sol.status != "graded" or sol.total != sol.max_total:
        lost = [g for g, s in sol.scores.items() if s < sol.max_scores[g]]
        problems.append(f"{lab}: solution scored {sol.total:g}/{sol.max_total:g} ({sol.status}); lost: {lost}")
    if sol.errors:
        problems.append(f"{lab}: solution raised outside test cells: {sol.errors}")
    if rel.status != "graded" or rel.total != 0:
        problems.append(f"{lab}: release scored {rel.total:g} ({rel.status}); expected 0 and no crash")
    return problems, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", help=f"labs to check (default: all of {lab_names()})")
    args = parser.parse_args(argv)
    failed = False
    for lab in args.labs or lab_names():
        problems, results = check_lab(lab)
        for r in results.values():
            print(f"{lab:<24} {r.student:<9} {r.total:5g} / {r.max_total:g}  {r.status}  ({r.seconds:.0f} s)")
        for p in problems:
            print(f"PROBLEM {p}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
