"""What a student reads: a failed check without library frames, and Validate's count of passed and failed cells."""

import nbformat
from IPython.core.interactiveshell import InteractiveShell
from nbformat.v4 import new_code_cell, new_notebook


def test_a_failed_check_shows_the_calling_line_and_the_message_only(capsys):
    shell = InteractiveShell.instance()
    shell.run_cell("from ptlab import checks\nimport torch\nchecks.assert_close(torch.zeros(2), torch.ones(2), 'probs')")
    shown = capsys.readouterr().out
    assert "line 3: checks.assert_close(torch.zeros(2), torch.ones(2), 'probs')" in shown
    assert "CheckFailed" in shown and "probs: 2 of 2 values differ" in shown
    assert "checks.py" not in shown and "Traceback" not in shown and len(shown.splitlines()) == 2


def test_a_failed_check_is_still_an_assertion_error():
    from ptlab import checks

    assert issubclass(checks.CheckFailed, AssertionError)


def _graded(source: str, gid: str, points: int = 1):
    meta = {"grade": True, "grade_id": gid, "locked": True, "points": points, "schema_version": 3, "solution": False}
    return new_code_cell(source, metadata={"nbgrader": meta})


def test_validate_counts_passed_and_failed_cells_and_shortens_sources(tmp_path, monkeypatch):
    from nbgrader.validator import Validator

    import ptlab.validate

    for name in ("_get_passed_cells", "_get_failed_cells", "validate"):  # restored after the test
        monkeypatch.setattr(Validator, name, getattr(Validator, name))
    monkeypatch.setattr(Validator, "_ptlab_summary", False, raising=False)
    ptlab.validate.install()
    nb = new_notebook(cells=[_graded("print('a: all visible tests passed')", "test_a"),
                             _graded("x = 1\n" * 10 + "assert x == 2, 'x should be 2'", "test_b"),
                             _graded("assert False, 'c fails'", "test_c")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    results = Validator().validate(str(path))
    failed = results["failed"]
    assert failed[0]["raw_error"].startswith("2 of 3 test cells failed, 1 passed.")
    assert failed[0]["source"].endswith("... (7 more lines)") and len(failed[0]["source"].splitlines()) == 5
