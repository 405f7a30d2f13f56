"""The nbgrader pipeline: the release is generated from the source and carries the course address, noise is
stripped, hidden tests stay hidden, grading runs the course model whatever MODEL says."""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder import LABS, ROOT, SOLUTIONS, lab_names
from autograder.preprocessors import HOW_TO_WORK_ID, HideHiddenTests, UseCourseModel, strip_noise
from autograder.release import BRANCH, REPOSITORY, convert_source, generate, load_course


def _cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source, dict(c.metadata)) for c in nb.cells], dict(nb.metadata)


def test_every_lab_has_a_source_and_a_release():
    assert "00_orientation" in lab_names()
    for lab in lab_names():
        assert (LABS / lab / f"{lab}.ipynb").exists(), f"labs/{lab} is missing: run python -m autograder.release {lab}"


@pytest.fixture(scope="module")
def fresh_release(tmp_path_factory) -> Path:
    """Every lab released by nbgrader from its source into a scratch folder (one nbgrader process)."""
    out = tmp_path_factory.mktemp("release")
    generate(lab_names(), out=out)
    return out


@pytest.mark.parametrize("lab", lab_names())
def test_labs_equal_a_fresh_nbgrader_release(fresh_release, lab):
    fresh = _cells(fresh_release / lab / f"{lab}.ipynb")
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


# ---- The course address, the release's standard cell, grading on the course model ----

OLD_BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
             "(https://colab.research.google.com/github/someone/old-repo/blob/main/labs/03_x/03_x.ipynb)")
OLD_SETUP = ('try:\n    import ptlab\nexcept ImportError:\n'
             '    %pip install -q "ptlab @ git+https://github.com/someone/old-repo"\n    import ptlab\n'
             'MODEL = "tiny-base"  # on Colab a Hub id\n')


def _old_style_notebook():
    setup = new_code_cell(OLD_SETUP)
    setup.metadata["nbgrader"] = {"grade": False, "grade_id": "setup", "locked": True, "schema_version": 3,
                                  "solution": False, "task": False}
    return new_notebook(cells=[new_markdown_cell("# Lab 03\n\n" + OLD_BADGE), setup])


def test_convert_source_puts_placeholders_and_unlocks_the_model_cell_once():
    nb = _old_style_notebook()
    assert convert_source(nb) is True
    badge, setup = nb.cells[0].source, nb.cells[1].source
    assert f"colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/labs/03_x/03_x.ipynb" in badge
    assert f'"ptlab @ git+https://github.com/{REPOSITORY}@{BRANCH}"' in setup
    assert "someone" not in badge + setup
    assert "nbgrader" not in nb.cells[1].metadata, "students change MODEL in the set-up cell: it must not be locked"
    before = nbformat.writes(nb)
    assert convert_source(nb) is False and nbformat.writes(nb) == before, "a second conversion changes nothing"


def test_convert_source_keeps_a_graded_cell_locked():
    nb = _old_style_notebook()
    nb.cells[1].metadata["nbgrader"].update(grade=True, points=1)
    convert_source(nb)
    assert nb.cells[1].metadata["nbgrader"]["locked"] is True


@pytest.mark.parametrize("lab", lab_names())
def test_sources_hold_the_placeholders_not_an_address(lab):
    text = "\n".join(c.source for c in nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4).cells)
    assert f"github/{REPOSITORY}/blob/{BRANCH}/labs/{lab}/{lab}.ipynb" in text, \
        f"solutions/{lab}: the badge should use the placeholders; run python -m autograder.release --convert-sources {lab}"
    assert f"git+https://github.com/{REPOSITORY}@{BRANCH}" in text, f"solutions/{lab}: the install line should too"


@pytest.mark.parametrize("lab", lab_names())
def test_every_released_notebook_carries_the_configured_address(lab):
    course = load_course()
    nb = nbformat.read(LABS / lab / f"{lab}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert f"(https://colab.research.google.com/github/{course.repository}/blob/{course.branch}/labs/{lab}/{lab}.ipynb)" in text
    assert f'"ptlab @ git+https://github.com/{course.repository}@{course.branch}"' in text
    assert "{{COURSE_" not in text
    assert [c.id for c in nb.cells].count(HOW_TO_WORK_ID) == 1, "the release adds the 'Working in this notebook' cell"


@pytest.mark.parametrize("lab", lab_names())
def test_the_cell_that_sets_model_is_not_locked(lab):
    for cell in nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4).cells:
        if cell.cell_type == "code" and re.search(r"^MODEL\s*=", cell.source, re.M):
            assert not cell.metadata.get("nbgrader", {}).get("locked"), f"{lab}: the MODEL cell is locked"


def test_course_address_must_be_owner_slash_name(tmp_path):
    bad = tmp_path / "course.toml"
    bad.write_text('[course]\nrepository = "https://github.com/x/y"\nbranch = "main"\n')
    with pytest.raises(ValueError, match="owner/name"):
        load_course(bad)


def test_grading_resets_model_and_data_to_the_source_notebook(tmp_path, monkeypatch):
    lab = tmp_path / "solutions" / "07_x"
    lab.mkdir(parents=True)
    source = new_notebook(cells=[new_code_cell('import ptlab\nMODEL = "tiny-base"  # course\nDATA = "tinyworld"\n')])
    nbformat.write(source, lab / "07_x.ipynb")
    monkeypatch.setenv("PTLAB_COURSE_ROOT", str(tmp_path))
    submission = new_notebook(cells=[
        new_code_cell('import ptlab\nMODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # mine\nDATA = "tatsu-lab/alpaca"\n'),
        new_code_cell('x = 1\n    MODEL_NAME = "keep me"\n')])
    nb, _ = UseCourseModel().preprocess(submission, {"nbgrader": {"assignment": "07_x", "notebook": "07_x"}})
    assert nb.cells[0].source == 'import ptlab\nMODEL = "tiny-base"  # course\nDATA = "tinyworld"\n'
    assert nb.cells[1].source == 'x = 1\n    MODEL_NAME = "keep me"\n'


@pytest.mark.slow
def test_a_submission_that_names_a_hub_model_is_graded_on_the_course_model(tmp_path):
    from autograder.grade_class import grade_class

    lab = "00_orientation"
    nb = nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
    setup = next(c for c in nb.cells if c.cell_type == "code" and re.search(r"^MODEL\s*=", c.source, re.M))
    setup.source = re.sub(r'^MODEL\s*=.*$', 'MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"', setup.source, flags=re.M)
    (tmp_path / "class" / "colab_learner").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "class" / "colab_learner" / f"{lab}.ipynb")
    [result] = grade_class(tmp_path / "class", lab, tmp_path / "out", workers=1)
    assert result.status == "graded" and result.total == result.max_total > 0, \
        f"{result.total}/{result.max_total} ({result.status}); lost: {[g for g, s in result.scores.items() if not s]}"


def test_release_works_with_the_venv_python_without_activation(tmp_path):
    # nbgrader runs `alembic` by name; a PATH without the venv's bin/ must not break the release.
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "utils"), str(ROOT)])
    result = subprocess.run([sys.executable, "-m", "autograder.release", "00_orientation", "--out", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "00_orientation" / "00_orientation.ipynb").exists()
