"""RL with verifiable rewards for lab 07: the GRPO loop, expert iteration, evaluation and pass@k counts.

The loops take the lab's exercise functions as arguments (`GRPOFunctions`), so a bug in a student's
verifier, `group_advantages` or `grpo_loss` shows in the curves it produces. Nothing here computes a
reward, an advantage, a log-probability or a loss by itself: those are the exercises (log-probabilities
and the KL estimate are lab 04's, which lab 07 gives as read-only code). Rollouts, minibatches and the
optimizer step are `ptlab.rl`'s, shared with lab 04's PPO.

Batch layout (`ptlab.rl`): a rollout of B prompts x G samples has N = B * G rows, each prompt's G samples
contiguous (rows g*G .. g*G+G-1, as TRL's GRPOTrainer); per-token tensors are (N, T-1), aligned with
`logits[:, :-1]`, and the per-token reply mask is `response_mask[:, 1:]`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ptlab import rl
from ptlab.rl import Messages, Rollout, pad, prompt_ids

# ----------------------------------------------------------------------------------------------------
# Rewards and evaluation


def rewards_of(reward: Callable[[Messages, str], float], prompts: Sequence[Messages], replies: Sequence[str]) -> torch.Tensor:
    """(N,) float32 rewards: `reward(prompt, reply)` for each row."""
    return torch.tensor([float(reward(p, r)) for p, r in zip(prompts, replies, strict=True)], dtype=torch.float32)


@torch.no_grad()
def greedy_replies(policy, tokenizer, prompts: Sequence[Messages], max_new_tokens: int = 32,
                   batch_size: int = 64) -> list[str]:
    """One greedy reply per prompt, decoded up to its end-of-turn token."""
    device = next(policy.parameters()).device
    texts: list[str] = []
    for i in range(0, len(prompts), batch_size):
        ids, mask = pad(prompt_ids(tokenizer, prompts[i: i + batch_size]), tokenizer.pad_token_id, "left")  # (b, P)
        out = policy.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                              max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id).cpu()
        for row in out[:, ids.shape[1]:]:  # (new,) generated ids
            ends = (row == tokenizer.eos_token_id).nonzero()
            row = row[: int(ends[0])] if len(ends) else row
            texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


def correct_counts(reward: Callable[[Messages, str], float], policy, tokenizer, prompts: Sequence[Messages],
                   n: int, max_new_tokens: int = 32, temperature: float = 1.0, samples_per_call: int = 256,
                   seed: int = 0) -> list[int]:
    """For each prompt, how many of `n` samples (temperature `temperature`) the verifier scores 1 (reward > 0.5).

    These counts c out of n are what the unbiased pass@k estimator needs (Chen et al. 2021).
    """
    torch.manual_seed(seed)
    per_call = max(1, samples_per_call // n)  # prompts per rollout call, n samples each
    counts = []
    for i in range(0, len(prompts), per_call):
        chunk = list(prompts[i: i + per_call])
        batch = rl.rollout(policy, tokenizer, chunk, max_new_tokens, temperature, group_size=n)
        ok = rewards_of(reward, batch.prompts, batch.replies) > 0.5  # (len(chunk) * n,)
        counts += [int(c) for c in ok.view(len(chunk), n).sum(1)]
    return counts


def evaluate(reward: Callable[[Messages, str], float], policy, tokenizer, prompts: Sequence[Messages],
             samples: int = 4, max_new_tokens: int = 32, seed: int = 0) -> dict[str, float]:
    """Held-out accuracy: pass@1 at temperature 1 (mean over `samples` samples per prompt) and greedy accuracy."""
    counts = correct_counts(reward, policy, tokenizer, prompts, samples, max_new_tokens, seed=seed)
    greedy = greedy_replies(policy, tokenizer, prompts, max_new_tokens)
    return {"pass1": sum(counts) / (samples * len(prompts)),
            "greedy": float(rewards_of(reward, prompts, greedy).gt(0.5).float().mean())}


# ----------------------------------------------------------------------------------------------------
# The Colab track: grade-school word problems (GSM8K's format) and a numeric verifier

MATH_INSTRUCTION = "Solve the problem. End your reply with the final answer as a number on its own line, after '####'."
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The number a reply or a GSM8K solution ends on: after the last '####' if there is one, else the last number
    of the text; commas dropped, a trailing '.0' dropped ('1,000.0' -> '1000'). None if there is no number."""
    marked = "####" in text
    if marked:
        text = text[text.rindex("####") + 4:]
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    value = numbers[0 if marked else -1].replace(",", "")  # after '####': the first number; else the last
    return value[:-2] if value.endswith(".0") else value


def load_math_dataset(source: str | Path, split: str = "train", n: int | None = None, config: str = "main",
                      seed: int = 0) -> list[dict]:
    """Word problems in GSM8K's format (columns question, answer = worked solution ending '#### 72'), from the Hub
    (`"openai/gsm8k"`, config "main") or a local .json/.jsonl file in that format.

    Returns:
        rows {"prompt": [user message: question + MATH_INSTRUCTION], "answer": "72"}, `n` of them shuffled with
        `seed` (all if None).
    """
    from datasets import load_dataset

    path = Path(source)
    if path.suffix in (".json", ".jsonl"):
        raw = load_dataset("json", data_files=str(path), split="train")  # a local file is one split
    else:
        raw = load_dataset(str(source), config, split=split)
    missing = {"question", "answer"} - set(raw.column_names)
    if missing:
        raise ValueError(f"{source} lacks the column(s) {sorted(missing)} of GSM8K's format (question, answer)")
    order = list(range(len(raw)))
    random.Random(seed).shuffle(order)
    rows = []
    for i in order[: n or len(order)]:
        answer = final_number(raw[i]["answer"])
        if answer is None:
            raise ValueError(f"row {i} of {source}: no final number in its answer {raw[i]['answer'][-80:]!r}")
        rows.append({"prompt": [{"role": "user", "content": f"{raw[i]['question']}\n\n{MATH_INSTRUCTION}"}],
                     "answer": answer})
    return rows


def numeric_reward(rows: Sequence[dict]) -> Callable[[Messages, str], float]:
    """A verifier for `load_math_dataset` rows: 1.0 if the reply's final number (`final_number`) equals the answer
    of its prompt, else 0.0. A prompt that is not one of `rows` raises a ValueError."""
    answers = {row["prompt"][-1]["content"]: row["answer"] for row in rows}

    def reward(prompt: Messages, reply: str) -> float:
        question = prompt[-1]["content"]
        if question not in answers:
            raise ValueError(f"no answer known for the prompt {question[:60]!r}")
        return 1.0 if final_number(reply) == answers[question] else 0.0

    return reward


# ----------------------------------------------------------------------------------------------------
# GRPO


@dataclass
class GRPOFunctions:
    """The functions the loops call (see the notebook for their contracts).

    response_logprobs(model, input_ids, attention_mask, response_mask) -> (N, T-1) and
    kl_estimate(logp, ref_logp, mask, kind) -> (N, T-1) are lab 04's; reward(prompt, reply) -> float is the
    verifier; group_advantages(rewards, group_size, scale) -> (N,); grpo_loss(logp, old_logp, advantages, mask,
    loss_type, epsilon_low, epsilon_high, beta, ref_logp, max_completion_length) -> scalar;
    dynamic_sampling_mask(rewards, group_size) -> (N,) bool, True on the rows of groups to keep.
    """

    response_logprobs: Callable
    kl_estimate: Callable
    reward: Callable
    group_advantages: Callable
    grpo_loss: Callable
    dynamic_sampling_mask: Callable | None = None


@dataclass
class GRPOConfig:
    """Lab 07's full-mode GRPO recipe on tiny-sft (its defaults); the lab's variants change one field each."""

    steps: int = 40                 # rollouts (one update each)
    prompts_per_step: int = 8       # B distinct prompts per rollout
    group_size: int = 8             # G samples per prompt
    minibatch_size: int = 64        # rows per gradient step (all B * G rows: one step per rollout, TRL's default)
    epochs: int = 1                 # passes over each rollout (TRL's num_iterations, mu)
    lr: float = 5e-5                # the tiny model moves little at the 1e-6 of large models
    beta: float = 0.0               # k3 KL penalty to the reference inside the loss (TRL's default: 0)
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2       # DAPO's clip-higher: 0.28
    loss_type: str = "dapo"         # token-level aggregation, TRL's default
    scale: str = "group"            # "group" (GRPO), "batch", "none" (Dr. GRPO)
    dynamic_sampling: bool = False  # drop groups whose G rewards are all equal (DAPO; no refill here)
    max_new_tokens: int = 64        # tiny-sft's longest reply (an elaborate filler + answer) is ~75 characters
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0


def grpo_update(fns: GRPOFunctions, policy, optimizer, batch: Rollout, old_logp: torch.Tensor,
                ref_logp: torch.Tensor, advantages: torch.Tensor, cfg: GRPOConfig, rng: random.Random) -> float:
    """`epochs` passes of minibatch gradient steps on the rows of one rollout; mean loss."""
    mask = batch.response_mask[:, 1:]  # (N, T-1)
    losses = []
    policy.train()
    for rows in rl.minibatches(batch.input_ids.shape[0], cfg.minibatch_size, cfg.epochs, rng):
        logp = fns.response_logprobs(policy, batch.input_ids[rows], batch.attention_mask[rows],
                                     batch.response_mask[rows])  # (n, T-1)
        loss = fns.grpo_loss(logp, old_logp[rows], advantages[rows], mask[rows], loss_type=cfg.loss_type,
                             epsilon_low=cfg.epsilon_low, epsilon_high=cfg.epsilon_high, beta=cfg.beta,
                             ref_logp=ref_logp[rows], max_completion_length=cfg.max_new_tokens)
        rl.gradient_step(loss, [policy], [optimizer], cfg.max_grad_norm)
        losses.append(float(loss.detach()))
    policy.eval()
    return sum(losses) / len(losses)


def step_report(fns: GRPOFunctions, batch: Rollout, rewards: torch.Tensor, old_logp: torch.Tensor,
                ref_logp: torch.Tensor) -> dict[str, float]:
    """Reward, KL to the reference (k3 summed over each reply, averaged), lengths, entropy and the share of
    groups whose G rewards are all equal (they carry no signal) of one rollout."""
    mask = batch.response_mask[:, 1:]
    lengths = batch.lengths.float()
    right = rewards > 0.5
    groups = rewards.view(-1, batch.group_size)  # (B, G)
    kl = fns.kl_estimate(old_logp, ref_logp, mask, "k3").sum(1)  # (N,)
    return {"reward": float(rewards.mean()), "kl": float(kl.mean()), "length": float(lengths.mean()),
            "length_correct": float(lengths[right].mean()) if right.any() else float("nan"),
            "length_wrong": float(lengths[~right].mean()) if (~right).any() else float("nan"),
            "entropy": rl.sampled_entropy(old_logp, mask),
            "flat_groups": float((groups == groups[:, :1]).all(1).float().mean())}


def train_grpo(fns: GRPOFunctions, policy, ref_policy, tokenizer, prompts: Sequence[Messages], cfg: GRPOConfig,
               evaluate_fn: Callable | None = None, eval_every: int = 0, progress: bool = True) -> list[dict]:
    """GRPO (Shao et al. 2024, DeepSeekMath, eq. 3), with DAPO's options (Yu et al. 2025): the recipe of TRL's GRPOTrainer.

    Each step: sample `prompts_per_step` prompts, roll out `group_size` replies each from the current policy,
    score each with the verifier, turn the group's rewards into advantages, then `epochs` passes of clipped
    updates in minibatches. With `dynamic_sampling`, groups whose rewards are all equal are dropped before the
    update (a step with none left makes no update). No value model, no reward model. `evaluate_fn(policy)` ->
    dict, if given, runs at step 0, every `eval_every` steps and after the last (its keys join that step's
    record). Returns one dict per step: reward, KL, lengths, entropy, flat-group share, loss, rows updated.
    """
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    history = []
    for step in tqdm(range(cfg.steps), desc=f"GRPO {cfg.loss_type}/{cfg.scale}", disable=not progress):
        record: dict[str, float] = {"step": step}
        if evaluate_fn is not None and eval_every and step % eval_every == 0:
            record.update(evaluate_fn(policy))
        batch = rl.rollout(policy, tokenizer, rng.sample(list(prompts), cfg.prompts_per_step), cfg.max_new_tokens,
                           cfg.temperature, group_size=cfg.group_size)
        rewards = rewards_of(fns.reward, batch.prompts, batch.replies)  # (N,)
        with torch.no_grad():
            old_logp = fns.response_logprobs(policy, batch.input_ids, batch.attention_mask, batch.response_mask)
            ref_logp = fns.response_logprobs(ref_policy, batch.input_ids, batch.attention_mask, batch.response_mask)
        record.update(step_report(fns, batch, rewards, old_logp, ref_logp))
        advantages = fns.group_advantages(rewards, cfg.group_size, cfg.scale)  # (N,)
        rows = torch.arange(len(rewards))
        if cfg.dynamic_sampling:
            rows = fns.dynamic_sampling_mask(rewards, cfg.group_size).nonzero().flatten()
        record["rows"] = len(rows)
        record["loss"] = float("nan")
        if len(rows):
            sub = batch.select(rows.tolist())
            record["loss"] = grpo_update(fns, policy, optimizer, sub, old_logp[rows], ref_logp[rows],
                                         advantages[rows], cfg, rng)
        history.append(record)
    if evaluate_fn is not None and eval_every:
        history[-1].update(evaluate_fn(policy))
    return history


# ----------------------------------------------------------------------------------------------------
# Expert iteration: the baseline without advantages


@dataclass
class ExpertIterationConfig:
    """Lab 07's expert-iteration baseline: GRPO's samples per step and learning rate (`GRPOConfig`)."""

    steps: int = 40                 # rollouts, as GRPO's
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 5e-5
    max_new_tokens: int = 64
    temperature: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0


def train_expert_iteration(fns: GRPOFunctions, policy, tokenizer, prompts: Sequence[Messages],
                           cfg: ExpertIterationConfig, evaluate_fn: Callable | None = None, eval_every: int = 0,
                           progress: bool = True) -> list[dict]:
    """Expert iteration (rejection-sampling fine-tuning; Anthony et al. 2017, STaR, Zelikman et al. 2022):
    sample like GRPO, keep the replies the verifier accepts, and take one supervised step on them (mean
    negative log-likelihood per reply token). Same samples per step as GRPO; wrong replies are never pushed down.
    Returns one dict per step: reward of the samples, replies kept, loss (and evaluation keys where it ran)."""
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    history = []
    for step in tqdm(range(cfg.steps), desc="expert iteration", disable=not progress):
        record: dict[str, float] = {"step": step}
        if evaluate_fn is not None and eval_every and step % eval_every == 0:
            record.update(evaluate_fn(policy))
        batch = rl.rollout(policy, tokenizer, rng.sample(list(prompts), cfg.prompts_per_step), cfg.max_new_tokens,
                           cfg.temperature, group_size=cfg.group_size)
        rewards = rewards_of(fns.reward, batch.prompts, batch.replies)
        keep = (rewards > 0.5).nonzero().flatten().tolist()
        record.update({"reward": float(rewards.mean()), "rows": len(keep), "loss": float("nan")})
        if keep:
            sub = batch.select(keep)
            policy.train()
            logp = fns.response_logprobs(policy, sub.input_ids, sub.attention_mask, sub.response_mask)
            mask = sub.response_mask[:, 1:]
            loss = -(logp * mask).sum() / mask.sum()  # SFT on the accepted replies
            rl.gradient_step(loss, [policy], [optimizer], cfg.max_grad_norm)
            policy.eval()
            record["loss"] = float(loss.detach())
        history.append(record)
    if evaluate_fn is not None and eval_every:
        history[-1].update(evaluate_fn(policy))
    return history
