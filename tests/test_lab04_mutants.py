"""Lab 04's graded cells against plausible wrong solutions: each mutant must fail its own test cell only.

A mutant is one edit of one solution cell of `solutions/04_rlhf/04_rlhf.ipynb`. The test runs, in one
namespace and in fast mode, the set-up cell, the helpers, every solution cell (the mutated one included)
and then every graded test cell with its hidden tests, and records which test cells raise. (The same
cells nbgrader runs, without a kernel per mutant, so the eighteen mutants take seconds, not minutes.)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "04_rlhf" / "04_rlhf.ipynb"

# (solution cell, what the mistake is, text in the solution, its replacement)
MUTANTS = [
    ("ex_response_logprobs", "not shifted: scores token t with the logits at t",
     "input_ids[:, 1:].unsqueeze(-1)", "input_ids[:, :-1].unsqueeze(-1)"),
    ("ex_response_logprobs", "prompt tokens not masked (attention mask instead of the reply mask)",
     "response_mask[:, 1:].to(token_logp.dtype)", "attention_mask[:, 1:].to(token_logp.dtype)"),
    ("ex_response_logprobs", "reply mask not shifted with the logits",
     "response_mask[:, 1:].to(token_logp.dtype)", "response_mask[:, :-1].to(token_logp.dtype)"),
    ("ex_kl_estimate", "k3 with r = pi / pi_ref", "log_r = -log_ratio", "log_r = log_ratio"),
    ("ex_kl_estimate", "k2 without the half", "kl = 0.5 * log_ratio ** 2", "kl = log_ratio ** 2"),
    ("ex_kl_estimate", "k1 with the sign flipped", "kl = log_ratio\n", "kl = -log_ratio\n"),
    ("ex_shaped_rewards", "KL penalty on every token, padding and prompt included",
     "-beta * (logp - ref_logp) * mask", "-beta * (logp - ref_logp)"),
    ("ex_shaped_rewards", "score added at the first reply token",
     "torch.where(mask > 0, positions, -1).max(dim=1).values", "torch.where(mask > 0, positions, T).min(dim=1).values"),
    ("ex_shaped_rewards", "score added in the last column, not at the last reply token",
     "rewards[rows, last] +=", "rewards[rows, -1] +="),
    ("ex_gae", "does not stop at the reply's end (padding values leak in)",
     "values = values * mask  #", "values = values  #"),
    ("ex_gae", "lambda and gamma swapped in the TD error",
     "rewards[:, t] + gamma * next_value", "rewards[:, t] + lam * next_value"),
    ("ex_gae", "returns without the values", "return advantages, (advantages + values) * mask",
     "return advantages, advantages"),
    ("ex_ppo_losses", "min instead of max of the losses (optimistic clipping)",
     "torch.maximum(unclipped, clipped)", "torch.minimum(unclipped, clipped)"),
    ("ex_ppo_losses", "unmasked mean of the policy loss",
     "masked_mean(torch.maximum(unclipped, clipped), mask)", "torch.maximum(unclipped, clipped).mean()"),
    ("ex_ppo_losses", "advantages not whitened", "advantages = whiten(advantages, mask)", "advantages = advantages"),
    ("ex_dpo_loss", "reference terms with the sign flipped",
     "chosen_logratios = policy_chosen_logps - ref_chosen_logps", "chosen_logratios = policy_chosen_logps + ref_chosen_logps"),
    ("ex_dpo_loss", "beta missing from the implicit rewards",
     "return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()",
     "return losses, chosen_logratios.detach(), rejected_logratios.detach()"),
    ("ex_dpo_loss", "leans on TRL (imports it inside the loss)",
     "    ### BEGIN SOLUTION\n", "    ### BEGIN SOLUTION\n    import trl  # noqa: F401\n"),
]
OWN_TEST = {f"ex_{name}": f"test_{name}" for name in
            ("response_logprobs", "kl_estimate", "shaped_rewards", "gae", "ppo_losses", "dpo_loss")}


def cells():
    nb = json.loads(NOTEBOOK.read_text())
    return [(c["cell_type"], "".join(c["source"]), c.get("metadata", {}).get("nbgrader", {})) for c in nb["cells"]]


def failing_tests(mutant: tuple[str, str, str, str] | None) -> set[str]:
    """Run set-up, helpers, solutions (one of them mutated) and the graded cells; the ids of those that raise."""
    from ptlab import env

    ns: dict = {}
    all_cells = cells()
    setup = next(src for kind, src, _ in all_cells if kind == "code")
    exec(re.sub(r"^\s*%pip.*$", "    pass", setup, flags=re.M), ns)
    failed = set()
    for kind, src, meta in all_cells:
        if kind != "code":
            continue
        if meta.get("solution"):
            if mutant and meta["grade_id"] == mutant[0]:
                assert mutant[2] in src, f"mutant text not found in {mutant[0]}: {mutant[2]!r}"
                src = src.replace(mutant[2], mutant[3])
            exec(src, ns)
        elif src.startswith("def check_per_token"):
            exec(src, ns)
        elif meta.get("grade"):
            try:
                with env.quiet():
                    exec(src, ns)
            except Exception:  # noqa: BLE001 - any failure costs the cell its points
                failed.add(meta["grade_id"])
    return failed


@pytest.mark.slow
def test_each_mutant_fails_its_own_exercise_only():
    os.environ["PTLAB_FAST"] = "1"
    assert failing_tests(None) == set(), "the solution itself must pass every graded cell"
    wrong = []
    for mutant in MUTANTS:
        failed = failing_tests(mutant)
        if failed != {OWN_TEST[mutant[0]]}:
            wrong.append(f"{mutant[0]} ({mutant[1]}): failed {sorted(failed) or 'nothing'}")
    assert not wrong, "mutants not caught by exactly their own cell:\n" + "\n".join(wrong)
