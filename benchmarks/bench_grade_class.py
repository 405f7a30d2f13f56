"""Class-grading throughput: plain nbgrader against grade_class without and with the sandbox.

    python benchmarks/bench_grade_class.py [--lab 00_orientation] [--students 6] [--workers 1 2]

The class is half solutions (every cell runs to the end) and half untouched releases (exercises fail
fast), a realistic mix. Measured in the same run, on the same class:
- plain: one nbgrader course holding every student, `nbgrader autograde LAB` then
  `nbgrader generate_feedback LAB` (no isolation, no sandbox, no checks): the baseline;
- grade_class --unsafe (private course per student, no sandbox) and grade_class (sandboxed, with the
  static scan and the integrity checks), with each number of workers.
Prints torch version, cores and commit beside the figures, and each run's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import commit  # noqa: E402

from autograder import LABS, SOLUTIONS  # noqa: E402
from autograder.grade_class import grade_class, prepare_gradebook  # noqa: E402
from autograder.release import nbgrader  # noqa: E402


def make_class(lab: str, n: int, folder: Path) -> None:
    for i in range(n):
        source = SOLUTIONS if i % 2 == 0 else LABS
        (folder / f"student{i:02d}").mkdir(parents=True)
        shutil.copy(source / lab / f"{lab}.ipynb", folder / f"student{i:02d}" / f"{lab}.ipynb")


def plain_nbgrader(lab: str, klass: Path, scratch: Path) -> float:
    """Seconds for `nbgrader autograde` + `generate_feedback` of the whole class in one course."""
    db = prepare_gradebook(lab, scratch)
    root = scratch / "master"
    for student in sorted(p.name for p in klass.iterdir()):
        target = root / "submitted" / student / lab
        target.mkdir(parents=True)
        shutil.copy(klass / student / f"{lab}.ipynb", target / f"{lab}.ipynb")
    start = time.perf_counter()
    for step in ("autograde", "generate_feedback"):
        result = nbgrader([step, lab, "--force"], root, db)
        if result.returncode != 0:
            raise RuntimeError(f"plain nbgrader {step} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="00_orientation")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, commit {commit()}, lab {args.lab}, "
          f"{args.students} students (half solutions, half untouched releases)")
    with tempfile.TemporaryDirectory() as tmp:
        klass = Path(tmp) / "class"
        make_class(args.lab, args.students, klass)
        base = plain_nbgrader(args.lab, klass, Path(tmp) / "plain")
        print(f"plain nbgrader autograde + generate_feedback: {base:.1f} s "
              f"({60 * args.students / base:.2f} submissions/min)")
        for unsafe in (True, False):
            for workers in args.workers:
                start = time.perf_counter()
                results = grade_class(klass, args.lab, Path(tmp) / f"out{workers}{unsafe}", workers=workers,
                                      unsafe=unsafe)
                elapsed = time.perf_counter() - start
                bad = [r.student for r in results if not r.status.startswith("graded")]
                mode = "no sandbox (--unsafe)" if unsafe else "sandboxed + scan + integrity checks"
                print(f"grade_class {mode}, workers={workers}: {elapsed:.1f} s = "
                      f"{60 * len(results) / elapsed:.2f} submissions/min, {elapsed / base:.2f}x the plain time"
                      + (f"  (not graded: {bad})" if bad else ""))


if __name__ == "__main__":
    main()
