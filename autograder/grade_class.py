"""Autograde a whole class, in parallel, one private nbgrader course per student.

    python -m autograder.grade_class SUBMISSIONS LAB [--workers N] [--out OUT]

SUBMISSIONS is a folder (or a .zip of one): a sub-folder per student holding the student's `LAB.ipynb`
(anywhere below it; nbgrader's `submitted/STUDENT/LAB/LAB.ipynb` layout works too), a Canvas bulk
download (flat `name_USERID_SUBMISSIONID_file.ipynb` files, `_LATE_` marked late, the latest re-upload
graded) or a Moodle one (a folder per student, `Full Name_ID_assignsubmission_file_`), mixed freely;
autograder/submissions.py reads them. Every file not graded is printed with the reason.

Everything goes under `OUT/LAB/` (OUT defaults to `grades`), so labs never overwrite each other:
`grades.csv` (one row per student: name, LMS id, late, one column per graded cell, totals, status),
`exercises.csv` (per graded cell: mean points and share at full marks over the students who handed in a
notebook; also printed), `feedback/STUDENT.html` (per-cell results, hidden tests removed, withheld
points explained), `unused.csv` (the files not graded, and why) and, for each flagged student,
`review/STUDENT/` for `python -m autograder.review` (instructor-only: it holds hidden tests).
`python -m autograder.export OUT/LAB --lms canvas|moodle` writes the LMS gradebook file.

Isolation: every student is graded in a scratch course root with its own copy of the gradebook, in a
sandboxed kernel (autograder/sandbox.py; `--unsafe` grades without it where bubblewrap cannot run),
after a static scan (autograder/scan.py) and with integrity checks around every test cell
(autograder/integrity.py). Each worker thread drives one long-lived grading process (nbgrader imported
once) in its own process group, under a memory limit (RLIMIT_AS); a student who runs past the wall-clock
limit costs that process, which is killed and replaced.
A hang costs only that cell (nbgrader interrupts it after the per-cell timeout); a kernel that dies, a
memory blow-up or a grader crash costs only that student, who gets 0 with the reason in `status`;
edited or deleted test cells are restored from the gradebook before running.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from autograder import LABS, ROOT, SOLUTIONS, integrity, lab_names, review, sandbox, scan
from autograder.preprocessors import course_settings, reset_settings
from autograder.release import config_env, nbgrader
from autograder.submissions import Submission, collect, safe_id, unpack  # noqa: F401 - safe_id re-exported


@dataclass
class Result:
    """One student's outcome. `status` is "graded", or why the student scored 0 without grading."""

    student: str
    status: str
    scores: dict[str, float] = field(default_factory=dict)
    max_scores: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    feedback: Path | None = None
    errors: list[str] = field(default_factory=list)  # errors raised by ordinary (non-graded) cells
    late: bool = False  # the LMS marked the submission late
    lms_id: str = ""  # Canvas user id / Moodle participant id, for the LMS export
    name: str = ""  # the student's name as the download spells it
    review: dict | None = None  # review.json of a flagged student (autograder/review.py)

    @property
    def total(self) -> float:
        return sum(self.scores.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_scores.values())


def prepare_gradebook(lab: str, scratch: Path) -> Path:
    """Create the lab's gradebook once (cells, points, checksums and locked sources from the solution)."""
    root = scratch / "master"
    shutil.copytree(SOLUTIONS / lab, root / "solutions" / lab)
    db = scratch / "master.db"
    result = nbgrader(["generate_assignment", lab, "--force", "--create"], root, db)
    if result.returncode != 0:
        raise RuntimeError(f"could not prepare the gradebook of {lab}:\n{result.stderr[-3000:]}")
    return db


def _limits(mem_bytes: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


class Worker:
    """A long-lived grading process (`python -m autograder.grade_class --worker`) in its own process
    group, under a memory cap: it imports nbgrader once and grades one student per job it reads.

    A job that runs past its time limit, or a process that dies, costs that student only: the process
    group is killed and the next job starts a fresh process.
    """

    def __init__(self, mem_bytes: int, env: dict[str, str]) -> None:
        self.mem_bytes, self.env = mem_bytes, env
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "autograder.grade_class", "--worker"]
        return subprocess.Popen(cmd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=_limits(self.mem_bytes))

    def run(self, job: Path, timeout: float) -> int | None:
        """The job's exit code (non-zero: nbgrader failed), or None when it ran past `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        self.proc.stdin.write(f"{job}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else None
        if not line:  # timed out, or the process died under this job
            self.close(kill=True)
            return None if not ready else -1
        return int(line)

    def close(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if not kill:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill = True
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


def serve() -> None:
    """The worker's loop: a job path per line on stdin, its exit code per line on stdout; everything
    else the job prints (nbgrader's log, the kernel's stderr) goes to `JOB/../autograde.log`."""
    import json

    answer = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        job = Path(line.strip())
        log = os.open(job.parent / "autograde.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.environ.update(json.loads(job.read_text())["env"])
        try:
            code = run_job(job)
        except Exception:  # noqa: BLE001 - reported as this student's failure; the worker goes on
            import traceback

            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        answer.write(f"{code}\n")
        answer.flush()


def read_grades(db: Path, lab: str, student: str) -> tuple[dict[str, float], dict[str, float]] | None:
    """Scores and maxima per graded cell from a gradebook, or None if the student was not graded."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            nb = gb.find_submission_notebook(lab, lab, student)
        except MissingEntry:
            return None
        scores = {g.name: float(g.score or 0.0) for g in nb.grades}
        maxima = {g.name: float(g.max_score) for g in nb.grades}
    return scores, maxima


def _kernel_died(log: str) -> bool:
    return "DeadKernel" in log or "Kernel died" in log or "kernel died" in log


def _errors_outside_tests(path: Path) -> list[str]:
    import nbformat

    from ptlab.runner import errors_outside_tests

    return errors_outside_tests(nbformat.read(path, as_version=4)) if path.exists() else []


def withheld_tests(findings: list[scan.Finding], nb, tests: list[str]) -> dict[str, list[scan.Finding]]:
    """Test cells whose points wait for a TA: for each flagged cell, the tests of the next exercise;
    {grade_id: the findings that withhold it}, in notebook order."""
    from autograder.integrity import grade_id

    held: dict[str, list[scan.Finding]] = {}
    for index in sorted({f.index for f in findings}):
        collected: list[str] = []
        for cell in nb.cells[index:]:
            gid = grade_id(cell)
            if gid in tests:
                collected.append(gid)
            elif collected and cell.metadata.get("nbgrader", {}).get("solution"):
                break
        for gid in collected:
            held.setdefault(gid, []).extend(f for f in findings if f.index == index)
    return held


def _summary(items: list[str], limit: int = 3) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def _set_scores(db: Path, lab: str, student: str, zeroed: list[str]) -> None:
    """Record 0 for `zeroed` cells in the student's gradebook (so the feedback agrees with the CSV)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gb:
        for gid in zeroed:
            grade = gb.find_grade(gid, lab, lab, student)
            grade.manual_score = 0.0
        gb.db.commit()


def scan_submission(submitted, lab: str, source=None) -> list[scan.Finding]:
    """Static-scan findings of a submission (in place, its settings lines are reset to the course's, as
    the autograder will run it). The course's own cells are trusted in their source form and in their
    released form (the course address filled in), so an untouched release has no finding."""
    import nbformat

    source = source or nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
    release = nbformat.read(LABS / lab / f"{lab}.ipynb", as_version=4)
    reset_settings(submitted, course_settings(source))
    return scan.scan_notebook(submitted, scan.course_cells(source) | scan.course_cells(release))


def _prepare(notebook: Path, lab: str, target: Path):
    """Scan the submission, restore deleted test cells, add the integrity checks; write it to `target`."""
    import nbformat

    source = nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
    submitted = integrity.restore_tests(nbformat.read(notebook, as_version=4), source)
    tests = integrity.test_ids(source)
    findings = scan_submission(submitted, lab, source)
    prepared, tokens = integrity.inject(submitted, tests, integrity.used_names(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(prepared, target)
    return source, submitted, tests, findings, tokens


def _review(path: Path, source, submitted, tests, findings, tokens) -> tuple[list[str], dict[str, str]]:
    """After autograding: read the integrity verdicts, strip the checks and any quoted hidden-test line
    from the autograded notebook (the feedback is made from it); return (flags, {cell scored 0: why})."""
    import nbformat

    executed = nbformat.read(path, as_version=4)
    broken = integrity.verdicts(executed, tokens)
    integrity.remove_checks(executed)
    leaked = integrity.scrub_outputs(executed, integrity.hidden_lines(source))
    path.chmod(0o644)
    nbformat.write(executed, path)
    flags = []
    if findings:
        flags.append(f"static scan: {_summary([str(f) for f in findings])}")
    if broken:
        flags.append(f"integrity: {_summary(list(broken.values()), 2)}")
    if leaked:
        flags.append(f"{leaked} output(s) quoted hidden tests (removed from the feedback)")
    zeroed = {gid: f"the test helpers were changed around this cell ({why})" for gid, why in broken.items()}
    for gid, found in withheld_tests(findings, submitted, tests).items():
        zeroed.setdefault(gid, "the static scan flagged " + _summary([str(f) for f in found]))
    return flags, zeroed


def flagged_cells(submitted, findings: list[scan.Finding]) -> list[dict]:
    """The code of every flagged cell, with the flagged line numbers, for the reviewing TA."""
    lines: dict[int, set[int]] = {}
    for f in findings:
        lines.setdefault(f.index, set()).add(f.line)
    return [{"name": scan.cell_name(submitted.cells[i], i), "source": submitted.cells[i].source,
             "lines": sorted(lines[i])} for i in sorted(lines) if 0 <= i < len(submitted.cells)]


def _run_app(app_class, argv: list[str]) -> int:
    """Run an nbgrader app in this process; its exit code (nbgrader exits 1 when a notebook failed)."""
    try:
        app = app_class()
        app.initialize(argv)
        app.start()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


def run_job(job_path: Path) -> int:
    """One student, in a grading process (`Worker`): scan and prepare the
    notebook, autograde it, review the integrity checks, record withheld points, write the feedback.

    A single nbgrader import serves both autograde and feedback; `JOB/../result.json` gets the review.
    """
    import json

    from nbgrader.apps.autogradeapp import AutogradeApp
    from nbgrader.apps.generatefeedbackapp import GenerateFeedbackApp

    job = json.loads(Path(job_path).read_text())
    root, lab, student = Path(job["root"]), job["lab"], job["student"]
    db = root / "gradebook.db"
    course = [f"--CourseDirectory.root={root}", f"--CourseDirectory.db_url=sqlite:///{db}"]
    prepared = _prepare(Path(job["notebook"]), lab, root / "submitted" / student / lab / f"{lab}.ipynb")
    code = _run_app(AutogradeApp, [lab, "--student", student, "--force", *course, *job["extra_args"]])
    if code != 0:
        return code
    autograded = root / "autograded" / student / lab / f"{lab}.ipynb"
    flags, zeroed = _review(autograded, *prepared)
    state = None
    if flags:
        import nbformat

        scores, maxima = read_grades(db, lab, student) or ({}, {})
        state = {"student": student, "lab": lab, "flags": flags, "reasons": zeroed, "max": maxima,
                 "withheld": {gid: scores.get(gid, 0.0) for gid in zeroed},
                 "cells": flagged_cells(prepared[1], prepared[3]), "decisions": {}}
        _set_scores(db, lab, student, list(zeroed))
        nb = nbformat.read(autograded, as_version=4)
        review.annotate(nb, state)  # the feedback says which points wait for a TA, and why
        nbformat.write(nb, autograded)
    (root / "result.json").write_text(json.dumps({"flags": flags, "zeroed": list(zeroed), "state": state}))
    return _run_app(GenerateFeedbackApp, [lab, "--student", student, "--force", *course])


def worker_env(cell_timeout: int, threads: int) -> dict[str, str]:
    """The environment of a grading process (nbgrader config, cell timeout, threads, this autograder)."""
    env = {**os.environ, **config_env(ROOT), "PTLAB_CELL_TIMEOUT": str(cell_timeout), "PYTHONUNBUFFERED": "1",
           "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def grade_one(submission: Submission, lab: str, master_db: Path | None, scratch: Path,
              cell_timeout: int, timeout: float, mem_bytes: int, max_scores: dict[str, float],
              threads: int = 1, sandboxed: bool = True, index: int = 0, worker: Worker | None = None) -> Result:
    """Autograde one student (`grade_submission`) and carry over what the download says about them."""
    result = grade_submission(submission.student, submission.notebook, lab, master_db, scratch, cell_timeout,
                              timeout, mem_bytes, max_scores, threads, sandboxed, index, worker)
    result.late, result.lms_id, result.name = submission.late, submission.lms_id, submission.name
    return result


def grade_submission(student: str, notebook: Path | None, lab: str, master_db: Path | None, scratch: Path,
                     cell_timeout: int, timeout: float, mem_bytes: int, max_scores: dict[str, float],
                     threads: int = 1, sandboxed: bool = True, index: int = 0, worker: Worker | None = None) -> Result:
    """Autograde one student in a private course root, with `threads` CPU threads; never raises.

    The grading runs in `worker` (a fresh one if None): `run_job` in a separate process under a memory
    cap and the wall-clock limit `timeout`. With `sandboxed`, the kernel runs in
    autograder/sandbox.py's bubblewrap sandbox as uid 61000+index.
    """
    import json

    start = time.perf_counter()
    zero = dict.fromkeys(max_scores, 0.0)
    if notebook is None:
        return Result(student, f"no {lab}.ipynb found", zero, dict(max_scores))
    root = scratch / "students" / student
    own_worker = worker is None
    worker = worker or Worker(mem_bytes, worker_env(cell_timeout, threads))
    try:
        shutil.copytree(SOLUTIONS / lab, root / "solutions" / lab)
        db = root / "gradebook.db"
        shutil.copy(master_db, db)
        env = {"PTLAB_COURSE_ROOT": str(root), "JUPYTER_PATH": str(root / "jupyter"),
               "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
        job = {"root": str(root), "lab": lab, "student": student, "notebook": str(notebook), "extra_args": []}
        if sandboxed:  # the kernel gets a copy of the student's own notebook, without the checks
            work = root / "work"
            work.mkdir()
            shutil.copy(notebook, work / f"{lab}.ipynb")
            env.update(sandbox.install(root, work, index, ROOT, mem_bytes))
            job["extra_args"] = sandbox.nbgrader_args(root)
        (root / "job.json").write_text(json.dumps({**job, "env": env}))
        for _attempt in range(2):
            code = worker.run(root / "job.json", timeout)
            log = (root / "autograde.log").read_text() if (root / "autograde.log").exists() else ""
            grades = read_grades(db, lab, student)
            # Retry once when the grader itself failed to start a kernel (two kernels starting at the
            # same moment can race for a TCP port); never for a timeout or a kernel the student killed.
            if code in (0, None) or grades is not None or _kernel_died(log):
                break
        outcome = json.loads((root / "result.json").read_text()) if (root / "result.json").exists() else None
        if code is None:
            status = f"timed out after {timeout:.0f} s"
        elif grades is None or outcome is None:
            reason = "the kernel died (crash, os.kill or out of memory)" if _kernel_died(log) else f"grader exited {code}"
            status = f"not graded: {reason}"
        else:
            status = "graded"
        if status != "graded" or grades is None or outcome is None:
            return Result(student, status, zero, dict(max_scores), time.perf_counter() - start)
        scores, maxima = grades
        state = outcome.get("state")
        if outcome["flags"] and state:
            status = review.status_text(state, sum(scores.values()) + sum(state["withheld"].values()))
        errors = _errors_outside_tests(root / "autograded" / student / lab / f"{lab}.ipynb")
        html = root / "feedback" / student / lab / f"{lab}.html"
        feedback = html if code == 0 and html.exists() else None
        return Result(student, status, scores, maxima, time.perf_counter() - start, feedback, errors, review=state)
    except Exception as err:  # noqa: BLE001 - one student's failure must not stop the class
        return Result(student, f"not graded: {type(err).__name__}: {err}", zero, dict(max_scores),
                      time.perf_counter() - start)
    finally:
        if own_worker:
            worker.close()


def source_max_scores(lab: str) -> dict[str, float]:
    """Points per graded cell, in notebook order, read from the source notebook."""
    import nbformat

    nb = nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
            for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")}


def write_csv(results: list[Result], columns: list[str], path: Path) -> None:
    """grades.csv: student, name, lms_id, late, one column per graded cell, total, max_total, status, seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "name", "lms_id", "late", *columns, "total", "max_total", "status", "seconds"])
        for r in sorted(results, key=lambda r: r.student):
            writer.writerow([r.student, r.name, r.lms_id, "late" if r.late else "",
                             *(f"{r.scores.get(c, 0.0):g}" for c in columns),
                             f"{r.total:g}", f"{r.max_total:g}", r.status, f"{r.seconds:.1f}"])


def exercise_statistics(results: list[Result], max_scores: dict[str, float]) -> list[dict[str, str]]:
    """Per graded cell, over the students who handed in a notebook: mean points and share at full marks.

    Withheld points (pending review) count as 0, as in grades.csv.
    """
    handed_in = [r for r in results if not r.status.startswith("no ")]
    rows = []
    for gid, points in max_scores.items():
        scores = [r.scores.get(gid, 0.0) for r in handed_in]
        full = sum(s >= points for s in scores)
        rows.append({"grade_id": gid, "points": f"{points:g}", "students": str(len(scores)),
                     "mean": f"{sum(scores) / len(scores):.2f}" if scores else "",
                     "full_marks": f"{full / len(scores):.0%}" if scores else ""})
    return rows


def _write_rows(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(results: list[Result], max_scores: dict[str, float], unused: list[tuple[str, str]],
                  scratch: Path, lab: str, out: Path) -> None:
    """Everything under `out` (= OUT/LAB): grades, per-exercise statistics, unused files, feedback, review state."""
    write_csv(results, list(max_scores), out / "grades.csv")
    _write_rows(out / "exercises.csv", exercise_statistics(results, max_scores),
                ["grade_id", "points", "students", "mean", "full_marks"])
    _write_rows(out / "unused.csv", [{"file": f, "reason": why} for f, why in unused], ["file", "reason"])
    for folder in ("feedback", "review"):  # this lab's previous run, if any, is replaced as a whole
        shutil.rmtree(out / folder, ignore_errors=True)
    (out / "feedback").mkdir(parents=True)
    for r in results:
        if r.feedback is not None:
            shutil.copy(r.feedback, out / "feedback" / f"{r.student}.html")
            r.feedback = out / "feedback" / f"{r.student}.html"
        if r.review is not None:  # what autograder/review.py needs: the executed notebook and the gradebook
            kept, root = out / "review" / r.student, scratch / "students" / r.student
            shutil.copytree(root / "autograded" / r.student, kept / "autograded" / r.student)
            shutil.copy(root / "gradebook.db", kept / "gradebook.db")
            (kept / "review.json").write_text(json.dumps(r.review, indent=1))


def report(results: list[Result], max_scores: dict[str, float], unused: list[tuple[str, str]], out: Path) -> str:
    """What the TA reads at the end: one line per student, the per-exercise statistics, the unused files."""
    lines = [f"{'student':<24} {'total':>6}  late  status"]
    for r in sorted(results, key=lambda r: r.student):
        lines.append(f"{r.student:<24} {r.total:6g} / {r.max_total:g}  {'late' if r.late else '    '}  {r.status}")
    lines.append(f"\nper graded cell (students who handed in a notebook; also in {out / 'exercises.csv'}):")
    lines.append(f"  {'grade_id':<32} {'points':>6} {'mean':>6}  full marks")
    for row in exercise_statistics(results, max_scores):
        lines.append(f"  {row['grade_id']:<32} {row['points']:>6} {row['mean']:>6}  {row['full_marks']}")
    if unused:
        lines.append(f"\nnot graded ({len(unused)} file(s); also in {out / 'unused.csv'}):")
        lines += [f"  {name}: {why}" for name, why in unused]
    flagged = [r.student for r in results if r.review is not None]
    if flagged:
        lines.append(f"\nflagged for review ({len(flagged)}): {', '.join(flagged)}; read and decide with "
                     f"`python -m autograder.review {out} STUDENT [--approve | --reject]`")
    return "\n".join(lines)


def grade_class(submissions: Path, lab: str, out: Path = Path("grades"), workers: int | None = None,
                cell_timeout: int = 180, timeout: float = 1800, mem_gib: float | None = None, keep: bool = False,
                unsafe: bool = False, quiet: bool = False) -> list[Result]:
    """Grade every student in `submissions`; write `out/LAB/` (grades.csv, exercises.csv, unused.csv,
    feedback/, review/) and print the report (unless `quiet`); return the results.

    Kernels run sandboxed (autograder/sandbox.py); where the sandbox cannot run, this refuses to start
    unless `unsafe`, which runs student code with the grader's own rights.
    """
    if lab not in lab_names():
        raise SystemExit(f"unknown lab {lab!r}; valid: {lab_names()}")
    why = None if unsafe else sandbox.unavailable()
    if why:
        raise SystemExit(f"refusing to grade: the sandbox cannot run ({why}). Student code would run with "
                         "your rights and could read the solutions and the gradebook; pass --unsafe to "
                         "grade anyway (only for submissions you trust).")
    workers = workers or os.cpu_count() or 1
    total_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    mem_gib = mem_gib or max(4.0, min(16.0, 0.8 * total_gib / workers))
    # One kernel per worker: more threads than cores / workers only makes the kernels wait for each other.
    threads = max(1, (os.cpu_count() or 1) // workers)
    scratch = Path(tempfile.mkdtemp(prefix=f"grade_{lab}_"))
    try:
        found = collect(unpack(Path(submissions), scratch), lab)
        if not found.submissions:
            unused = "".join(f"\n  {name}: {why}" for name, why in found.unused)
            raise SystemExit(f"no student submissions in {submissions}{unused}")
        # The gradebook costs an nbgrader run: only when some student handed in a notebook.
        needed = any(s.notebook is not None for s in found.submissions.values())
        master_db = prepare_gradebook(lab, scratch) if needed else None
        max_scores = source_max_scores(lab)
        start = time.perf_counter()
        local, started = threading.local(), []  # one long-lived grading process per worker thread

        def grade(item: tuple[int, Submission]) -> Result:
            if not hasattr(local, "worker"):
                local.worker = Worker(int(mem_gib * 2**30), worker_env(cell_timeout, threads))
                started.append(local.worker)
            index, submission = item
            return grade_one(submission, lab, master_db, scratch, cell_timeout, timeout,
                             int(mem_gib * 2**30), max_scores, threads, not unsafe, index, local.worker)

        try:
            with sandbox.uid_block() as first, ThreadPoolExecutor(max_workers=workers) as pool:
                # uids first.. first+UID_BLOCK-1; students UID_BLOCK apart never run at the same time
                indexed = [(first + i % sandbox.UID_BLOCK, s) for i, s in enumerate(found.submissions.values())]
                results = list(pool.map(grade, indexed))
        finally:
            for worker in started:
                worker.close()
        elapsed = time.perf_counter() - start
        lab_out = Path(out) / lab
        write_outputs(results, max_scores, found.unused, scratch, lab, lab_out)
        if not quiet:
            print(report(results, max_scores, found.unused, lab_out))
            notebooks = sum(s.notebook is not None for s in found.submissions.values())
            rate = f": {60 * notebooks / elapsed:.2f} notebooks/min" if notebooks else ""
            print(f"\ngraded {notebooks} notebooks of {len(results)} students of {lab} in {elapsed:.1f} s with "
                  f"{workers} worker(s){rate}; grades in {lab_out / 'grades.csv'}")
        return results
    finally:
        if keep:
            print(f"kept the scratch folder (per student: students/STUDENT/autograded/, autograde.log): {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # internal: the grading process of one worker thread
        return serve()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path,
                        help="folder (or .zip): a sub-folder per student, or a Canvas or Moodle bulk download")
    parser.add_argument("lab", help=f"lab name, one of {lab_names()}")
    parser.add_argument("--out", type=Path, default=Path("grades"),
                        help="output folder; this lab's files go to OUT/LAB/ (default: grades/)")
    parser.add_argument("--workers", type=int, default=None, help="parallel students (default: CPU cores)")
    parser.add_argument("--cell-timeout", type=int, default=180, help="seconds one cell may run (default 180)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one student may take (default 1800)")
    parser.add_argument("--mem-gib", type=float, default=None, help="memory cap per student (default: RAM*0.8/workers)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders (logs) for debugging")
    parser.add_argument("--unsafe", action="store_true",
                        help="grade without the sandbox when bubblewrap is missing (trusted submissions only)")
    args = parser.parse_args(argv)
    grade_class(args.submissions, args.lab, args.out, args.workers, args.cell_timeout, args.timeout,
                args.mem_gib, args.keep, args.unsafe)


if __name__ == "__main__":
    main()
