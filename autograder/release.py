"""Generate the student release `labs/LAB/` from the source `solutions/LAB/` with nbgrader.

    python -m autograder.release            # every lab
    python -m autograder.release 05_lora    # one lab
    python -m autograder.release --out DIR  # write elsewhere (the tests compare DIR with labs/)
    python -m autograder.release --convert-sources [LAB ...]   # see below, then release

The gradebook nbgrader needs for this is a throwaway file: the release is a pure function of the source.

The course's address is one setting, `autograder/course.toml` (GitHub owner/name and branch of the
student repository). Source notebooks carry the placeholders `{{COURSE_REPOSITORY}}` and
`{{COURSE_BRANCH}}` in the Colab badge and the set-up cell's install line; the release writes the
configured address in their place (`autograder.preprocessors.DeliverCourse`, which also adds the
standard "how to work in this notebook" cell under the title). `--convert-sources` turns a source
notebook written the old way (an address typed into the badge and the install line) into the
placeholder form, and unlocks the set-up cell that holds `MODEL` (students change it there); it is
idempotent, so it is safe to run on every lab.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder import CONFIG, LABS, ROOT, SOLUTIONS, lab_names

try:
    import tomllib  # Python 3.11+
except ImportError:  # Python 3.10
    import tomli as tomllib

COURSE_FILE = Path(__file__).resolve().parent / "course.toml"
REPOSITORY, BRANCH = "{{COURSE_REPOSITORY}}", "{{COURSE_BRANCH}}"  # placeholders in solutions/


@dataclass(frozen=True)
class Course:
    """Where the student repository is published: GitHub `owner/name` and the branch students use."""

    repository: str
    branch: str

    @property
    def url(self) -> str:
        return f"https://github.com/{self.repository}"

    def fill(self, text: str) -> str:
        """`text` with the address placeholders replaced by this course's address."""
        return text.replace(REPOSITORY, self.repository).replace(BRANCH, self.branch)


def load_course(path: Path = COURSE_FILE) -> Course:
    """The course address from `autograder/course.toml`; a clear error when it is malformed."""
    with open(path, "rb") as f:
        table = tomllib.load(f).get("course", {})
    repository, branch = str(table.get("repository", "")), str(table.get("branch", ""))
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise ValueError(f"{path}: [course] repository should be a GitHub 'owner/name', got {repository!r}")
    if not re.fullmatch(r"[\w./-]+", branch):
        raise ValueError(f"{path}: [course] branch should be a branch name such as 'main', got {branch!r}")
    return Course(repository, branch)


# A typed-in address in the old form of the badge and of the install line (never a placeholder: no braces).
_BADGE = re.compile(r"(https://colab\.research\.google\.com/github/)[^/{}\s]+/[^/{}\s]+/blob/[^/{}\s]+/")
_INSTALL = re.compile(r"git\+https://github\.com/[^/{}\s\"'@]+/[^/{}\s\"'@]+?(?:\.git)?(?:@[^{}\s\"']+)?(?=[\"'\s])")
_MODEL_LINE = re.compile(r"^MODEL\s*=", re.M)


def convert_source(nb: nbformat.NotebookNode) -> bool:
    """Put the address placeholders into `nb`'s badge and install line, and unlock its MODEL cell.

    Returns whether anything changed (a second call never changes anything).
    """
    changed = False
    for cell in nb.cells:
        source = _BADGE.sub(rf"\g<1>{REPOSITORY}/blob/{BRANCH}/", cell.source)
        source = _INSTALL.sub(f"git+https://github.com/{REPOSITORY}@{BRANCH}", source)
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and _MODEL_LINE.search(source) and meta.get("locked") \
                and not meta.get("grade") and not meta.get("solution"):
            del cell.metadata["nbgrader"]  # an ordinary cell: students set MODEL here
            changed = True
        if source != cell.source:
            cell.source, changed = source, True
    return changed


def convert_sources(labs: list[str]) -> list[str]:
    """Convert `solutions/LAB/LAB.ipynb` of each lab in place; return the labs that changed."""
    changed = []
    for lab in labs:
        path = SOLUTIONS / lab / f"{lab}.ipynb"
        nb = nbformat.read(path, as_version=4)
        if convert_source(nb):
            nbformat.write(nb, path)
            changed.append(lab)
    return changed


def config_env(root: Path) -> dict[str, str]:
    """Environment for an nbgrader process: the course config, course root `root`, and this Python's
    scripts folder first on PATH (nbgrader runs `alembic` by name, so a virtualenv's python works
    without activating the virtualenv)."""
    scripts = str(Path(sys.executable).parent)
    return {"JUPYTER_CONFIG_PATH": str(CONFIG.parent), "PTLAB_COURSE_ROOT": str(root),
            "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}


def nbgrader(args: list[str], root: Path, db: Path, timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run an nbgrader command with the course config, course root `root` and gradebook `db`."""
    cmd = [sys.executable, "-m", "nbgrader", *args,
           f"--CourseDirectory.root={root}", f"--CourseDirectory.db_url=sqlite:///{db}"]
    env = {**os.environ, **config_env(root)}
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def generate(labs: list[str], out: Path = LABS, db: Path | None = None) -> None:
    """Write the release of each lab to `out/LAB/`; raise with nbgrader's log if it fails.

    nbgrader writes into `ROOT/labs`, so a release elsewhere runs in a scratch course root holding a
    copy of those labs' `solutions/` folders. nbgrader's start-up is most of a release's time, so one
    process releases every lab of its course root (assignment id '*') where that is what is asked.
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = ROOT
        if Path(out).resolve() != LABS.resolve():
            root = Path(tmp) / "course"
            for lab in labs:
                shutil.copytree(ROOT / "solutions" / lab, root / "solutions" / lab)
        db = db or Path(tmp) / "gradebook.db"
        everything = root != ROOT or set(labs) == set(lab_names())
        for assignment in ["*"] if everything else labs:
            result = nbgrader(["generate_assignment", assignment, "--force", "--create"], root, db)
            if result.returncode != 0:
                raise RuntimeError(f"nbgrader generate_assignment {assignment} failed:\n{result.stdout}\n{result.stderr}")
        if root != ROOT:
            for lab in labs:
                shutil.rmtree(Path(out) / lab, ignore_errors=True)
                shutil.copytree(root / "labs" / lab, Path(out) / lab)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labs", nargs="*", help=f"labs to release (default: all of {lab_names()})")
    parser.add_argument("--out", type=Path, default=LABS, help="release directory (default: labs/)")
    parser.add_argument("--convert-sources", action="store_true",
                        help="first put the address placeholders into solutions/LAB (old hard-coded form)")
    args = parser.parse_args(argv)
    labs = args.labs or lab_names()
    unknown = sorted(set(labs) - set(lab_names()))
    if unknown:
        parser.error(f"unknown lab(s) {unknown}; valid: {lab_names()}")
    if args.convert_sources:
        for lab in convert_sources(labs):
            print(f"converted solutions/{lab}/{lab}.ipynb to the course-address placeholders")
    load_course()  # fail before nbgrader does when course.toml is malformed
    generate(labs, args.out)
    for lab in labs:
        print(f"released {lab} -> {args.out / lab}")


if __name__ == "__main__":
    main()
