"""Write the student repository: what students clone, and what Colab installs from.

    python -m autograder.publish DEST            # DEST must be empty or absent
    python -m autograder.publish DEST --force    # replace a previous publish (keeps DEST/.git)

This repository is the instructors' and stays private: it holds every solution and hidden test. The
student repository is published at the address in `autograder/course.toml`. It holds:

    README.md          the student README (set-up, how to work, how to submit): autograder/student/README.md
    LICENSE, constraints.txt
    pyproject.toml     this one, without the `dev` extra and the test/lint settings, and with the
                       JupyterLab configuration below as data files (installed into the environment)
    environment.yml    the required packages and the `lab` extra
    jupyter/           JupyterLab configuration for students: nbgrader's instructor tools (Formgrader,
                       Create Assignment) and its assignment list (which needs an exchange folder) off,
                       Validate on
    labs/              a fresh release of every lab (`autograder.release.generate`)
    utils/ptlab/       the package, without the instructor-only modules in INSTRUCTOR_ONLY

No `solutions/`, no `autograder/`, no `tests/`. `tests/test_publish.py` builds it and checks that no
line of a solution or hidden-test block of any lab occurs in any file of it, nor in the package it
installs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import nbformat

from autograder import ROOT, lab_names
from autograder.release import Course, generate, load_course, tomllib

STUDENT = Path(__file__).resolve().parent / "student"  # templates of the student-only files

# Package modules that stay with the instructors: the checkpoint builders train the course models
# with a language-model loss, a padding collator, chat masking and a reward-model loss, which are
# exercises of labs 02 and 03. The package never imports them.
INSTRUCTOR_ONLY = ("tinyworld/train.py", "tinyworld/evaluate.py")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")

# Where the student's JupyterLab configuration goes when the package is installed (sys.prefix).
DATA_FILES = {
    "etc/jupyter/jupyter_server_config.d": ["jupyter/jupyter_server_config.d/ptlab-student.json"],
    "etc/jupyter/labconfig": ["jupyter/labconfig/page_config.json"],
    "etc/jupyter": ["jupyter/nbgrader_config.py"],  # Validate's count of passed and failed cells
}


def lab_title(lab: str) -> str:
    """The first heading of a lab's released notebook, without the leading '#'."""
    nb = nbformat.read(ROOT / "labs" / lab / f"{lab}.ipynb", as_version=4)
    for cell in nb.cells:
        match = re.search(r"^#\s+(.+)$", cell.source, re.M) if cell.cell_type == "markdown" else None
        if match:
            return match.group(1).strip()
    return lab


def student_readme(course: Course, labs: list[str]) -> str:
    """The student README with the course address and one line per lab (and its Colab link)."""
    rows = ["| lab | open on Colab |", "| --- | --- |"]
    for lab in labs:
        url = f"https://colab.research.google.com/github/{course.repository}/blob/{course.branch}/labs/{lab}/{lab}.ipynb"
        rows.append(f"| `labs/{lab}/{lab}.ipynb`: {lab_title(lab)} | [open]({url}) |")
    text = course.fill((STUDENT / "README.md").read_text())
    text = text.replace("{{COURSE_REPOSITORY_NAME}}", course.repository.split("/")[1])
    return text.replace("{{LAB_LIST}}", "\n".join(rows))


def _sections(text: str) -> list[tuple[str, str]]:
    """A TOML file split into (table name, text) pieces; the part before the first table has name ''."""
    parts = re.split(r"(?m)^(?=\[)", text)
    return [(re.match(r"\[+([^\]]+)\]", p).group(1) if p.startswith("[") else "", p) for p in parts]


def student_pyproject(course: Course) -> str:
    """This pyproject.toml for students: no `dev` extra, no test/lint settings, JupyterLab config as data
    files, project URLs at the course address."""
    kept = []
    for name, text in _sections((ROOT / "pyproject.toml").read_text()):
        if name.startswith(("tool.pytest", "tool.ruff")):
            continue
        if name == "project.optional-dependencies":
            text = re.sub(r"(?ms)^(#[^\n]*\n)*dev = \[.*?^\]\n", "", text)
        if name == "project.urls":
            text = re.sub(r"https://github\.com/[\w.-]+/[\w.-]+", course.url, text)
        kept.append(text)
    files = "\n".join(f'"{where}" = {list(what)!r}'.replace("'", '"') for where, what in DATA_FILES.items())
    data = ("# The student JupyterLab configuration (jupyter/), installed into the environment's etc/jupyter.\n"
            f"[tool.setuptools.data-files]\n{files}\n")
    return "".join(kept).rstrip("\n") + "\n\n" + data


def student_environment() -> str:
    """environment.yml for students: the required packages and the `lab` extra, then the package."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python = re.search(r"python=([\d.]+)", (ROOT / "environment.yml").read_text()).group(1)
    pip = [*project["dependencies"], *project["optional-dependencies"]["lab"], "-e ."]
    return "\n".join([
        "# conda env create -f environment.yml && conda activate ptlab",
        "# The packages of pyproject.toml with its `lab` extra (JupyterLab and nbgrader's student tools).",
        "name: ptlab", "channels:", "  - conda-forge", "dependencies:", f"  - python={python}", "  - pip",
        "  - pip:", *(f"      - {req}" for req in pip)]) + "\n"


def clear(dest: Path, force: bool) -> None:
    """Make `dest` an empty folder (keeping `.git` with --force); refuse to overwrite without --force."""
    if dest.exists() and any(p.name != ".git" for p in dest.iterdir()):
        if not force:
            raise SystemExit(f"{dest} is not empty; use --force to replace its contents (its .git is kept)")
        for p in dest.iterdir():
            if p.name != ".git":
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    dest.mkdir(parents=True, exist_ok=True)


def publish(dest: Path, force: bool = False) -> list[Path]:
    """Write the student repository to `dest`; return its files, relative to `dest`, sorted."""
    course = load_course()
    labs = lab_names()
    dest = Path(dest).resolve()
    if dest == ROOT or ROOT in dest.parents:
        raise SystemExit(f"DEST should be outside this repository ({ROOT}), got {dest}")
    clear(dest, force)
    generate(labs, out=dest / "labs")
    shutil.copytree(ROOT / "utils" / "ptlab", dest / "utils" / "ptlab", ignore=SKIP)
    for module in INSTRUCTOR_ONLY:
        (dest / "utils" / "ptlab" / module).unlink()
    shutil.copytree(STUDENT / "jupyter", dest / "jupyter")
    shutil.copy(STUDENT / "gitignore", dest / ".gitignore")
    for name in ("LICENSE", "constraints.txt"):
        shutil.copy(ROOT / name, dest / name)
    (dest / "README.md").write_text(student_readme(course, labs))
    (dest / "pyproject.toml").write_text(student_pyproject(course))
    (dest / "environment.yml").write_text(student_environment())
    return sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file() and ".git" not in p.parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="folder of the student repository (outside this one)")
    parser.add_argument("--force", action="store_true", help="replace what DEST holds (keeps DEST/.git)")
    args = parser.parse_args(argv)
    files = publish(args.dest, args.force)
    print(f"wrote {len(files)} files to {args.dest} for {load_course().url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
