"""Autograde a whole class, in parallel, one private nbgrader course per student.

    python -m autograder.grade_class SUBMISSIONS LAB [--workers N] [--out DIR]

SUBMISSIONS is a folder (or a .zip of one) with one sub-folder per student, each holding the student's
`LAB.ipynb` (anywhere below it; nbgrader's `submitted/STUDENT/LAB/LAB.ipynb` layout works too).
Writes `DIR/grades.csv` (one row per student, one column per graded cell, totals, status) and
`DIR/feedback/STUDENT.html` (per-cell results, hidden tests removed).

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
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from autograder import LABS, ROOT, SOLUTIONS, integrity, lab_names, sandbox, scan
from autograder.preprocessors import course_settings, reset_settings
from autograder.release import config_env, nbgrader


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

    @property
    def total(self) -> float:
        return sum(self.scores.values())

    @property
    def max_total(self) -> float:
        return sum(self.max_scores.values())


def safe_id(name: str) -> str:
    """A student id nbgrader and file systems accept: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip("._") or "student"


def collect(submissions: Path, lab: str, scratch: Path) -> dict[str, Path | None]:
    """Map student id -> their notebook (None when the folder holds none) from a folder or zip."""
    if submissions.suffix == ".zip":
        unpacked = scratch / "unzipped"
        with zipfile.ZipFile(submissions) as archive:
            archive.extractall(unpacked)
        entries = [p for p in unpacked.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        submissions = entries[0] if len(entries) == 1 and entries[0].is_dir() and not list(entries[0].glob("*.ipynb")) else unpacked
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS should be a folder or a .zip of one, got {submissions}")
    found: dict[str, Path | None] = {}
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        notebooks = [p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts]
        named = [p for p in notebooks if p.stem == lab]
        found[safe_id(folder.name)] = (named or notebooks or [None])[0]
    return found


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


def withheld_tests(findings: list[scan.Finding], nb, tests: list[str]) -> list[str]:
    """Test cells whose points wait for a TA: for each flagged cell, the tests of the next exercise."""
    from autograder.integrity import grade_id

    held: list[str] = []
    for index in sorted({f.index for f in findings}):
        collected: list[str] = []
        for cell in nb.cells[index:]:
            gid = grade_id(cell)
            if gid in tests:
                collected.append(gid)
            elif collected and cell.metadata.get("nbgrader", {}).get("solution"):
                break
        held += [g for g in collected if g not in held]
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


def _review(path: Path, source, submitted, tests, findings, tokens) -> tuple[list[str], list[str]]:
    """After autograding: read the integrity verdicts, strip the checks and any quoted hidden-test line
    from the autograded notebook (the feedback is made from it); return (flags, cells scored 0)."""
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
    zeroed = list(broken) + [g for g in withheld_tests(findings, submitted, tests) if g not in broken]
    return flags, zeroed


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
    withheld = {}
    if flags:
        graded = read_grades(db, lab, student)
        withheld = {gid: graded[0].get(gid, 0.0) for gid in zeroed} if graded else {}
        _set_scores(db, lab, student, zeroed)
    (root / "result.json").write_text(json.dumps({"flags": flags, "zeroed": zeroed, "withheld": withheld}))
    return _run_app(GenerateFeedbackApp, [lab, "--student", student, "--force", *course])


def worker_env(cell_timeout: int, threads: int) -> dict[str, str]:
    """The environment of a grading process (nbgrader config, cell timeout, threads, this autograder)."""
    env = {**os.environ, **config_env(ROOT), "PTLAB_CELL_TIMEOUT": str(cell_timeout), "PYTHONUNBUFFERED": "1",
           "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(threads)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def grade_one(student: str, notebook: Path | None, lab: str, master_db: Path, scratch: Path,
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
        review = json.loads((root / "result.json").read_text()) if (root / "result.json").exists() else None
        if code is None:
            status = f"timed out after {timeout:.0f} s"
        elif grades is None or review is None:
            reason = "the kernel died (crash, os.kill or out of memory)" if _kernel_died(log) else f"grader exited {code}"
            status = f"not graded: {reason}"
        else:
            status = "graded"
        if status != "graded" or grades is None or review is None:
            return Result(student, status, zero, dict(max_scores), time.perf_counter() - start)
        scores, maxima = grades
        if review["flags"]:
            before = sum(scores.values()) + sum(review.get("withheld", {}).values())
            status = (f"graded; flagged for review: {' | '.join(review['flags'])}; scored 0 pending review: "
                      f"{', '.join(review['zeroed']) or 'nothing'} (total before review {before:g})")
        errors = _errors_outside_tests(root / "autograded" / student / lab / f"{lab}.ipynb")
        html = root / "feedback" / student / lab / f"{lab}.html"
        feedback = html if code == 0 and html.exists() else None
        return Result(student, status, scores, maxima, time.perf_counter() - start, feedback, errors)
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
    """grades.csv: student, one column per graded cell, total, max_total, status, seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *columns, "total", "max_total", "status", "seconds"])
        for r in sorted(results, key=lambda r: r.student):
            writer.writerow([r.student, *(f"{r.scores.get(c, 0.0):g}" for c in columns),
                             f"{r.total:g}", f"{r.max_total:g}", r.status, f"{r.seconds:.1f}"])


def grade_class(submissions: Path, lab: str, out: Path, workers: int | None = None, cell_timeout: int = 180,
                timeout: float = 1800, mem_gib: float | None = None, keep: bool = False,
                unsafe: bool = False) -> list[Result]:
    """Grade every student in `submissions`; write `out/grades.csv` and `out/feedback/`; return results.

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
        found = collect(Path(submissions), lab, scratch)
        if not found:
            raise SystemExit(f"no student folders in {submissions}")
        master_db = prepare_gradebook(lab, scratch)
        max_scores = source_max_scores(lab)
        start = time.perf_counter()
        local, started = threading.local(), []  # one long-lived grading process per worker thread

        def grade(item: tuple[int, tuple[str, Path | None]]) -> Result:
            if not hasattr(local, "worker"):
                local.worker = Worker(int(mem_gib * 2**30), worker_env(cell_timeout, threads))
                started.append(local.worker)
            index, (student, notebook) = item
            return grade_one(student, notebook, lab, master_db, scratch, cell_timeout, timeout,
                             int(mem_gib * 2**30), max_scores, threads, not unsafe, index, local.worker)

        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(grade, enumerate(found.items())))
        finally:
            for worker in started:
                worker.close()
        elapsed = time.perf_counter() - start
        out = Path(out)
        write_csv(results, list(max_scores), out / "grades.csv")
        (out / "feedback").mkdir(parents=True, exist_ok=True)
        for r in results:
            if r.feedback is not None:
                shutil.copy(r.feedback, out / "feedback" / f"{r.student}.html")
                r.feedback = out / "feedback" / f"{r.student}.html"
        print(f"graded {len(results)} submissions of {lab} in {elapsed:.1f} s with {workers} worker(s): "
              f"{60 * len(results) / elapsed:.2f} submissions/min; grades in {out / 'grades.csv'}")
        return results
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # internal: the grading process of one worker thread
        return serve()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path, help="folder (or .zip) with one sub-folder per student")
    parser.add_argument("lab", help=f"lab name, one of {lab_names()}")
    parser.add_argument("--out", type=Path, default=Path("grades"), help="output folder (default: grades/)")
    parser.add_argument("--workers", type=int, default=None, help="parallel students (default: CPU cores)")
    parser.add_argument("--cell-timeout", type=int, default=180, help="seconds one cell may run (default 180)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one student may take (default 1800)")
    parser.add_argument("--mem-gib", type=float, default=None, help="memory cap per student (default: RAM*0.8/workers)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders (logs) for debugging")
    parser.add_argument("--unsafe", action="store_true",
                        help="grade without the sandbox when bubblewrap is missing (trusted submissions only)")
    args = parser.parse_args(argv)
    results = grade_class(args.submissions, args.lab, args.out, args.workers, args.cell_timeout, args.timeout,
                          args.mem_gib, args.keep, args.unsafe)
    for r in sorted(results, key=lambda r: r.student):
        print(f"{r.student:<20} {r.total:6g} / {r.max_total:g}  {r.status}")


if __name__ == "__main__":
    main()
