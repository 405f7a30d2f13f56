"""Write a lab's grades as a gradebook file your LMS imports.

    python -m autograder.export OUT/LAB --lms canvas [--assignment "Lab 00 (12345)"]   # OUT/LAB/canvas.csv
    python -m autograder.export OUT/LAB --lms moodle                                   # OUT/LAB/moodle.csv

Reads `OUT/LAB/grades.csv` (written by `python -m autograder.grade_class`). Students are matched by the id
the LMS put in its download's file names (the `lms_id` column):
- Canvas (Grades > Import): columns `Student, ID, SIS User ID, SIS Login ID, Section, ASSIGNMENT`; Canvas
  matches rows on `ID` (the user id in `name_USERID_SUBMISSIONID_file`). Name the assignment column as
  Canvas exports it, `Title (assignment id)`, to fill an existing assignment; a bare title makes a new one.
- Moodle (Assignment > "Upload grading worksheet"): columns `Identifier, Full name, Grade, Maximum grade`;
  Moodle matches `Identifier` = `Participant ID` (the id in `Full Name_ID_assignsubmission_file_`).
Students graded from plain folders have no LMS id: they are written with an empty id and listed, as are
students whose points wait for a review (`python -m autograder.review`, which rewrites these files).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_COLUMNS = ["Identifier", "Full name", "Grade", "Maximum grade"]


def grade_rows(lab_out: Path) -> list[dict[str, str]]:
    """The rows of `lab_out/grades.csv`, as dicts by column."""
    path = lab_out / "grades.csv"
    if not path.exists():
        raise SystemExit(f"no grades.csv in {lab_out}: pass the lab's folder OUT/LAB that grade_class wrote")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def canvas(rows: list[dict[str, str]], assignment: str) -> list[list[str]]:
    """Canvas's gradebook import: a header, a "Points Possible" row, then one row per student."""
    table = [[*CANVAS_COLUMNS, assignment], ["Points Possible", "", "", "", "", rows[0]["max_total"] if rows else ""]]
    table += [[r["name"] or r["student"], r["lms_id"], "", "", "", r["total"]] for r in rows]
    return table


def moodle(rows: list[dict[str, str]]) -> list[list[str]]:
    """Moodle's assignment grading worksheet (the columns its upload reads)."""
    return [MOODLE_COLUMNS] + [[f"Participant {r['lms_id']}" if r["lms_id"] else "", r["name"] or r["student"],
                                r["total"], r["max_total"]] for r in rows]


def export(lab_out: Path, lms: str, assignment: str | None = None) -> tuple[Path, list[str]]:
    """Write `lab_out/LMS.csv`; return its path and warnings (students without an id, pending reviews)."""
    rows = grade_rows(lab_out)
    if lms == "canvas":
        table = canvas(rows, assignment or lab_out.name)
    elif lms == "moodle":
        table = moodle(rows)
    else:
        raise SystemExit(f"unknown LMS {lms!r}; valid: canvas, moodle")
    path = lab_out / f"{lms}.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(table)
    warnings = []
    no_id = [r["student"] for r in rows if not r["lms_id"]]
    if no_id:
        warnings.append(f"no LMS id (graded from a plain folder; fill the id by hand): {', '.join(no_id)}")
    pending = [r["student"] for r in rows if "pending review" in r["status"]]
    if pending:
        warnings.append(f"points pending review, exported as 0 until `python -m autograder.review`: {', '.join(pending)}")
    late = [r["student"] for r in rows if r.get("late")]
    if late:
        warnings.append(f"late (no penalty applied; the LMS applies its own late policy): {', '.join(late)}")
    return path, warnings


def refresh(lab_out: Path) -> list[Path]:
    """Rewrite every export already in `lab_out` (after a review changed grades.csv)."""
    written = []
    for lms in ("canvas", "moodle"):
        path = lab_out / f"{lms}.csv"
        if path.exists():
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            export(lab_out, lms, header[-1] if lms == "canvas" and header else None)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lab_out", type=Path, help="the lab's output folder, OUT/LAB")
    parser.add_argument("--lms", required=True, choices=["canvas", "moodle"])
    parser.add_argument("--assignment", help="Canvas: the assignment column, 'Title (id)' as Canvas exports it "
                        "(default: the lab's name, which Canvas imports as a new assignment)")
    args = parser.parse_args(argv)
    path, warnings = export(args.lab_out, args.lms, args.assignment)
    print(f"wrote {path}")
    for warning in warnings:
        print(f"note: {warning}")


if __name__ == "__main__":
    sys.exit(main())
