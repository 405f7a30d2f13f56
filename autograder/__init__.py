"""Instructor-only tools: nbgrader configuration, release, self-check and class grading.

Never shipped to students (not part of the `ptlab` package). Run from the repository root:
`python -m autograder.release`, `python -m autograder.selfcheck`, `python -m autograder.grade_class`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).resolve().parent / "nbgrader_config.py"
SOLUTIONS = ROOT / "solutions"
LABS = ROOT / "labs"


def lab_names() -> list[str]:
    """Every lab with a source notebook, in course order (`solutions/NN_topic/NN_topic.ipynb`)."""
    return sorted(p.parent.name for p in SOLUTIONS.glob("*/*.ipynb") if p.stem == p.parent.name)
