"""LMS downloads in, LMS gradebooks out, class statistics, and the scan's benign settings: no kernel, fast."""

import csv
import zipfile
from pathlib import Path

import pytest

from autograder import export, scan
from autograder.grade_class import Result, exercise_statistics, write_csv
from autograder.submissions import collect, unpack

LAB = "00_orientation"


def _touch(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def canvas(tmp_path):
    """A Canvas bulk download: on time, late, a re-upload (-1) after a first try, a stray text file."""
    d = tmp_path / "download"
    _touch(d / f"studenta_1234_5678_{LAB}.ipynb")
    _touch(d / f"studentb_LATE_2345_6789_{LAB}.ipynb")
    _touch(d / f"studentc_3456_7890_{LAB}.ipynb")
    _touch(d / f"studentc_3456_7890_{LAB}-1.ipynb")
    _touch(d / "notes.txt")
    return d


def test_canvas_files_name_the_students_and_mark_late_ones(canvas):
    found = collect(canvas, LAB)
    assert list(found.submissions) == ["studenta", "studentb", "studentc"]
    assert [s.late for s in found.submissions.values()] == [False, True, False]
    assert [s.lms_id for s in found.submissions.values()] == ["1234", "2345", "3456"]


def test_the_latest_canvas_resubmission_is_graded_and_the_earlier_one_listed(canvas):
    found = collect(canvas, LAB)
    assert found.submissions["studentc"].notebook.name == f"studentc_3456_7890_{LAB}-1.ipynb"
    unused = dict(found.unused)
    assert "earlier submission of studentc" in unused[f"studentc_3456_7890_{LAB}.ipynb"]


def test_a_higher_submission_id_wins_over_a_resubmission_suffix(tmp_path):
    _touch(tmp_path / f"ann_11_100_{LAB}-2.ipynb")
    _touch(tmp_path / f"ann_11_101_{LAB}.ipynb")
    assert collect(tmp_path, LAB).submissions["ann"].notebook.name == f"ann_11_101_{LAB}.ipynb"


def test_every_file_not_graded_is_listed_with_a_reason(canvas):
    _touch(canvas / "loose.ipynb")
    _touch(canvas / "studenta_1234_5678_data.csv")
    unused = dict(collect(canvas, LAB).unused)
    assert unused["notes.txt"] == "not a notebook"
    assert "loose notebook" in unused["loose.ipynb"] and "folder named after the student" in unused["loose.ipynb"]
    assert "not a notebook" in unused["studenta_1234_5678_data.csv"]


def test_moodle_folders_name_the_students_and_keep_the_participant_id(tmp_path):
    _touch(tmp_path / "Ada Lovelace_501_assignsubmission_file_" / f"{LAB}.ipynb")
    _touch(tmp_path / "Ada Lovelace_501_assignsubmission_file_" / "scratch.ipynb")
    _touch(tmp_path / "Alan Turing_502_assignsubmission_onlinetext_" / "onlinetext.html")
    found = collect(tmp_path, LAB)
    assert list(found.submissions) == ["Ada_Lovelace"]
    ada = found.submissions["Ada_Lovelace"]
    assert (ada.lms_id, ada.name, ada.notebook.name) == ("501", "Ada Lovelace", f"{LAB}.ipynb")
    unused = dict(found.unused)
    assert "another notebook" in unused["Ada Lovelace_501_assignsubmission_file_/scratch.ipynb"]
    assert "onlinetext" in unused["Alan Turing_502_assignsubmission_onlinetext_/onlinetext.html"]


def test_plain_folders_still_work_and_mix_with_canvas_files(canvas):
    _touch(canvas / "zoe" / "submitted" / "zoe" / LAB / f"{LAB}.ipynb")
    (canvas / "yan").mkdir()
    found = collect(canvas, LAB)
    assert found.submissions["zoe"].notebook.name == f"{LAB}.ipynb" and found.submissions["zoe"].lms_id == ""
    assert found.submissions["yan"].notebook is None


def test_two_students_of_the_same_name_get_distinct_rows(tmp_path):
    _touch(tmp_path / f"smithjo_11_1_{LAB}.ipynb")
    _touch(tmp_path / f"smithjo_22_2_{LAB}.ipynb")
    assert sorted(collect(tmp_path, LAB).submissions) == ["smithjo", "smithjo_22"]


def test_a_zip_of_a_canvas_download_is_read_like_the_folder(canvas, tmp_path):
    archive = tmp_path / "submissions.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in canvas.iterdir():
            z.write(p, p.name)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert list(collect(unpack(archive, scratch), LAB).submissions) == ["studenta", "studentb", "studentc"]


def _results():
    maxima = {"test_a": 2.0, "test_b": 3.0}
    return [Result("ann", "graded", {"test_a": 2.0, "test_b": 3.0}, maxima, lms_id="11", name="Ann A"),
            Result("bob", "graded", {"test_a": 1.0, "test_b": 0.0}, maxima, late=True, lms_id="22", name="bob"),
            Result("cy", "graded; flagged for review: x; scored 0 pending review: test_b (total before review 5)",
                   {"test_a": 2.0, "test_b": 0.0}, maxima),
            Result("dee", f"no {LAB}.ipynb found", {"test_a": 0.0, "test_b": 0.0}, maxima)], maxima


def test_class_statistics_count_only_students_who_handed_in_a_notebook():
    results, maxima = _results()
    rows = {r["grade_id"]: r for r in exercise_statistics(results, maxima)}
    assert rows["test_a"] == {"grade_id": "test_a", "points": "2", "students": "3", "mean": "1.67", "full_marks": "67%"}
    assert rows["test_b"]["mean"] == "1.00" and rows["test_b"]["full_marks"] == "33%"


def _grades(tmp_path) -> Path:
    results, maxima = _results()
    write_csv(results, list(maxima), tmp_path / "grades.csv")
    return tmp_path


def test_grades_csv_has_the_lms_columns_and_the_late_mark(tmp_path):
    rows = {r["student"]: r for r in csv.DictReader(open(_grades(tmp_path) / "grades.csv"))}
    assert rows["bob"]["late"] == "late" and rows["ann"]["late"] == ""
    assert rows["ann"]["lms_id"] == "11" and rows["ann"]["name"] == "Ann A"


def test_canvas_export_matches_on_the_user_id_with_a_points_possible_row(tmp_path):
    path, warnings = export.export(_grades(tmp_path), "canvas", "Lab 00 (4242)")
    table = list(csv.reader(open(path)))
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 00 (4242)"]
    assert table[1][0] == "Points Possible" and table[1][-1] == "5"
    assert ["Ann A", "11", "", "", "", "5"] in table and ["bob", "22", "", "", "", "1"] in table
    assert any("no LMS id" in w and "cy" in w for w in warnings)
    assert any("pending review" in w and "cy" in w for w in warnings)
    assert any("late" in w and "bob" in w for w in warnings)


def test_moodle_export_is_the_grading_worksheet_keyed_by_participant(tmp_path):
    path, _ = export.export(_grades(tmp_path), "moodle")
    table = list(csv.reader(open(path)))
    assert table[0] == ["Identifier", "Full name", "Grade", "Maximum grade"]
    assert ["Participant 11", "Ann A", "5", "5"] in table


def test_refresh_rewrites_an_existing_export_with_its_assignment_column(tmp_path):
    out = _grades(tmp_path)
    export.export(out, "canvas", "Lab 00 (4242)")
    rows = list(csv.DictReader(open(out / "grades.csv")))
    rows[1]["total"] = "4"
    with open(out / "grades.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    assert export.refresh(out) == [out / "canvas.csv"]
    table = list(csv.reader(open(out / "canvas.csv")))
    assert table[0][-1] == "Lab 00 (4242)" and ["bob", "22", "", "", "", "4"] in table


@pytest.mark.parametrize("code", [
    "torch.backends.cudnn.deterministic = True",
    "torch.backends.cudnn.benchmark = False",
    "torch.backends.cuda.matmul.allow_tf32 = True",
    "torch.set_num_threads(1)\ntorch.use_deterministic_algorithms(True)\ntorch.set_printoptions(precision=3)",
    "os.environ['TOKENIZERS_PARALLELISM'] = 'false'",
    "plt.rcParams['figure.figsize'] = (6, 4)\nplt.rcParams.update({'font.size': 9})",
    "%env PTLAB_FAST=1",
])
def test_the_scan_allows_settings_honest_notebooks_write(code):
    assert scan.scan_source(code) == []


@pytest.mark.parametrize("code", [
    "checks.assert_close = lambda *a, **k: None",
    "torch.testing.assert_close = print",
    "torch.allclose = lambda *a, **k: True",
    "torch.backends.cudnn.__dict__['x'] = 1",
    "os.environ[name] = value",
    "import inspect",
])
def test_the_scan_still_flags_tampering(code):
    assert scan.scan_source(code) != []


def test_a_canvas_notebook_named_after_the_lab_wins_over_another_upload(tmp_path):
    _touch(tmp_path / f"ann_11_100_{LAB}.ipynb")
    _touch(tmp_path / "ann_11_101_scratch.ipynb")
    found = collect(tmp_path, LAB)
    assert found.submissions["ann"].notebook.name == f"ann_11_100_{LAB}.ipynb"
    assert "another upload of ann" in dict(found.unused)["ann_11_101_scratch.ipynb"]
