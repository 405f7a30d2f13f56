"""Lab 01's graded cells catch the plausible mistakes, and each mistake costs only its own exercise.

Each mutant is a small edit of one solution cell of `solutions/01_prompting`. One kernel runs the
notebook's set-up and exercise part once (not the experiments); then, for every mutant, it executes the
edited solution cell, runs every graded cell as nbgrader would score it (an error or any stderr output is
0 points), and restores the original cell. The test asserts which graded cells lost their points:
exactly the mutant's own. Slow: a few minutes on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "solutions" / "01_prompting" / "01_prompting.ipynb"

# name -> (solution cell grade_id, [(old, new) edits], graded cells that must fail)
MUTANTS: dict[str, tuple[str, list[tuple[str, str]], set[str]]] = {
    "choice_logprobs: logits not shifted (position t scores token t)": (
        "ex_choice_logprobs",
        [("logp = logits[:, :-1].float()", "logp = logits[:, 1:].float()")],
        {"test_choice_logprobs"}),
    "choice_logprobs: the prompt's last token is summed too": (
        "ex_choice_logprobs",
        [("(target >= torch.tensor(starts)[:, None])", "(target >= torch.tensor(starts)[:, None] - 1)")],
        {"test_choice_logprobs"}),
    "choice_logprobs: padding positions are scored": (
        "ex_choice_logprobs",
        [("& (target < lengths[:, None])", "& (target < T)")],
        {"test_choice_logprobs"}),
    "choice_logprobs: the choice tokenized alone (BPE merge ignored)": (
        "ex_choice_logprobs",
        [('ids = tokenizer(prompt + choice)["input_ids"]',
          'ids = prompt_ids + tokenizer(choice, add_special_tokens=False)["input_ids"]')],
        {"test_choice_logprobs"}),
    "top_k_filter: keeps exactly k indices, so ties with the k-th drop": (
        "ex_filters",
        [('return logits.masked_fill(logits < kth, float("-inf"))',
          'keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(k, dim=-1).indices, True)\n'
          '    return logits.masked_fill(~keep, float("-inf"))')],
        {"test_top_k_filter"}),
    "top_k_filter: float16 comes back as float32": (
        "ex_filters",
        [('return logits.masked_fill(logits < kth, float("-inf"))',
          'return logits.float().masked_fill(logits < kth, float("-inf"))')],
        {"test_top_k_filter"}),
    "top_p_filter: drops the token that crosses p": (
        "ex_filters",
        [("drop_sorted = mass_above >= p", "drop_sorted = probs.cumsum(-1) > p")],
        {"test_top_p_filter"}),
    "top_p_filter: calls transformers' TopPLogitsWarper": (
        "ex_filters",
        [("    check_probability(p)\n    if p == 1:",
          "    return TopPLogitsWarper(p)(None, logits.reshape(-1, logits.shape[-1]).clone()).reshape(logits.shape)\n"
          "    if p == 1:")],
        {"test_top_p_filter"}),
    "min_p_filter: compares logits instead of probabilities": (
        "ex_filters",
        [("drop = probs < p * probs.max(dim=-1, keepdim=True).values",
          "drop = logits < p * logits.max(dim=-1, keepdim=True).values")],
        {"test_min_p_filter"}),
    "sample_next_token: temperature applied after the softmax": (
        "ex_sample_next_token",
        [("scaled = logits.float() / temperature", "scaled = logits.float()"),
         ("probs = scaled.softmax(dim=-1)", "probs = scaled.softmax(dim=-1) / temperature")],
        {"test_sample_next_token"}),
    "sample_next_token: truncation before the temperature": (
        "ex_sample_next_token",
        [("scaled = logits.float() / temperature", "scaled = logits.float()"),
         ("probs = scaled.softmax(dim=-1)", "probs = (scaled / temperature).softmax(dim=-1)")],
        {"test_sample_next_token"}),
    "sample_next_token: ignores the generator": (
        "ex_sample_next_token",
        [("torch.multinomial(probs, 1, generator=generator)", "torch.multinomial(probs, 1)")],
        {"test_sample_next_token"}),
    "generate: feeds the whole sequence while passing the cache": (
        "ex_generate",
        [("inputs, past = step, out.past_key_values", "inputs, past = torch.cat([inputs, step], dim=1), out.past_key_values")],
        {"test_generate"}),
    "generate: never passes past_key_values": (
        "ex_generate",
        [("inputs, past = step, out.past_key_values", "inputs, past = step, None")],
        {"test_generate"}),
    "generate: calls model.generate": (
        "ex_generate",
        [("    inputs, past, new_ids = ids, None, []",
          "    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,\n"
          "                         do_sample=False, pad_token_id=tokenizer.pad_token_id)\n"
          "    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)\n"
          "    inputs, past, new_ids = ids, None, []")],
        {"test_generate"}),
    "majority_vote: None counts as an answer": (
        "ex_self_consistency",
        [("counts = Counter(a for a in answers if a is not None)", "counts = Counter(answers)"),
         ("winner = next(a for a in answers if a is not None and counts[a] == top)",
          "winner = next(a for a in answers if counts[a] == top)")],
        {"test_majority_vote"}),
    "majority_vote: ties go to the last answer": (
        "ex_self_consistency",
        [("winner = next(a for a in answers if", "winner = next(a for a in reversed(answers) if")],
        {"test_majority_vote"}),
    "self_consistency: samples greedily (temperature not passed on)": (
        "ex_self_consistency",
        [("temperature=temperature, generator=generator)", "generator=generator)")],
        {"test_self_consistency"}),
}


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _lost_points(cell) -> bool:
    """nbgrader's rule: a graded cell that raised or wrote to stderr scores 0."""
    return any(o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr") for o in cell.outputs)


def _mutate(source: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        assert source.count(old) == 1, f"the mutant's anchor {old!r} should occur once in the solution cell"
        source = source.replace(old, new)
    return source


@pytest.fixture(scope="module")
def failing_cells() -> dict[str, set[str]]:
    """mutant name (and "original") -> the graded cells that lost their points."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first_experiment = next(i for i, c in enumerate(code) if c.source.startswith("SIZES = {"))
    setup = code[:first_experiment]  # set-up, exercises, try-it and test cells; not the experiments
    solutions = {_grade_id(c): c for c in setup if c.metadata.get("nbgrader", {}).get("solution")}
    graded = [c for c in setup if c.metadata.get("nbgrader", {}).get("grade")]
    saved = {k: os.environ.get(k) for k in ("PTLAB_FAST", "NBGRADER_EXECUTION", "OMP_NUM_THREADS")}
    os.environ.update(PTLAB_FAST="1", NBGRADER_EXECUTION="autograde", OMP_NUM_THREADS="1")
    client = NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    results: dict[str, set[str]] = {}

    def run(cell, source: str | None = None) -> None:
        scratch = nbformat.v4.new_code_cell(source if source is not None else cell.source, metadata=cell.metadata)
        client.execute_cell(scratch, 0)
        cell.outputs = scratch.outputs

    try:
        with client.setup_kernel():
            for cell in setup:
                run(cell)
            results["original"] = {_grade_id(c) for c in graded if _lost_points(c)}
            for name, (solution_id, edits, _) in MUTANTS.items():
                original = solutions[solution_id]
                run(original, _mutate(original.source, edits))
                for cell in graded:
                    run(cell)
                results[name] = {_grade_id(c) for c in graded if _lost_points(c)}
                run(original)  # restore the correct solution for the next mutant
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return results


def test_solution_passes_every_graded_cell(failing_cells):
    assert failing_cells["original"] == set()


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_fails_its_own_exercise_only(failing_cells, name):
    expected = MUTANTS[name][2]
    assert failing_cells[name] == expected, f"{name}: lost points in {sorted(failing_cells[name])}, expected {sorted(expected)}"
