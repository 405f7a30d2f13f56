"""The class grader on a generated class: each kind of student gets the score nbgrader's rules give.

Lab 00 has five graded cells worth 2, 2, 1, 2 and 3 points. Each student below starts from the solution
(or the release) and breaks it in one known way; the expected score follows from which cells that
breaks. The download mixes the layouts a TA meets: folders named after students, a Moodle folder
(grace) and Canvas flat files (ruth: late, resubmitted, an honest solution with a stray `import inspect`
that the scan flags), beside a stray `notes.txt`; ruth's flag is then reviewed (approve, reject).
The class is graded once, with tests/test_attacks.py's cheating students in the same download
(tests/conftest.py: `lab00_class`). Slow: a few minutes on 2 cores.
"""

import csv
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import LABS, SOLUTIONS, export, review
from autograder.grade_class import grade_class, report, source_max_scores

LAB = "00_orientation"
pytestmark = pytest.mark.slow


def _notebook(source: Path):
    return nbformat.read(source / LAB / f"{LAB}.ipynb", as_version=4)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _inject(nb, grade_id: str, line: str):
    """Put `line` as the first statement of the function body in solution cell `grade_id`."""
    cell = _cell(nb, grade_id)
    cell.source = re.sub(r"(### BEGIN SOLUTION\n)", r"\1    " + line + "\n", cell.source, count=1)
    return nb


STUDENTS = {
    # name: (how the notebook is made, expected total, expected status prefix)
    "alice_correct": (lambda: _notebook(SOLUTIONS), 10, "graded"),
    "bob_partial": (lambda: _inject(_notebook(SOLUTIONS), "ex_sequence_logprob",
                                    "return torch.zeros(input_ids.shape[0])"), 7, "graded"),
    "carol_untouched": (lambda: _notebook(LABS), 0, "graded"),
    "dave_hangs": (lambda: _inject(_notebook(SOLUTIONS), "ex_top_next_tokens", "while True: pass"), 8, "graded"),
    "erin_kills_kernel": (lambda: _inject(_notebook(SOLUTIONS), "ex_count_parameters",
                                          "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), 0, "not graded"),
    "frank_memory_blowup": (lambda: _inject(_notebook(SOLUTIONS), "ex_sequence_logprob",
                                            "hog = [torch.ones(2**28) for _ in range(200)]  # 200 GiB"), 7, "graded"),
    "Grace_Edited": (lambda: _edited_test(), 9, "graded"),  # a Moodle folder
    "heidi_deleted_test": (lambda: _deleted_test(), 10, "graded"),
    # Canvas, late, second upload: full marks less sequence_logprob's 3 points, withheld pending review
    "ruthflagged": (lambda: _flagged(), 7, "graded; flagged for review"),
}
# How each student's notebook appears in the download (default: STUDENT/00_orientation.ipynb).
UPLOADS = {
    "Grace_Edited": f"Grace Edited_3003_assignsubmission_file_/{LAB}.ipynb",
    "ruthflagged": f"ruthflagged_LATE_7001_9001_{LAB}-1.ipynb",
}


def _flagged():
    """An honest solution with a stray `import inspect` (flagged) and a determinism setting (allowed)."""
    nb = _inject(_notebook(SOLUTIONS), "ex_sequence_logprob", "import inspect")
    return _inject(nb, "ex_next_token_probs", "torch.backends.cudnn.deterministic = True")


def _edited_test():
    """A wrong count_parameters whose test cell was replaced by `pass`: the grader restores the test."""
    nb = _inject(_notebook(SOLUTIONS), "ex_count_parameters", "return 0")
    _cell(nb, "test_count_parameters").source = "pass  # trust me"
    return nb


def _deleted_test():
    nb = _notebook(SOLUTIONS)
    nb.cells.remove(_cell(nb, "test_sequence_logprob"))
    return nb


def write_class(klass: Path) -> None:
    """The students above as an LMS download lays them out, with an earlier upload, a stray file and an
    empty folder (tests/conftest.py zips and grades it, with tests/test_attacks.py's students)."""
    for name, (make, _, _) in STUDENTS.items():
        path = klass / UPLOADS.get(name, f"{name}/{LAB}.ipynb")
        path.parent.mkdir(exist_ok=True)
        nbformat.write(make(), path)
    shutil.copy(LABS / LAB / f"{LAB}.ipynb", klass / f"ruthflagged_LATE_7001_9000_{LAB}.ipynb")  # first upload
    (klass / "notes.txt").write_text("a file the LMS download carried along")
    (klass / "ivan_empty").mkdir()  # submitted nothing


@pytest.fixture(scope="module")
def graded(lab00_class):
    """(student -> result, OUT/LAB) of the class graded once for this module and tests/test_attacks.py."""
    return lab00_class.results, lab00_class.out


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_student_gets_the_expected_score(graded, student):
    results, _ = graded
    _, expected, status = STUDENTS[student]
    r = results[student]
    assert r.status.startswith(status), f"{student}: status {r.status!r}"
    assert r.total == expected, f"{student}: {r.scores} ({r.status})"


def test_the_solution_raises_nowhere_outside_the_tests_and_the_release_scores_zero(graded):
    """What tests/test_notebooks.py checks for every other lab (selfcheck), for lab 00 from this class."""
    alice, carol = graded[0]["alice_correct"], graded[0]["carol_untouched"]
    assert alice.total == alice.max_total > 0 and not alice.errors, alice.errors
    assert carol.status == "graded" and carol.total == 0


def test_a_student_without_a_notebook_gets_zero_with_a_reason(graded):
    r = graded[0]["ivan_empty"]
    assert r.total == 0 and "no 00_orientation.ipynb" in r.status


def test_grades_csv_has_every_student_and_every_graded_cell(graded):
    results, out = graded
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert sorted(r["student"] for r in rows) == sorted(results) and {*STUDENTS, "ivan_empty"} <= set(results)
    for column in ("test_next_token_probs", "test_top_next_tokens", "test_count_parameters", "test_llama_param_count",
                   "test_sequence_logprob", "total", "max_total", "status"):
        assert column in rows[0], f"missing column {column}"
    alice = next(r for r in rows if r["student"] == "alice_correct")
    assert float(alice["total"]) == float(alice["max_total"]) == 10


def test_feedback_shows_results_but_never_hidden_tests(graded):
    results, out = graded
    html = (out / "feedback" / "bob_partial.html").read_text()
    assert "sequence_logprob" in html
    assert "BEGIN HIDDEN TESTS" not in html and "one_by_one" not in html, "hidden test code leaked into feedback"


def _rows(lab_out: Path) -> dict[str, dict[str, str]]:
    return {r["student"]: r for r in export.grade_rows(lab_out)}


def test_lms_columns_name_the_late_canvas_student_and_the_moodle_student(graded):
    rows = _rows(graded[1])
    assert (rows["ruthflagged"]["late"], rows["ruthflagged"]["lms_id"]) == ("late", "7001")
    assert (rows["Grace_Edited"]["name"], rows["Grace_Edited"]["lms_id"], rows["Grace_Edited"]["late"]) == (
        "Grace Edited", "3003", "")


def test_every_file_not_graded_is_named_with_the_reason(graded):
    results, lab_out = graded
    unused = {r["file"]: r["reason"] for r in csv.DictReader(open(lab_out / "unused.csv"))}
    assert unused["notes.txt"] == "not a notebook"
    assert "earlier submission of ruthflagged" in unused[f"ruthflagged_LATE_7001_9000_{LAB}.ipynb"]
    text = report(list(results.values()), source_max_scores(LAB), list(unused.items()), lab_out)
    assert "notes.txt: not a notebook" in text and "autograder.review" in text


def test_class_statistics_per_graded_cell(graded):
    results, lab_out = graded
    stats = {r["grade_id"]: r for r in csv.DictReader(open(lab_out / "exercises.csv"))}
    assert list(stats) == list(source_max_scores(LAB))
    handed_in = [r for r in results.values() if not r.status.startswith("no ")]  # ivan handed in nothing
    full = sum(r.scores["test_sequence_logprob"] == 3 for r in handed_in)
    assert stats["test_sequence_logprob"]["students"] == str(len(handed_in))
    assert stats["test_sequence_logprob"]["full_marks"] == f"{full / len(handed_in):.0%}"
    mean = sum(r.scores["test_count_parameters"] for r in handed_in) / len(handed_in)
    assert stats["test_count_parameters"]["mean"] == f"{mean:.2f}"


def test_feedback_says_which_points_wait_for_review_and_why(graded):
    html = (graded[1] / "feedback" / "ruthflagged.html").read_text()
    assert "Points withheld pending review" in html
    assert "test_sequence_logprob" in html and "imports inspect" in html
    assert "deterministic" not in graded[0]["ruthflagged"].status, "an allowed setting was flagged"


@pytest.fixture
def reviewed(graded, tmp_path):
    """A copy of the lab's outputs (with a Canvas export) to review, so the tests do not share decisions."""
    lab_out = tmp_path / LAB
    shutil.copytree(graded[1], lab_out)
    export.export(lab_out, "canvas", "Lab 00 (42)")
    return lab_out


def test_approving_a_review_restores_the_points_everywhere(reviewed):
    review.decide(reviewed, "ruthflagged", approve=[])
    row = _rows(reviewed)["ruthflagged"]
    assert (row["total"], row["test_sequence_logprob"]) == ("10", "3") and "approved by a TA" in row["status"]
    assert "Reviewed by a TA" in (reviewed / "feedback" / "ruthflagged.html").read_text()
    assert ["ruthflagged", "7001", "", "", "", "10"] in list(csv.reader(open(reviewed / "canvas.csv")))


def test_rejecting_a_review_confirms_the_zero(reviewed):
    review.decide(reviewed, "ruthflagged", reject=True)
    row = _rows(reviewed)["ruthflagged"]
    assert row["total"] == "7" and "rejected by a TA: test_sequence_logprob" in row["status"]
    html = (reviewed / "feedback" / "ruthflagged.html").read_text()
    assert "after a TA&#39;s review" in html or "after a TA's review" in html


def test_grading_another_lab_keeps_this_labs_grades(graded, tmp_path):
    _, lab_out = graded
    before = (lab_out / "grades.csv").read_text()
    (tmp_path / "class" / "nobody").mkdir(parents=True)  # no notebook: no kernel, no gradebook needed
    grade_class(tmp_path / "class", "05_lora", lab_out.parent, workers=1, unsafe=True, quiet=True)
    assert (lab_out.parent / "05_lora" / "grades.csv").exists()
    assert (lab_out / "grades.csv").read_text() == before
