"""The nbgrader pipeline: the release is generated from the source, noise is stripped, hidden tests stay hidden."""

import tempfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder import LABS, SOLUTIONS, lab_names
from autograder.preprocessors import HideHiddenTests, strip_noise
from autograder.release import generate


def _cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells], dict(nb.metadata)


def test_every_lab_has_a_source_and_a_release():
    assert "00_orientation" in lab_names()
    for lab in lab_names():
        assert (LABS / lab / f"{lab}.ipynb").exists(), f"labs/{lab} is missing: run python -m autograder.release {lab}"


@pytest.mark.parametrize("lab", lab_names())
def test_labs_equal_a_fresh_nbgrader_release(lab):
    with tempfile.TemporaryDirectory() as tmp:
        generate([lab], out=Path(tmp))
        fresh = _cells(Path(tmp) / lab / f"{lab}.ipynb")
    shipped = _cells(LABS / lab / f"{lab}.ipynb")
    assert shipped == fresh, f"labs/{lab} differs from its source: run python -m autograder.release {lab}"


@pytest.mark.parametrize("lab", lab_names())
def test_release_keeps_no_solution_and_no_hidden_test(lab):
    text = (LABS / lab / f"{lab}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
        assert marker not in text, f"labs/{lab} still holds '{marker}'"
    assert "BEGIN SOLUTION" in (SOLUTIONS / lab / f"{lab}.ipynb").read_text()


def test_strip_noise_removes_library_lines_and_keeps_the_students_own():
    text = (
        "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.\n"
        " 40%|████      | 4/10 [00:01<00:02,  2.50it/s]\r100%|██████████| 10/10 [00:02<00:00,  4.10it/s]\n"
        "/x/site-packages/transformers/foo.py:12: FutureWarning: `bar` is deprecated\n"
        "  warnings.warn(\n"
        "my own debug line\n"
    )
    assert strip_noise(text) == "my own debug line\n"
    assert strip_noise("Failed to load CPU gemm_4bit_forward x\n") == ""


def test_feedback_preprocessor_removes_hidden_tests_and_their_tracebacks():
    cell = new_code_cell("assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == secret\n### END HIDDEN TESTS\n")
    cell.outputs = [nbformat.from_dict({"output_type": "error", "ename": "AssertionError", "evalue": "wrong",
                                        "traceback": ["assert f(2) == secret"]})]
    cell, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert "secret" not in cell.source and "assert f(1) == 1" in cell.source
    assert cell.outputs[0]["traceback"] == ["AssertionError: wrong"]
