"""The Hub track: every lab's code path runs with MODEL set to a Hub-format model.

The course promises that changing one line, `MODEL = "tiny-base"` to a Hub id such as
`HuggingFaceTB/SmolLM2-135M-Instruct`, runs a lab on a real model. Tests cannot download one, so each
lab's solution notebook runs in fast mode with MODEL set to the Hub twin (`ptlab.tinyworld.hubtwin`):
a randomly initialised model in SmolLM2's exact format, with a byte-level BPE tokenizer, no BOS added,
grouped-query attention, tied embeddings, no biases and bf16 weights; in two flavours, SmolLM2-135M-
Instruct's tokens (ChatML template, pad = eos = <|im_end|>) and SmolLM2-135M's (the base model: no chat
template, no pad token, eos = <|endoftext|>), as the labs suggest one or the other.

"The code path runs" means: no cell raises, graded or not. The twin's weights are random, so a check of
a trained model's quality cannot hold on it; a notebook guards such a check with
`models.is_course_model(MODEL)` (true only for the shipped tiny models). Slow: about a minute per lab.
"""

from pathlib import Path

import pytest

from autograder import lab_names
from ptlab import runner

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

FLAVOURS = ("instruct", "base")

# lab -> why it fails on the twin today (marked xfail so the rest still runs); remove an entry with its fix.
KNOWN_FAILURES: dict[str, str] = {}


def _params():
    return [pytest.param(lab, flavour, marks=pytest.mark.xfail(strict=False, reason=KNOWN_FAILURES[lab]))
            if lab in KNOWN_FAILURES else pytest.param(lab, flavour)
            for lab in lab_names() for flavour in FLAVOURS]


def cell_errors(nb) -> list[str]:
    """Every error any cell of an executed notebook raised, as 'cell i (grade_id): Name: message'."""
    found = []
    for i, cell in enumerate(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        found += [f"cell {i} ({grade_id}): {out.ename}: {out.evalue}"[:500]
                  for out in cell.get("outputs", []) if out.output_type == "error"]
    return found


@pytest.mark.parametrize(("lab", "flavour"), _params())
def test_lab_runs_on_a_hub_format_model(lab, flavour, request):
    twin = request.getfixturevalue("hub_twin" if flavour == "instruct" else "hub_twin_base")
    path = runner.find_notebook(lab, solutions=True, root=ROOT)
    nb = runner.execute(path, fast=True, timeout=600, model=str(twin))
    errors = cell_errors(nb)
    assert errors == [], f"{lab} with MODEL = the {flavour} Hub twin:\n" + "\n".join(errors)
