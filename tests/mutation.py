"""Plausible wrong implementations, run against a lab's graded cells in one kernel.

A `Mutant` is one mistake a student would plausibly make, written as exact text edits of one solution
cell. `lost_points` runs the lab's exercise part (every code cell up to its last graded cell) once as
written, then, for each mutant, the edited solution cell and every cell after it again, and records which
graded cells lost their points as nbgrader scores them: an error, or stderr left after the grader's own
library-noise filter. Mutants run from the last solution cell to the first, so each rerun rebuilds from
the original code everything that later cells define, and cells above the mutant keep their first run's
outcome (a mistake cannot reach back). A mutant passes when it loses points in its own cells (by default
the graded cells between its solution cell and the next) and in no other. A `variant` is the opposite: a
correct solution written another way (other wording of an error, another loop order), which must lose
nothing.

The same kernel then restores the solution, runs the rest of the notebook (the experiments) and re-runs
every graded cell: `results["rerun"]` names those that fail when a student re-runs them at the end (a later
cell rebinding a name a test reads).

Fast mode and NBGRADER_EXECUTION are set as the autograder sets them; one thread per kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import nbformat

from autograder import SOLUTIONS
from autograder.preprocessors import strip_noise
from ptlab.runner import kernel_environment


@dataclass(frozen=True)
class Mutant:
    cell: str  # grade_id of the solution cell the wrong code goes into
    name: str  # what the student got wrong, in a few words (unique within a lab)
    edits: tuple[tuple[str, str], ...]  # (exact text in the solution, what the mistaken student wrote)
    own: tuple[str, ...] = ()  # graded cells it may lose points in; () = all of its exercise's cells
    correct: bool = False  # a correct variant: must lose no points at all


def mutant(cell: str, name: str, *edits: tuple[str, str], own: tuple[str, ...] = ()) -> Mutant:
    return Mutant(cell, name, tuple(edits), own)


def variant(cell: str, name: str, *edits: tuple[str, str]) -> Mutant:
    """A correct solution written another way: it must keep full marks."""
    return Mutant(cell, name, tuple(edits), correct=True)


def notebook(lab: str) -> nbformat.NotebookNode:
    return nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _is_test(cell) -> bool:
    return bool(_meta(cell).get("grade")) and not _meta(cell).get("solution")


def own_cells(nb: nbformat.NotebookNode, m: Mutant) -> set[str]:
    """The graded cells `m` may lose points in: its `own`, or those up to the next solution cell."""
    cells, inside = [], False
    for cell in nb.cells:
        if _meta(cell).get("solution"):
            inside = _meta(cell).get("grade_id") == m.cell
        elif inside and _is_test(cell):
            cells.append(_meta(cell)["grade_id"])
    assert set(m.own) <= set(cells), f"{m.name}: own cells {m.own} are not tests of {m.cell}: {cells}"
    return set(m.own or cells)


def apply(source: str, m: Mutant) -> str:
    for old, new in m.edits:
        # exactly once: a mutant whose text no longer matches the solution must fail, not test the solution
        assert source.count(old) == 1, f"{m.name}: {old!r} occurs {source.count(old)} times in {m.cell}"
        source = source.replace(old, new)
    return source


def _lost(cell) -> bool:
    for output in cell.get("outputs", []):
        if output.output_type == "error":
            return True
        if output.output_type == "stream" and output.name == "stderr" and strip_noise(output.text).strip():
            return True
    return False


def _parts(nb: nbformat.NotebookNode) -> tuple[list, list, dict[str, int]]:
    """(the exercise part: code cells up to the last graded cell, the code cells after it, the position of
    each solution cell in the part)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    part = code[: max(i for i, c in enumerate(code) if _is_test(c)) + 1]
    position = {_meta(c)["grade_id"]: i for i, c in enumerate(part) if _meta(c).get("solution")}
    return part, code[len(part) :], position


def rerun_cost(lab: str, m: Mutant) -> int:
    """The code cells a mutant re-runs: its solution cell and every cell after it in the exercise part."""
    part, _, position = _parts(notebook(lab))
    return len(part) - position[m.cell]


def lost_points(lab: str, mutants: list[Mutant], timeout: int = 300, rerun: bool = True) -> dict[str, set[str]]:
    """{"solution": graded cells the unchanged solution fails, mutant name: graded cells it fails, and with
    `rerun`, "rerun": graded cells that fail when re-run after the whole notebook}."""
    from nbclient import NotebookClient

    nb = notebook(lab)
    part, rest, position = _parts(nb)
    tests = [c for c in part if _is_test(c)]
    client = NotebookClient(
        nb,
        timeout=timeout,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(SOLUTIONS / lab)}},
    )

    def run(cell, source: str | None = None) -> None:
        scratch = nbformat.v4.new_code_cell(cell.source if source is None else source, metadata=cell.metadata)
        client.execute_cell(scratch, 0)
        cell.outputs = scratch.outputs

    results = {}
    with kernel_environment(PTLAB_FAST="1", NBGRADER_EXECUTION="autograde", OMP_NUM_THREADS="1"), \
            client.setup_kernel():
        for cell in part:
            run(cell)
        results["solution"] = {_meta(c)["grade_id"] for c in tests if _lost(c)}
        for m in sorted(mutants, key=lambda m: -position[m.cell]):
            start = position[m.cell]
            run(part[start], apply(part[start].source, m))
            for cell in part[start + 1 :]:
                run(cell)
            results[m.name] = {_meta(c)["grade_id"] for c in tests if _lost(c)}
        if not rerun:
            return results
        if mutants:  # restore the solution's definitions before the experiments run on them
            for cell in part[min(position[m.cell] for m in mutants) :]:
                run(cell)
        for cell in rest:
            run(cell)
        for cell in tests:
            run(cell)
        results["rerun"] = {_meta(c)["grade_id"] for c in tests if _lost(c)}
    return results


def check(lab: str, results: dict[str, set[str]], m: Mutant) -> None:
    """Assert that `m` lost points in at least one of its own graded cells and in no other (a correct
    variant: in none)."""
    lost = results[m.name]
    if m.correct:
        assert not lost, f"{m.name} is correct but lost points in {sorted(lost)}"
        return
    own = own_cells(notebook(lab), m)
    assert lost, f"{m.name} earned full marks: no test of {sorted(own)} catches it"
    assert lost <= own, (
        f"{m.name} also lost points in {sorted(lost - own)}, outside its exercise {sorted(own)}"
    )
