"""Review a flagged submission: read what the grader flagged, then restore or confirm the withheld points.

    python -m autograder.review OUT/LAB STUDENT                 # show the flagged cells and the withheld points
    python -m autograder.review OUT/LAB STUDENT --approve       # honest: restore every withheld point
    python -m autograder.review OUT/LAB STUDENT --approve test_a test_b   # restore these cells only
    python -m autograder.review OUT/LAB STUDENT --reject        # confirm the 0 of every still-pending cell

`OUT/LAB` is what `python -m autograder.grade_class ... --out OUT` wrote for the lab. A submission the
static scan or an integrity check flagged scores 0 in the test cells of the exercise it touches until a
TA looks; the grader keeps, for each flagged student, `OUT/LAB/review/STUDENT/` (the executed notebook, the
student's gradebook and `review.json`: the flags, the withheld cells with the points the tests gave
them, the flagged cells' code). A decision updates `OUT/LAB/grades.csv`, regenerates the student's
`OUT/LAB/feedback/STUDENT.html` (its note says what a TA decided) and rewrites any LMS export already in
`OUT/LAB` (`python -m autograder.export`). `review/` holds hidden tests: never hand it to students.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from autograder import export

NOTE_ID = "ptlab-review-note"  # the markdown cell at the top of the feedback
CELL_NOTE = "ptlab-review-{}"  # the markdown cell under each withheld test cell


def _points(value: float) -> str:
    return f"{value:g}"


def note_texts(state: dict) -> tuple[str, dict[str, str]]:
    """The feedback's note (markdown) for the top of the notebook, and one note per withheld test cell.

    `state` is review.json: `withheld` {grade_id: points the tests gave}, `max` {grade_id: points},
    `reasons` {grade_id: why}, `decisions` {grade_id: "approved" | "rejected"}, `flags` [str].
    """
    decisions = state.get("decisions", {})
    pending = [g for g in state["withheld"] if g not in decisions]
    lines = []
    for gid, earned in state["withheld"].items():
        of = f"{_points(earned)} of {_points(state['max'][gid])}"
        verdict = {"approved": f"restored after a TA's review: {of} points",
                   "rejected": f"0 of {_points(state['max'][gid])} after a TA's review (the tests gave {of})"}.get(
            decisions.get(gid), f"{of} points withheld pending review (scored 0 until a TA has read the code)")
        lines.append(f"- `{gid}`: {verdict}. Why: {state['reasons'].get(gid, 'see the grader status')}")
    if pending:
        head = ("**Points withheld pending review.** The grader found code that a TA reads before these points "
                "count. This is a check, not an accusation: honest code is sometimes flagged, and a TA restores "
                "the points after reading it. The scores below show 0 for these cells until then.")
    else:
        head = "**Reviewed by a TA.** The grader had flagged this notebook; a TA has read it and decided:"
    cells = {}
    for gid, line in zip(state["withheld"], lines):
        cells[gid] = f"**Review:** {line[2:]}"
    return head + "\n\n" + "\n".join(lines), cells


def annotate(nb, state: dict) -> None:
    """Put (or refresh) the review notes in the autograded notebook `nb`, in place."""
    from nbformat.v4 import new_markdown_cell

    top, per_cell = note_texts(state)
    nb.cells = [c for c in nb.cells if not str(c.get("id", "")).startswith("ptlab-review-")]
    first_markdown = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(first_markdown + 1, new_markdown_cell(top, id=NOTE_ID))
    for gid, text in per_cell.items():
        at = next((i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == gid), None)
        if at is not None:
            nb.cells.insert(at + 1, new_markdown_cell(text, id=CELL_NOTE.format(gid)))


def status_text(state: dict, before: float) -> str:
    """The `status` column for a flagged student, given the review state (wording kept stable for CSV readers)."""
    decisions = state.get("decisions", {})
    pending = [g for g in state["withheld"] if g not in decisions]
    approved = [g for g, d in decisions.items() if d == "approved"]
    rejected = [g for g, d in decisions.items() if d == "rejected"]
    parts = [f"graded; flagged for review: {' | '.join(state['flags'])}"]
    if pending or not state["withheld"]:
        parts.append(f"scored 0 pending review: {', '.join(pending) or 'nothing'} (total before review {before:g})")
    if approved:
        parts.append(f"approved by a TA: {', '.join(approved)}")
    if rejected:
        parts.append(f"rejected by a TA: {', '.join(rejected)}")
    return "; ".join(parts)


def _load(lab_out: Path, student: str) -> tuple[Path, dict]:
    folder = lab_out / "review" / student
    if not (folder / "review.json").exists():
        flagged = sorted(p.name for p in (lab_out / "review").glob("*") if (p / "review.json").exists())
        raise SystemExit(f"{student} was not flagged in {lab_out} (nothing to review); flagged: {flagged or 'none'}")
    return folder, json.loads((folder / "review.json").read_text())


def show(state: dict) -> str:
    """What a TA reads: the flags, the flagged code with line numbers, and the withheld points."""
    out = [f"{state['student']} ({state['lab']}): {len(state['withheld'])} test cell(s) withheld"]
    out += [f"  flag: {flag}" for flag in state["flags"]]
    for cell in state.get("cells", []):
        out.append(f"\n--- {cell['name']} (lines flagged: {', '.join(map(str, cell['lines'])) or '-'})")
        for number, line in enumerate(cell["source"].splitlines(), 1):
            out.append(f"{'>>' if number in cell['lines'] else '  '} {number:3d} | {line}")
    out.append("")
    decisions = state.get("decisions", {})
    for gid, earned in state["withheld"].items():
        out.append(f"  {gid}: the tests gave {earned:g} / {state['max'][gid]:g}; "
                   f"{decisions.get(gid, 'pending')}; why: {state['reasons'].get(gid, '')}")
    return "\n".join(out)


def _update_csv(lab_out: Path, state: dict) -> None:
    path = lab_out / "grades.csv"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = reader.fieldnames, list(reader)
    for row in rows:
        if row["student"] != state["student"]:
            continue
        for gid, earned in state["withheld"].items():
            row[gid] = _points(earned if state.get("decisions", {}).get(gid) == "approved" else 0.0)
        graded = [c for c in state["max"]]
        row["total"] = _points(sum(float(row[c]) for c in graded))
        before = float(row["total"]) + sum(e for g, e in state["withheld"].items()
                                           if state.get("decisions", {}).get(g) != "approved")
        row["status"] = status_text(state, before)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _regenerate_feedback(lab_out: Path, folder: Path, state: dict) -> None:
    """Record the scores in the student's gradebook, refresh the notes, and rebuild the feedback HTML."""
    import nbformat
    from nbgrader.api import Gradebook

    from autograder.release import nbgrader

    lab, student = state["lab"], state["student"]
    with Gradebook(f"sqlite:///{folder / 'gradebook.db'}") as gb:
        for gid in state["withheld"]:
            grade = gb.find_grade(gid, lab, lab, student)
            # None: nbgrader's own (auto) score counts again; 0.0: the withheld score stands.
            grade.manual_score = None if state.get("decisions", {}).get(gid) == "approved" else 0.0
        gb.db.commit()
    path = folder / "autograded" / student / lab / f"{lab}.ipynb"
    nb = nbformat.read(path, as_version=4)
    annotate(nb, state)
    nbformat.write(nb, path)
    result = nbgrader(["generate_feedback", lab, "--student", student, "--force"], folder, folder / "gradebook.db")
    html = folder / "feedback" / student / lab / f"{lab}.html"
    if result.returncode != 0 or not html.exists():
        raise SystemExit(f"could not regenerate the feedback of {student}:\n{result.stderr[-2000:]}")
    (lab_out / "feedback").mkdir(exist_ok=True)
    shutil.copy(html, lab_out / "feedback" / f"{student}.html")


def decide(lab_out: Path, student: str, approve: list[str] | None = None, reject: bool = False) -> dict:
    """Approve the cells in `approve` (all withheld cells when empty), or reject every pending cell;
    update grades.csv, the feedback and any export. Returns the new review state."""

    lab_out = Path(lab_out).resolve()  # nbgrader wants an absolute course root
    folder, state = _load(lab_out, student)
    decisions = state.setdefault("decisions", {})
    if approve is not None:
        unknown = sorted(set(approve) - set(state["withheld"]))
        if unknown:
            raise SystemExit(f"not withheld for {student}: {unknown}; withheld: {list(state['withheld'])}")
        decisions.update(dict.fromkeys(approve or state["withheld"], "approved"))
    if reject:
        decisions.update({g: "rejected" for g in state["withheld"] if g not in decisions})
    _regenerate_feedback(lab_out, folder, state)  # first: if nbgrader fails, nothing else has changed
    (folder / "review.json").write_text(json.dumps(state, indent=1))
    _update_csv(lab_out, state)
    export.refresh(lab_out)
    return state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lab_out", type=Path, help="the lab's output folder, OUT/LAB")
    parser.add_argument("student", help="the student's row name in grades.csv")
    parser.add_argument("--approve", nargs="*", metavar="GRADE_ID",
                        help="restore the withheld points (of these test cells only, if named)")
    parser.add_argument("--reject", action="store_true", help="confirm 0 for every cell still pending review")
    args = parser.parse_args(argv)
    if args.approve is not None and args.reject:
        parser.error("choose --approve or --reject")
    folder, state = _load(args.lab_out, args.student)
    if args.approve is None and not args.reject:
        print(show(state))
        print(f"\nTo decide: python -m autograder.review {args.lab_out} {args.student} --approve [GRADE_ID ...] | --reject")
        return
    state = decide(args.lab_out, args.student, args.approve, args.reject)
    row = next(r for r in export.grade_rows(args.lab_out) if r["student"] == args.student)
    print(f"{args.student}: total {row['total']} / {row['max_total']}; {row['status']}")
    print(f"feedback: {args.lab_out / 'feedback' / (args.student + '.html')}")


if __name__ == "__main__":
    sys.exit(main())
