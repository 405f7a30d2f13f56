"""Execute a lab notebook headless and report each graded test cell, as nbgrader would score it.

Used by `ptlab run LAB` and by the test suite. A test cell passes when it raised nothing and wrote
nothing to stderr (nbgrader's own rule), which is why the report lists stderr as a failure too.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass
class CellResult:
    """One graded cell: its grade_id, points, outcome ("pass", "fail", "stderr") and a one-line reason."""

    grade_id: str
    points: float
    outcome: str
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"


def find_notebook(lab: str, solutions: bool = False, root: Path | None = None) -> Path:
    """Path of `labs/LAB/LAB.ipynb` (or `solutions/...`) below `root` (default: the current folder).

    `lab` may also be a path to a notebook. A prefix is enough when it is unique ("05" -> "05_lora").
    """
    if lab.endswith(".ipynb"):
        return Path(lab)
    base = Path(root or Path.cwd()) / ("solutions" if solutions else "labs")
    if not base.is_dir():
        raise FileNotFoundError(f"no {base.name}/ folder in {base.parent}; run from the course repository root")
    matches = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(lab))
    exact = [p for p in matches if p.name == lab]
    matches = exact or matches
    if len(matches) != 1:
        names = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise FileNotFoundError(f"lab {lab!r} should name exactly one of {names}, matched {len(matches)}")
    return matches[0] / f"{matches[0].name}.ipynb"


# The set-up cell's model line: `MODEL = "tiny-base"  # comment`, unindented, a single string literal.
MODEL_LINE = re.compile(r"""^MODEL\s*=\s*(["'])[^"'\n]*\1""", re.MULTILINE)


def set_model(nb: nbformat.NotebookNode, model: str) -> nbformat.NotebookNode:
    """Rewrite the notebook's one `MODEL = "..."` line so that it names `model` (in place; also returned).

    Matches a code-cell line that starts with `MODEL =` followed by one quoted string (what every set-up
    cell has, see docs/AUTHORING.md); the string is replaced and the rest of the line (its comment) kept.
    Raises ValueError when no line matches, or when more than one does (which one would the lab read?).
    """
    hits = [(i, m) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for m in MODEL_LINE.finditer(cell.source)]
    if len(hits) != 1:
        where = ", ".join(f"cell {i}" for i, _ in hits) or "no cell"
        raise ValueError(f"--model needs exactly one unindented line `MODEL = \"...\"` in a code cell (the "
                         f"set-up cell's), found {len(hits)} ({where})")
    i, match = hits[0]
    cell = nb.cells[i]
    cell.source = cell.source[: match.start()] + f"MODEL = {model!r}" + cell.source[match.end():]
    return nb


def execute(path: Path, fast: bool = True, timeout: int = 600, grading: bool = False,
            model: str | None = None) -> nbformat.NotebookNode:
    """Run every cell of the notebook at `path` in its own folder; errors are recorded, not raised.

    `fast` sets PTLAB_FAST=1; `grading` also sets NBGRADER_EXECUTION as the autograder does; `model`
    (a folder or Hub id) replaces the set-up cell's `MODEL` (see `set_model`).
    """
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if model is not None:
        set_model(nb, model)
    settings = {"PTLAB_FAST": "1" if fast else None, "NBGRADER_EXECUTION": "autograde" if grading else None}
    with kernel_environment(**{k: v for k, v in settings.items() if v}):
        NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name="python3",
                       resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    return nb


@contextmanager
def kernel_environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the kernels started inside the block; restore them after it."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def graded_cell_results(nb: nbformat.NotebookNode) -> list[CellResult]:
    """The outcome of every graded code cell of an executed notebook, in order."""
    results = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        outcome, reason = "pass", ""
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                outcome, reason = "fail", f"{output.ename}: {output.evalue}".strip()
                break
            if output.output_type == "stream" and output.name == "stderr":
                outcome, reason = "stderr", output.text.strip().splitlines()[0][:200] if output.text.strip() else "stderr"
        results.append(CellResult(meta["grade_id"], float(meta.get("points", 0)), outcome, reason))
    return results


def errors_outside_tests(nb: nbformat.NotebookNode) -> list[str]:
    """Errors raised by ordinary (non-graded) cells: a solution notebook must have none."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                found.append(f"cell {i}: {output.ename}: {output.evalue}")
    return found


def run(lab: str, solutions: bool = False, fast: bool = True, timeout: int = 600,
        model: str | None = None) -> list[CellResult]:
    """Execute one lab and print a line per graded cell and a total; return the results.

    `model` replaces the lab's `MODEL` (see `set_model`); a folder is made absolute first, because the
    notebook runs in its own folder.
    """
    path = find_notebook(lab, solutions)
    if model is not None and Path(model).exists():
        model = str(Path(model).resolve())
    with_model = f", MODEL = {model!r}" if model is not None else ""
    print(f"executing {path} ({'fast' if fast else 'full'} mode{with_model}) ...", flush=True)
    start = time.perf_counter()
    nb = execute(path, fast=fast, timeout=timeout, model=model)
    results = graded_cell_results(nb)
    for r in results:
        mark = {"pass": "PASS", "fail": "FAIL", "stderr": "FAIL (stderr)"}[r.outcome]
        print(f"  {mark:<14} {r.grade_id:<32} {r.points:g} pt  {r.reason}")
    got = sum(r.points for r in results if r.passed)
    print(f"{got:g} / {sum(r.points for r in results):g} points in {time.perf_counter() - start:.0f} s")
    for problem in errors_outside_tests(nb):
        print(f"  error outside a test cell: {problem}")
    return results
