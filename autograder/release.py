"""Generate the student release `labs/LAB/` from the source `solutions/LAB/` with nbgrader.

    python -m autograder.release            # every lab
    python -m autograder.release 05_lora    # one lab
    python -m autograder.release --out DIR  # write elsewhere (the tests compare DIR with labs/)

The gradebook nbgrader needs for this is a throwaway file: the release is a pure function of the source.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder import CONFIG, LABS, ROOT, lab_names


def config_env(root: Path) -> dict[str, str]:
    """Environment that makes nbgrader read `autograder/nbgrader_config.py` for the course at `root`."""
    return {"JUPYTER_CONFIG_PATH": str(CONFIG.parent), "PTLAB_COURSE_ROOT": str(root)}


def nbgrader(args: list[str], root: Path, db: Path, timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run an nbgrader command with the course config, course root `root` and gradebook `db`."""
    cmd = [sys.executable, "-m", "nbgrader", *args,
           f"--CourseDirectory.root={root}", f"--CourseDirectory.db_url=sqlite:///{db}"]
    env = {**os.environ, **config_env(root)}
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def generate(labs: list[str], out: Path = LABS, db: Path | None = None) -> None:
    """Write the release of each lab to `out/LAB/`; raise with nbgrader's log if it fails.

    nbgrader writes into `ROOT/labs`, so a release elsewhere runs in a scratch course root holding a
    copy of `solutions/`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = ROOT
        if Path(out).resolve() != LABS.resolve():
            root = Path(tmp) / "course"
            shutil.copytree(ROOT / "solutions", root / "solutions")
        db = db or Path(tmp) / "gradebook.db"
        for lab in labs:
            result = nbgrader(["generate_assignment", lab, "--force", "--create"], root, db)
            if result.returncode != 0:
                raise RuntimeError(f"nbgrader generate_assignment {lab} failed:\n{result.stdout}\n{result.stderr}")
            if root != ROOT:
                shutil.rmtree(Path(out) / lab, ignore_errors=True)
                shutil.copytree(root / "labs" / lab, Path(out) / lab)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", help=f"labs to release (default: all of {lab_names()})")
    parser.add_argument("--out", type=Path, default=LABS, help="release directory (default: labs/)")
    args = parser.parse_args(argv)
    labs = args.labs or lab_names()
    unknown = sorted(set(labs) - set(lab_names()))
    if unknown:
        parser.error(f"unknown lab(s) {unknown}; valid: {lab_names()}")
    generate(labs, args.out)
    for lab in labs:
        print(f"released {lab} -> {args.out / lab}")


if __name__ == "__main__":
    main()
