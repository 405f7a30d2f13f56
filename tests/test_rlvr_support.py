"""Unit tests of ptlab.rlvr, lab 07's GRPO loop, expert iteration, evaluation and the Colab track's loader
(tiny-sft, CPU, seconds). The loop is driven by reference functions written here, not by the lab's solutions."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from ptlab import models, rl, rlvr, tinyworld

ROOT = Path(__file__).resolve().parents[1]
GSM8K_SAMPLE = ROOT / "tests" / "data" / "gsm8k_sample.jsonl"


# ----------------------------------------------------------------------------------------------------
# Reference functions (the contracts of lab 07's exercises, written independently of its solutions)


def ref_reward(prompt, reply) -> float:
    task, word = tinyworld.parse_instruction(prompt[-1]["content"])
    body = reply.strip()
    filler = next((f for f in tinyworld.FILLERS[2] + tinyworld.FILLERS[1] if body.startswith(f)), "")
    return float(body[len(filler):] == task.answer(word))


def ref_advantages(rewards, group_size, scale="group"):
    groups = rewards.view(-1, group_size)
    centred = groups - groups.mean(1, keepdim=True)
    std = {"group": groups.std(1, keepdim=True), "batch": rewards.std(), "none": None}[scale]
    return (centred if std is None else centred / (std + 1e-4)).flatten()


def ref_loss(logp, old_logp, advantages, mask, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.2, beta=0.0,
             ref_logp=None, max_completion_length=None):
    ratio = (logp - old_logp).exp()
    a = advantages[:, None]
    per_token = -torch.min(ratio * a, ratio.clamp(1 - epsilon_low, 1 + epsilon_high) * a)
    if beta:
        per_token = per_token + beta * ((ref_logp - logp).exp() - (ref_logp - logp) - 1)
    if loss_type == "grpo":
        return ((per_token * mask).sum(1) / mask.sum(1)).mean()
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (mask.shape[0] * max_completion_length)
    return (per_token * mask).sum() / mask.sum()


def ref_logprobs(model, input_ids, attention_mask, response_mask):
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return logp * response_mask[:, 1:]


def ref_kl(logp, ref_logp, mask, kind="k3"):
    assert kind == "k3"
    d = ref_logp - logp
    return (d.exp() - d - 1) * mask


def ref_keep(rewards, group_size):
    groups = rewards.view(-1, group_size)
    return (groups.max(1).values != groups.min(1).values).repeat_interleave(group_size)


FNS = rlvr.GRPOFunctions(ref_logprobs, ref_kl, ref_reward, ref_advantages, ref_loss, ref_keep)


@pytest.fixture(scope="module")
def prompts():
    return list(tinyworld.chat_dataset("test", n=8, tasks=tinyworld.SFT_TASKS, seed=2)["prompt_messages"])


# ----------------------------------------------------------------------------------------------------
# Evaluation


def test_greedy_replies_batched_equal_one_by_one(sft, prompts):
    model, tok = sft
    batched = rlvr.greedy_replies(model, tok, prompts[:5], max_new_tokens=24, batch_size=5)
    single = [rlvr.greedy_replies(model, tok, [p], max_new_tokens=24)[0] for p in prompts[:5]]
    assert batched == single
    assert sum(ref_reward(p, r) for p, r in zip(prompts, batched)) >= 4  # tiny-sft answers these greedily


def test_correct_counts_count_right_samples_per_prompt(sft, prompts):
    model, tok = sft
    counts = rlvr.correct_counts(ref_reward, model, tok, prompts[:3], n=6, max_new_tokens=24, samples_per_call=12)
    assert len(counts) == 3 and all(0 <= c <= 6 for c in counts)
    # the same seed gives the same counts; a verifier that accepts everything counts every sample
    assert counts == rlvr.correct_counts(ref_reward, model, tok, prompts[:3], n=6, max_new_tokens=24, samples_per_call=12)
    assert rlvr.correct_counts(lambda p, r: 1.0, model, tok, prompts[:3], n=6, max_new_tokens=24) == [6, 6, 6]


def test_evaluate_reports_pass1_and_greedy_in_0_1(sft, prompts):
    model, tok = sft
    out = rlvr.evaluate(ref_reward, model, tok, prompts, samples=2, max_new_tokens=24)
    assert set(out) == {"pass1", "greedy"} and all(0.0 <= v <= 1.0 for v in out.values())
    assert out["greedy"] >= 0.75


# ----------------------------------------------------------------------------------------------------
# The GRPO loop and expert iteration


def _moved(policy, model) -> bool:
    return any(not torch.equal(p, q) for p, q in zip(policy.parameters(), model.parameters()))


def test_train_grpo_follows_the_functions_it_is_given(sft, prompts):
    """Zero advantages from a broken `group_advantages` give a zero gradient: the policy must not move."""
    model, tok = sft
    cfg = rlvr.GRPOConfig(steps=2, prompts_per_step=2, group_size=4, minibatch_size=8, lr=1e-3, max_new_tokens=16)
    broken = copy.copy(FNS)
    broken.group_advantages = lambda rewards, group_size, scale: torch.zeros_like(rewards)
    policy = copy.deepcopy(model).requires_grad_(True)
    history = rlvr.train_grpo(broken, policy, model, tok, prompts, cfg, progress=False)
    assert not _moved(policy, model)
    assert set(history[0]) >= {"reward", "kl", "length", "length_correct", "length_wrong", "entropy", "flat_groups",
                               "loss", "rows"}
    history = rlvr.train_grpo(FNS, policy, model, tok, prompts, cfg, progress=False)
    assert _moved(policy, model)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the first rollout comes from the reference itself
    assert history[1]["kl"] > 0.0


def test_grpo_passes_the_config_to_the_loss():
    """Every option of the config reaches grpo_loss, and the loop's rows are whole rollouts of B * G."""
    seen = {}

    def spy_loss(logp, old_logp, advantages, mask, **kwargs):
        seen.update(kwargs, rows=logp.shape[0])
        return ref_loss(logp, old_logp, advantages, mask, **kwargs)

    model, tok = models.load("tiny-sft")
    rl.prepare_chat_tokenizer(tok)
    fns = copy.copy(FNS)
    fns.grpo_loss = spy_loss
    cfg = rlvr.GRPOConfig(steps=1, prompts_per_step=2, group_size=3, minibatch_size=6, lr=1e-4, max_new_tokens=12,
                          loss_type="dr_grpo", epsilon_low=0.1, epsilon_high=0.3, beta=0.04)
    prompts = list(tinyworld.chat_dataset("test", n=4, seed=5)["prompt_messages"])
    rlvr.train_grpo(fns, copy.deepcopy(model).requires_grad_(True), model, tok, prompts, cfg, progress=False)
    assert seen == {"loss_type": "dr_grpo", "epsilon_low": 0.1, "epsilon_high": 0.3, "beta": 0.04,
                    "ref_logp": seen["ref_logp"], "max_completion_length": 12, "rows": 6}


def test_dynamic_sampling_trains_on_the_kept_groups_only(sft, prompts):
    model, tok = sft
    cfg = rlvr.GRPOConfig(steps=1, prompts_per_step=4, group_size=4, minibatch_size=16, lr=1e-3, max_new_tokens=16,
                          dynamic_sampling=True)
    fns = copy.copy(FNS)
    fns.dynamic_sampling_mask = lambda rewards, group_size: torch.zeros_like(rewards, dtype=torch.bool)
    policy = copy.deepcopy(model).requires_grad_(True)
    history = rlvr.train_grpo(fns, policy, model, tok, prompts, cfg, progress=False)
    assert history[0]["rows"] == 0 and math.isnan(history[0]["loss"]) and not _moved(policy, model)
    fns.dynamic_sampling_mask = lambda rewards, group_size: torch.arange(len(rewards)) < group_size
    history = rlvr.train_grpo(fns, policy, model, tok, prompts, cfg, progress=False)
    assert history[0]["rows"] == 4


def test_step_report_flat_groups_and_lengths():
    batch = rl.Rollout(torch.zeros(4, 5, dtype=torch.long), torch.ones(4, 5, dtype=torch.long),
                       torch.tensor([[0, 0, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 1, 0]]),
                       [[]] * 4, [""] * 4, group_size=2)
    logp = -torch.ones(4, 4) * batch.response_mask[:, 1:]
    out = rlvr.step_report(FNS, batch, torch.tensor([1.0, 1.0, 0.0, 1.0]), logp, logp)
    assert out["flat_groups"] == 0.5 and out["reward"] == 0.75 and out["kl"] == 0.0
    assert out["length_correct"] == pytest.approx((2 + 3 + 1) / 3) and out["length_wrong"] == 4.0
    assert out["entropy"] == pytest.approx(1.0)


def test_expert_iteration_trains_on_accepted_replies_only(sft, prompts):
    model, tok = sft
    cfg = rlvr.ExpertIterationConfig(steps=1, prompts_per_step=2, group_size=4, lr=1e-3, max_new_tokens=16)
    fns = copy.copy(FNS)
    fns.reward = lambda p, r: 0.0  # nothing accepted: nothing to learn from
    policy = copy.deepcopy(model).requires_grad_(True)
    history = rlvr.train_expert_iteration(fns, policy, tok, prompts, cfg, progress=False)
    assert history[0]["rows"] == 0 and not _moved(policy, model)
    history = rlvr.train_expert_iteration(FNS, policy, tok, prompts, cfg, progress=False)
    assert history[0]["rows"] > 0 and _moved(policy, model) and history[0]["loss"] > 0


# ----------------------------------------------------------------------------------------------------
# The Colab track: GSM8K's format from a local sample file


@pytest.mark.parametrize(("text", "want"), [("#### 72", "72"), ("so 3 + 4 = 7\n#### 1,000", "1000"),
                                            ("The answer is 12.", "12"), ("It is -3.0 degrees", "-3"),
                                            ("no number", None), ("5 apples, then #### 8 (eight)", "8")])
def test_final_number_reads_the_marked_or_last_number(text, want):
    assert rlvr.final_number(text) == want


def test_math_dataset_and_numeric_reward_from_a_local_gsm8k_file():
    rows = rlvr.load_math_dataset(GSM8K_SAMPLE)
    raw = [json.loads(line) for line in GSM8K_SAMPLE.read_text().splitlines()]
    assert len(rows) == len(raw) and all(r["prompt"][0]["role"] == "user" for r in rows)
    assert sorted(r["answer"] for r in rows) == sorted(rlvr.final_number(x["answer"]) for x in raw)
    assert len(rlvr.load_math_dataset(GSM8K_SAMPLE, n=2)) == 2
    reward = rlvr.numeric_reward(rows)
    row = rows[0]
    assert reward(row["prompt"], f"Let me think.\n#### {row['answer']}") == 1.0
    assert reward(row["prompt"], f"{row['answer']} or maybe {int(row['answer']) + 1}") == 0.0
    assert reward(row["prompt"], "") == 0.0
    with pytest.raises(ValueError, match="no answer"):
        reward([{"role": "user", "content": "What is 2 + 2?"}], "4")


def test_colab_track_grpo_step_runs_on_a_hub_format_model_and_local_gsm8k_rows(hub_twin):
    """The notebook's MATH_DATA path: GSM8K rows, the numeric verifier, one GRPO step and an evaluation on the
    Hub twin (SmolLM2's format: BPE tokens, ChatML, pad = eos)."""
    model, tok = models.load(str(hub_twin))
    rl.prepare_chat_tokenizer(tok)
    model.requires_grad_(False)
    rows = rlvr.load_math_dataset(GSM8K_SAMPLE)
    fns = copy.copy(FNS)
    fns.reward = rlvr.numeric_reward(rows)
    cfg = rlvr.GRPOConfig(steps=1, prompts_per_step=2, group_size=2, minibatch_size=4, lr=1e-3, max_new_tokens=8)
    policy = copy.deepcopy(model).requires_grad_(True)
    history = rlvr.train_grpo(fns, policy, model, tok, [r["prompt"] for r in rows], cfg, progress=False)
    assert history[0]["rows"] == 4 and all(math.isfinite(history[0][k]) for k in ("kl", "length", "entropy"))
    out = rlvr.evaluate(fns.reward, policy, tok, [r["prompt"] for r in rows[:2]], samples=2, max_new_tokens=8)
    assert set(out) == {"pass1", "greedy"}
