"""ptlab.runner / `ptlab run`: a graded cell passes, fails on an error, and fails on stderr (nbgrader's rule)."""

import os
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


def _setup_notebook(*sources):
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_set_model_replaces_the_string_and_keeps_the_comment():
    nb = _setup_notebook("import os\nMODEL = \"tiny-base\"   # offline course model\nx = MODEL",
                         "def f():\n    MODEL = 'inside a function'\n    return MODEL")
    runner.set_model(nb, "/tmp/twin")
    assert nb.cells[0].source == "import os\nMODEL = '/tmp/twin'   # offline course model\nx = MODEL"
    assert "MODEL = 'inside a function'" in nb.cells[1].source, "an indented assignment is not the set-up line"


def test_set_model_explains_a_notebook_without_a_model_line():
    nb = _setup_notebook("MODEL_NAME = 'tiny-base'\nMODEL = build()")
    try:
        runner.set_model(nb, "/tmp/twin")
    except ValueError as err:
        assert "found 0" in str(err) and "MODEL" in str(err)
    else:
        raise AssertionError("a notebook with no `MODEL = \"...\"` line should raise ValueError")


def test_set_model_refuses_two_model_lines():
    nb = _setup_notebook("MODEL = 'tiny-base'", "MODEL = 'tiny-sft'")
    try:
        runner.set_model(nb, "/tmp/twin")
    except ValueError as err:
        assert "found 2 (cell 0, cell 1)" in str(err)
    else:
        raise AssertionError("two MODEL lines are ambiguous and should raise ValueError")


def test_ptlab_run_model_option_reaches_the_kernel(tmp_path):
    nb = _setup_notebook("MODEL = 'tiny-base'  # the course model")
    nb.cells.append(_graded("import os\nassert MODEL == os.environ['EXPECTED_MODEL'], MODEL", "test_model_set"))
    path = tmp_path / "lab.ipynb"
    nbformat.write(nb, path)
    folder = tmp_path / "twin"
    folder.mkdir()
    env = {**os.environ, "EXPECTED_MODEL": str(folder.resolve())}
    done = subprocess.run([sys.executable, "-m", "ptlab.cli", "run", str(path), "--model", str(folder)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 / 1 points" in done.stdout and f"MODEL = '{folder.resolve()}'" in done.stdout


def test_ptlab_run_model_option_fails_clearly_without_a_model_line(tmp_path):
    path = tmp_path / "lab.ipynb"
    nbformat.write(_setup_notebook("x = 1"), path)
    done = subprocess.run([sys.executable, "-m", "ptlab.cli", "run", str(path), "--model", "some/model"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "MODEL" in done.stderr and "found 0" in done.stderr
