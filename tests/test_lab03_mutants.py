"""Lab 03's plausible wrong implementations, run against the graded cells: each must fail its own exercise
and no other.

One kernel executes the solution notebook's exercise cells (section 1-5, fast mode, as the autograder
does), then, per mutant, the mutated solution cell, every test cell (hidden tests included) and the correct
solution cell again. A test cell counts as failed on an error or on any stderr output, as nbgrader scores it.
Slow: about a minute.
"""

import copy
from pathlib import Path

import nbformat
import pytest

from ptlab import runner

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "03_reward_model" / "03_reward_model.ipynb"
FIRST_EXPERIMENT = "## 6. Experiments"

# exercise (solution grade_id without "ex_") -> [(what the student got wrong, text in the solution, replacement)]
MUTANTS = {
    "pairwise_loss": [
        ("log(sigmoid) underflows for large differences", "-F.logsigmoid(difference).mean()",
         "-torch.log(torch.sigmoid(difference)).mean()"),
        ("sum instead of mean", "-F.logsigmoid(difference).mean()", "-F.logsigmoid(difference).sum()"),
        ("margin added with the wrong sign", "difference = difference - margin", "difference = difference + margin"),
    ],
    "ranking_loss": [
        ("all K^2 ordered pairs", "better, worse = torch.triu_indices(K, K, offset=1, device=rewards.device)",
         "better, worse = torch.cartesian_prod(torch.arange(K), torch.arange(K)).T"),
        ("adjacent pairs only", "better, worse = torch.triu_indices(K, K, offset=1, device=rewards.device)",
         "better, worse = torch.arange(K - 1), torch.arange(1, K)"),
        ("no K < 2 guard", "if K < 2:", "if K < 0:"),
    ],
    "last_token_rewards": [
        ("mask.sum() - 1: right padding only", "last = torch.where(real, positions, -1).amax(dim=1)",
         "last = real.sum(dim=1) - 1"),
        ("the last position: left padding only", "last = torch.where(real, positions, -1).amax(dim=1)",
         "last = torch.full((B,), T - 1, device=hidden_states.device)"),
        ("mask.sum(): one past the last token", "last = torch.where(real, positions, -1).amax(dim=1)",
         "last = real.sum(dim=1).clamp(max=T - 1)"),
    ],
    "preference_accuracy": [
        ("a tie counts as right", "(chosen_rewards > rejected_rewards)", "(chosen_rewards >= rejected_rewards)"),
        ("a tensor, not a float", ".float().mean().item()", ".float().mean()"),
        ("mean probability instead of accuracy", "(chosen_rewards > rejected_rewards).float().mean().item()",
         "torch.sigmoid(chosen_rewards - rejected_rewards).mean().item()"),
    ],
    "train_reward_model": [
        ("no zero_grad", "        optimizer.zero_grad()\n", ""),
        ("chosen and rejected swapped", "chosen, rejected = rewards.chunk(2)", "rejected, chosen = rewards.chunk(2)"),
        ("evaluated on the training pairs", "score_pairs(model, tokenizer, eval_pairs)",
         "score_pairs(model, tokenizer, train_pairs)"),
    ],
    "best_of_n": [
        ("argmin", "best = rewards.argmax(dim=1)", "best = rewards.argmin(dim=1)"),
        ("always the first sample", "best = rewards.argmax(dim=1)", "best = torch.zeros(len(prompts), dtype=torch.long)"),
        ("rewards reshaped sample-major", ".reshape(len(prompts), n)", ".reshape(n, len(prompts)).T"),
    ],
}


def grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def mutate(cell, old: str, new: str):
    assert cell.source.count(old) == 1, f"{grade_id(cell)}: {old!r} should occur once in the solution"
    mutant = copy.deepcopy(cell)
    mutant.source = cell.source.replace(old, new)
    return mutant


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """{(exercise, mutant name): set of test grade_ids that failed}, plus ("none", "solution")."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    end = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith(FIRST_EXPERIMENT))
    prefix = nb.cells[:end]
    solutions = {grade_id(c)[3:]: c for c in prefix if grade_id(c).startswith("ex_")}
    tests = [c for c in prefix if grade_id(c).startswith("test_")]
    assert sorted(solutions) == sorted(MUTANTS)
    blocks = [("none", "solution")]
    cells = list(prefix) + [copy.deepcopy(t) for t in tests]  # the solution's own block first
    for exercise, mutants in MUTANTS.items():
        for name, old, new in mutants:
            blocks.append((exercise, name))
            cells += [mutate(solutions[exercise], old, new)] + [copy.deepcopy(t) for t in tests]
            cells.append(copy.deepcopy(solutions[exercise]))
    for i, cell in enumerate(cells[len(prefix):]):
        cell["id"] = f"mutant-block-{i}"  # copies need their own cell ids
    nb.cells = cells
    path = tmp_path_factory.mktemp("lab03") / "mutants.ipynb"
    nbformat.write(nb, path)
    executed = runner.execute(path, fast=True, timeout=300, grading=True)
    results = runner.graded_cell_results(executed)  # the prefix's tests, then one run of every test per block
    n = len(tests)
    assert len(results) == n * (len(blocks) + 1)
    return {(exercise, name): {r.grade_id for r in results[(k + 1) * n:(k + 2) * n] if r.outcome != "pass"}
            for k, (exercise, name) in enumerate(blocks)}


@pytest.mark.parametrize("exercise, name", [(e, m[0]) for e, ms in MUTANTS.items() for m in ms])
def test_mutant_fails_its_own_exercise_only(outcomes, exercise, name):
    assert outcomes[(exercise, name)] == {f"test_{exercise}"}, outcomes[(exercise, name)]


def test_solution_passes_every_test(outcomes):
    assert outcomes[("none", "solution")] == set()
