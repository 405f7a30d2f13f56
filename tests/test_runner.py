"""ptlab.runner / `ptlab run`: a graded cell passes, fails on an error, and fails on stderr (nbgrader's rule)."""

import subprocess
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from ptlab import runner


def _graded(source, grade_id, points=1):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": points,
                                 "schema_version": 3, "solution": False, "task": False}
    return cell


def _notebook(tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("import os, sys\nfast = os.environ.get('PTLAB_FAST')"),
        _graded("assert fast == '1', 'fast mode should be on'", "test_fast_mode_on"),
        _graded("assert 1 + 1 == 3, 'arithmetic is broken'", "test_fails", 2),
        _graded("print('noise', file=sys.stderr)", "test_stderr"),
        new_code_cell("undefined_name"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "lab.ipynb"
    nbformat.write(nb, path)
    return path


def test_runner_reports_pass_fail_and_stderr_per_graded_cell(tmp_path):
    nb = runner.execute(_notebook(tmp_path), fast=True, timeout=120)
    results = {r.grade_id: r for r in runner.graded_cell_results(nb)}
    assert results["test_fast_mode_on"].outcome == "pass"
    assert results["test_fails"].outcome == "fail" and "arithmetic is broken" in results["test_fails"].reason
    assert results["test_stderr"].outcome == "stderr"
    assert runner.errors_outside_tests(nb) == ["cell 4: NameError: name 'undefined_name' is not defined"]


def test_ptlab_run_command_prints_each_cell_and_exits_nonzero_on_failure(tmp_path):
    path = _notebook(tmp_path)
    done = subprocess.run([sys.executable, "-m", "ptlab.cli", "run", str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert "PASS" in done.stdout and "FAIL (stderr)" in done.stdout and "1 / 4 points" in done.stdout


def test_find_notebook_resolves_a_unique_prefix_and_explains_a_bad_one(tmp_path):
    (tmp_path / "labs" / "05_lora").mkdir(parents=True)
    assert runner.find_notebook("05", root=tmp_path) == tmp_path / "labs" / "05_lora" / "05_lora.ipynb"
    try:
        runner.find_notebook("99", root=tmp_path)
    except FileNotFoundError as err:
        assert "05_lora" in str(err)
    else:
        raise AssertionError("an unknown lab should raise FileNotFoundError")
