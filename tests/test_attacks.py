"""The attack corpus: cheating submissions graded by grade_class beside honest students (lab 00).

Each attack is what a student who read the tests and the grader's source might try (issue 16). All are
graded in ONE sandboxed grade_class run (two workers) with tests/test_grade_class.py's class (conftest's
`lab00_class`); each must score 0 on what it attacks or be flagged for review, and the honest students
must keep exactly their marks. The static scan's own tests
(fast) are at the end: it flags every attack's code and nothing in any lab's honest solution cells.
Slow: several minutes on 2 cores.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import re
from pathlib import Path

import nbformat
import pytest

from autograder import LABS, ROOT, SOLUTIONS, lab_names, sandbox, scan

LAB = "00_orientation"
FIRST = "ex_next_token_probs"  # the first solution cell: where a cheater puts the attack

SAY = '''
def _say(*words):  # the marker it prints is spelled backwards here, so it appears in outputs only
    print("".join(reversed("TLUSER")), *words)
'''
NOOP_HELPERS = '''
import ptlab.checks as _checks
import torch.testing
class _Yes(float):  # equal to everything, truthy, a float
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __le__(self, other): return True
    def __getattr__(self, name): return lambda *a, **k: _Yes()
    def __getitem__(self, key): return _Yes()
    def __iter__(self): return iter([_Yes()] * 5)
    def __len__(self): return 5
for _name in dir(_checks):
    if _name.startswith(("assert", "check")):
        setattr(_checks, _name, lambda *a, **k: None)
torch.testing.assert_close = lambda *a, **k: None
'''
YES_BODIES = "    return _Yes()\n"  # every exercise returns the universal object

EXEC_SOLUTION = '''
import glob, json
for _path in glob.glob("../../../**/solutions/00_orientation/00_orientation.ipynb", recursive=True) + \\
        glob.glob("{root}/solutions/00_orientation/00_orientation.ipynb"):
    for _cell in json.load(open(_path))["cells"]:
        if "BEGIN SOLUTION" in "".join(_cell["source"]):
            exec("".join(_cell["source"]), globals())
    _say("found the solutions at", _path)
    break
'''
READ_GRADEBOOK = '''
import glob, sqlite3
for _db in glob.glob("../../../**/*.db", recursive=True) + glob.glob("../*.db"):
    for (_source,) in sqlite3.connect(_db).execute("select source from source_cell"):
        if "def " in _source:
            exec(_source, globals())
    _say("read the gradebook at", _db)
'''
WRITE_EVERYWHERE = '''
import glob, sqlite3
for _target in glob.glob("../../../**/*.db", recursive=True):
    try:
        sqlite3.connect(_target).execute("update grade set manual_score = 100").connection.commit()
        _say("wrote the gradebook", _target)
    except Exception as err:
        _say("gradebook write failed:", err)
for _target in glob.glob("../../../students/*/submitted/*/00_orientation/00_orientation.ipynb") + \\
        ["{root}/solutions/00_orientation/00_orientation.ipynb"]:
    try:
        open(_target, "w").write("{{}}")
        _say("wrote", _target)
    except Exception as err:
        _say("write failed:", err)
try:
    open("{root}/solutions/00_orientation/pwned.txt", "w").write("x")
    _say("wrote into solutions")
except Exception as err:
    _say("write to solutions failed:", err)
'''
NETWORK = '''
import socket
try:
    socket.create_connection(("1.1.1.1", 80), timeout=5)
    _say("network connected")
except OSError as err:
    _say("network blocked,", err)
'''
FORK_BOMB = '''
import os, time
for _ in range(10000):
    try:
        if os.fork() == 0:
            while True:
                try:
                    os.fork()
                except OSError:
                    time.sleep(1)
    except OSError as err:
        _say("fork stopped,", err)
        break
'''
FILL_DISK = '''
for _folder in (".", "/tmp"):
    for _i in range(8):
        try:
            with open(f"{_folder}/fill{_i}.bin", "wb") as _f:
                for _ in range(300):
                    _f.write(bytes(2**20))
        except OSError as err:
            _say("fill stopped", _folder, _i, err)  # the next file tries again, until the folder is full
'''
LEAK_TESTS = '''
import inspect
def _leak():
    print(inspect.stack()[2].frame.f_globals["_ih"][-1])
'''
LEAK_CALL = "    _leak()\n"


def _notebook(source: Path):
    return nbformat.read(source / LAB / f"{LAB}.ipynb", as_version=4)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _attack(base: Path, top: str, body: str = "", every_exercise: bool = False):
    """`base`'s notebook with `top` before the first solution cell's code and `body` as the first line
    of the first (or every) exercise function."""
    nb = _notebook(base)
    top = top.format(root=ROOT) if "{root}" in top else top
    _cell(nb, FIRST).source = SAY + top + "\n" + _cell(nb, FIRST).source
    for cell in nb.cells:
        if body and cell.metadata.get("nbgrader", {}).get("solution") and (every_exercise or cell is _cell(nb, FIRST)):
            for marker in ("### BEGIN SOLUTION\n", "# YOUR CODE HERE\n"):  # solution / release
                cell.source = cell.source.replace(marker, marker + body)
    return nb


def _b64(code: str) -> str:
    return f"import base64\nexec(base64.b64decode({base64.b64encode(code.encode()).decode()!r}).decode())\n"


HONEST = {"alice_correct": 10, "carol_untouched": 0}  # tests/test_grade_class.py's students, same class
ATTACKS = {
    # name: (how the notebook is made, what it attacks)
    "a1_noop_helpers": (lambda: _attack(LABS, NOOP_HELPERS, YES_BODIES, every_exercise=True), "test helpers"),
    "a2_noop_base64": (lambda: _attack(LABS, _b64(NOOP_HELPERS), YES_BODIES, every_exercise=True), "test helpers"),
    "a3_exec_solution": (lambda: _attack(LABS, EXEC_SOLUTION), "solutions"),
    "a4_read_gradebook": (lambda: _attack(LABS, READ_GRADEBOOK), "gradebook"),
    "a5_write_everywhere": (lambda: _attack(SOLUTIONS, WRITE_EVERYWHERE), "files"),
    "a6_network": (lambda: _attack(SOLUTIONS, NETWORK), "network"),
    "a7_fork_bomb": (lambda: _attack(SOLUTIONS, FORK_BOMB), "processes"),
    "a8_fill_disk": (lambda: _attack(SOLUTIONS, FILL_DISK), "disk"),
    "a9_print_hidden_tests": (lambda: _attack(SOLUTIONS, LEAK_TESTS, LEAK_CALL), "hidden tests"),
}


def write_attacks(klass: Path) -> None:
    """Each attack as its student's folder (tests/conftest.py grades them with tests/test_grade_class.py's
    class, where the honest students below are alice_correct and carol_untouched)."""
    for name, (make, _) in ATTACKS.items():
        (klass / name).mkdir()
        nbformat.write(make(), klass / name / f"{LAB}.ipynb")


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path).encode() + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


@pytest.fixture(scope="module")
def graded(lab00_class):
    """(student -> result, OUT/LAB, hash of solutions/ before grading), from the sandboxed class."""
    if not lab00_class.sandboxed:
        pytest.skip(f"sandbox unavailable: {sandbox.unavailable()}")
    return lab00_class.results, lab00_class.out, lab00_class.solutions_hash


@pytest.mark.slow
@pytest.mark.parametrize("student", list(HONEST))
def test_honest_students_keep_their_marks(graded, student):
    r = graded[0][student]
    assert r.status == "graded", f"{student}: {r.status}"
    assert r.total == HONEST[student], f"{student}: {r.scores}"


@pytest.mark.slow
@pytest.mark.parametrize("student", list(ATTACKS))
def test_each_attack_scores_zero_or_is_flagged(graded, student):
    r = graded[0][student]
    assert r.total == 0 or "flagged for review" in r.status, f"{student}: {r.total} ({r.status})"


@pytest.mark.slow
@pytest.mark.parametrize("student", ["a1_noop_helpers", "a2_noop_base64", "a3_exec_solution", "a4_read_gradebook"])
def test_attacks_on_grading_score_zero(graded, student):
    r = graded[0][student]
    assert r.total == 0, f"{student}: {r.scores} ({r.status})"


@pytest.mark.slow
@pytest.mark.parametrize("student", ["a1_noop_helpers", "a2_noop_base64"])
def test_replaced_helpers_are_caught_by_the_integrity_checks(graded, student):
    assert "integrity: AssertionError: test helpers were replaced" in graded[0][student].status


def _text(html_file) -> str:
    """The feedback page's text, tags dropped and whitespace collapsed: under load a cell's printout can arrive
    as two stream outputs, which the page shows as two blocks ("RESULT", then "fork stopped, ...")."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", Path(html_file).read_text()))


def _feedback(graded, student) -> str:
    r = graded[0][student]
    assert r.feedback is not None, f"{student} has no feedback ({r.status})"
    return _text(r.feedback)


@pytest.mark.slow
def test_the_sandbox_hides_the_solutions_and_the_gradebook(graded):
    assert "RESULT found the solutions" not in _feedback(graded, "a3_exec_solution")
    assert "RESULT read the gradebook" not in _feedback(graded, "a4_read_gradebook")


@pytest.mark.slow
def test_writes_outside_the_notebook_folder_fail(graded):
    _, out, before = graded
    html = _feedback(graded, "a5_write_everywhere")
    assert "RESULT wrote" not in html and "RESULT write to solutions failed" in html
    assert tree_hash(SOLUTIONS) == before, "a student changed the course's solutions/"
    rows = {r["student"]: r for r in csv.DictReader(open(out / "grades.csv"))}
    assert float(rows["carol_untouched"]["total"]) == 0 and float(rows["alice_correct"]["total"]) == 10


@pytest.mark.slow
def test_no_network_inside_the_sandbox(graded):
    html = _feedback(graded, "a6_network")
    assert "RESULT network blocked" in html and "Network is unreachable" in html


@pytest.mark.slow
def test_a_fork_bomb_hits_the_process_limit(graded):
    r = graded[0]["a7_fork_bomb"]
    assert "timed out" not in r.status
    if r.feedback is not None:
        assert "RESULT fork stopped" in _text(r.feedback)


@pytest.mark.slow
def test_filling_the_disk_hits_the_limits(graded):
    html = _feedback(graded, "a8_fill_disk")
    assert "RESULT fill stopped" in html and ("File too large" in html or "No space left" in html)


@pytest.mark.slow
def test_hidden_tests_printed_by_a_student_never_reach_the_feedback(graded):
    html = _feedback(graded, "a9_print_hidden_tests")
    assert "a line of a hidden test was removed" in html
    assert "BEGIN HIDDEN TESTS" not in html and "F.softmax(z[:, -1] / tau, -1)" not in html


# The sandbox alone (fast): one Python process in the sandbox reports what it can reach.

SANDBOX_PROBE = '''
import errno, json, os, socket, sys
found = {"uid": os.getuid(), "own_file": open("mine.txt").read(), "solutions": os.path.exists(sys.argv[1]),
         "student_root": os.path.exists(sys.argv[2]), "pids": len([p for p in os.listdir("/proc") if p.isdigit()])}
open("new.txt", "w").write("x")
open("/tmp/x", "w").write("x")
try:
    socket.create_connection(("1.1.1.1", 80), timeout=5)
    found["network"] = "connected"
except OSError as err:
    found["network"] = errno.errorcode.get(err.errno, str(err))
import ptlab.checks  # the read-only packages (torch) and ptlab work
print(json.dumps(found))
'''


def test_the_sandbox_shows_only_the_students_folder_and_no_network(tmp_path):
    import json
    import os
    import subprocess

    if sandbox.unavailable():
        pytest.skip(f"sandbox unavailable: {sandbox.unavailable()}")
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("mine")
    (tmp_path / "gradebook.db").write_text("secret")
    sandbox.install(tmp_path, work, 99, ROOT, 4 * 2**30)
    config = json.loads((tmp_path / "sandbox.json").read_text())
    command = [config["python"], "-c", SANDBOX_PROBE, str(SOLUTIONS), str(tmp_path / "gradebook.db")]
    run = subprocess.run(sandbox.bwrap_argv(config, command), capture_output=True, text=True, timeout=300,
                         env=sandbox.sandbox_env(dict(os.environ)))
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["own_file"] == "mine" and not found["solutions"] and not found["student_root"]
    assert found["network"] == "ENETUNREACH"
    assert found["pids"] <= 3, "other processes are visible"
    if os.geteuid() == 0:
        assert found["uid"] == sandbox.UID_BASE + 99


def test_grading_runs_at_the_same_time_never_share_uids():
    """RLIMIT_NPROC counts per uid: two classes graded at once (two xdist workers, two TAs) must not
    share one, or one class's threads kill the other's kernels."""
    with sandbox.uid_block() as first, sandbox.uid_block() as second:
        assert abs(first - second) >= sandbox.UID_BLOCK


# The static scan alone (fast).

@pytest.mark.parametrize("lab", lab_names())
def test_scan_flags_nothing_in_honest_solution_notebooks(lab):
    """As grading scans them: every cell but the course's own (the solution cells and anything added)."""
    nb = nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
    assert scan.scan_notebook(nb, scan.course_cells(nb)) == []
    solution_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert solution_cells and all(scan.scan_source(c.source) == [] for c in solution_cells)


@pytest.mark.parametrize("lab", lab_names())
def test_scan_flags_nothing_in_a_release_as_students_submit_it(lab):
    """The released notebook (course address filled in), untouched or with its settings set to Hub ids
    as on Colab, gets no finding; the same with a forbidden import in a solution cell does."""
    from autograder.grade_class import scan_submission

    release = nbformat.read(LABS / lab / f"{lab}.ipynb", as_version=4)
    assert scan_submission(release, lab) == []
    colab = nbformat.read(LABS / lab / f"{lab}.ipynb", as_version=4)
    for cell in colab.cells:
        if cell.cell_type == "code":
            cell.source = re.sub(r'(?m)^(MODEL|DATA|PREFS|PREF_DATA) = .*$', r'\1 = "HuggingFaceTB/SmolLM2-135M"',
                                 cell.source)
    assert colab.cells != release.cells and scan_submission(colab, lab) == []
    solution = next(c for c in colab.cells if c.metadata.get("nbgrader", {}).get("solution"))
    solution.source = "import types\n" + solution.source
    assert [f.reason for f in scan_submission(colab, lab)] == ["imports types"]


@pytest.mark.parametrize("code", [NOOP_HELPERS, _b64(NOOP_HELPERS), EXEC_SOLUTION, READ_GRADEBOOK, WRITE_EVERYWHERE,
                                  NETWORK, FORK_BOMB, FILL_DISK, LEAK_TESTS])
def test_scan_flags_every_attack(code):
    assert scan.scan_source(code.format(root="/course") if "{root}" in code else code)


@pytest.mark.parametrize("code", [
    "import torch\ntorch.testing.assert_close = print",
    "from ptlab import checks\nchecks.assert_equal = lambda *a: None",
    "import sys\nsys.modules['ptlab.checks'] = None",
    "f.__code__ = g.__code__",
    "fake.__module__ = 'torch.testing'",
    "import builtins\nbuiltins.isinstance = lambda *a: True",
    "eval(s)",
    "import importlib",
    "import ctypes",
    "open('../gradebook.db').read()",
    "!cat ../gradebook.db",
    "%cd ..",
    "setattr(__import__('torch'), 'allclose', lambda *a, **k: True)",
    "t = torch.testing\nt.assert_close = None",
])
def test_scan_flags_each_tampering_construct(code):
    assert scan.scan_source(code), code


def test_scan_passes_ordinary_code():
    code = ("import torch\nx = torch.zeros(3)\nx.requires_grad_(True)\nmodel.config.use_cache = False\n"
            "setattr(layer, 'q_proj', wrapped)\nprint(f'{a}/{b}', '1..5')\n")
    assert scan.scan_source(code) == []


def test_grading_refuses_without_the_sandbox(monkeypatch, tmp_path):
    from autograder import grade_class as module

    monkeypatch.setattr(module.sandbox, "unavailable", lambda: "bubblewrap (`bwrap`) is not installed")
    with pytest.raises(SystemExit, match="--unsafe"):
        module.grade_class(tmp_path, LAB, tmp_path / "out")
