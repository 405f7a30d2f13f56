"""Class-grading throughput: submissions per minute with 1 and 2 workers (and more if asked).

    python benchmarks/bench_grade_class.py [--lab 00_orientation] [--students 6] [--workers 1 2]

The class is half solutions (every cell runs to the end) and half untouched releases (exercises fail
fast), a realistic mix. Prints torch version, cores and commit beside the figures.
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
from autograder.grade_class import grade_class  # noqa: E402


def make_class(lab: str, n: int, folder: Path) -> None:
    for i in range(n):
        source = SOLUTIONS if i % 2 == 0 else LABS
        (folder / f"student{i:02d}").mkdir(parents=True)
        shutil.copy(source / lab / f"{lab}.ipynb", folder / f"student{i:02d}" / f"{lab}.ipynb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="00_orientation")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, commit {commit()}, lab {args.lab}, {args.students} students")
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        klass = Path(tmp) / "class"
        make_class(args.lab, args.students, klass)
        for workers in args.workers:
            start = time.perf_counter()
            results = grade_class(klass, args.lab, Path(tmp) / f"out{workers}", workers=workers)
            elapsed = time.perf_counter() - start
            rates[workers] = 60 * len(results) / elapsed
            bad = [r.student for r in results if r.status != "graded"]
            print(f"workers={workers}: {elapsed:.1f} s for {len(results)} submissions = {rates[workers]:.2f} submissions/min"
                  + (f"  (not graded: {bad})" if bad else ""))
    base = rates[args.workers[0]]
    for workers, rate in rates.items():
        print(f"  speed-up with {workers} worker(s): {rate / base:.2f}x")


if __name__ == "__main__":
    main()
