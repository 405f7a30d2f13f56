"""The class grader on a generated class: each kind of student gets the score nbgrader's rules give.

Lab 00 has five graded cells worth 2, 2, 1, 2 and 3 points. Each student below starts from the solution
(or the release) and breaks it in one known way; the expected score follows from which cells that
breaks. Slow: about two minutes on 2 cores.
"""

import csv
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import LABS, SOLUTIONS, sandbox
from autograder.grade_class import grade_class

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
    "grace_edited_test": (lambda: _edited_test(), 9, "graded"),
    "heidi_deleted_test": (lambda: _deleted_test(), 10, "graded"),
}


def _edited_test():
    """A wrong count_parameters whose test cell was replaced by `pass`: the grader restores the test."""
    nb = _inject(_notebook(SOLUTIONS), "ex_count_parameters", "return 0")
    _cell(nb, "test_count_parameters").source = "pass  # trust me"
    return nb


def _deleted_test():
    nb = _notebook(SOLUTIONS)
    nb.cells.remove(_cell(nb, "test_sequence_logprob"))
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    klass = tmp_path_factory.mktemp("class")
    for name, (make, _, _) in STUDENTS.items():
        (klass / name).mkdir()
        nbformat.write(make(), klass / name / f"{LAB}.ipynb")
    (klass / "ivan_empty").mkdir()  # submitted nothing
    out = tmp_path_factory.mktemp("out")
    shutil.make_archive(str(klass), "zip", klass)  # graded from the zip, as a TA would download it
    # Sandboxed where bubblewrap works (tests/test_attacks.py covers the sandbox itself); without it
    # the same expectations hold for the unsandboxed grader.
    results = grade_class(Path(f"{klass}.zip"), LAB, out, workers=2, cell_timeout=60, timeout=900, mem_gib=4,
                          unsafe=sandbox.unavailable() is not None)
    return {r.student: r for r in results}, out


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_student_gets_the_expected_score(graded, student):
    results, _ = graded
    _, expected, status = STUDENTS[student]
    r = results[student]
    assert r.status.startswith(status), f"{student}: status {r.status!r}"
    assert r.total == expected, f"{student}: {r.scores} ({r.status})"


def test_a_student_without_a_notebook_gets_zero_with_a_reason(graded):
    r = graded[0]["ivan_empty"]
    assert r.total == 0 and "no 00_orientation.ipynb" in r.status


def test_grades_csv_has_every_student_and_every_graded_cell(graded):
    _, out = graded
    rows = list(csv.DictReader(open(out / "grades.csv")))
    assert sorted(r["student"] for r in rows) == sorted([*STUDENTS, "ivan_empty"])
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
