"""RLHF infrastructure for lab 04: rollouts, a value model, the PPO loop, a DPO loop and their metrics.

The loops take the lab's exercise functions as arguments (`PPOFunctions`, `DPOFunctions`), so a bug in a
student's `gae` or `dpo_loss` shows in the curves it produces. Nothing here computes a log-probability,
a KL estimate, an advantage or a loss by itself: those are the exercises.

The batch layout, rollouts and the update plumbing are `ptlab.rl`'s, shared with lab 07's GRPO; the names
the lab uses from there (`rlhf.rollout`, `rlhf.pair_batch`, ...) are re-exported here.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ptlab import checks, rl
from ptlab.rl import (  # noqa: F401
    CHATML_TEMPLATE,
    Messages,
    Rollout,
    pad,
    pair_batch,
    prepare_chat_tokenizer,
    prompt_ids,
    reply_ids,
    rollout,
)
from ptlab.tinyworld.world import oracle_score, reply_core

# ----------------------------------------------------------------------------------------------------
# The reward model, the oracle's metrics, and the value model


def reward_scorer(reward_model, tokenizer, batch_size: int = 64) -> Callable[[Sequence[Messages], Sequence[str]], torch.Tensor]:
    """A function (prompts, replies) -> (B,) reward-model scores of the full chats, right-padded."""
    device = next(reward_model.parameters()).device

    @torch.no_grad()
    def score(prompts: Sequence[Messages], replies: Sequence[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(prompts), batch_size):
            batch = pair_batch(tokenizer, prompts[i: i + batch_size], replies[i: i + batch_size], "right")
            logits = reward_model(input_ids=batch["input_ids"].to(device),
                                  attention_mask=batch["attention_mask"].to(device)).logits  # (b, 1)
            out.append(logits[:, 0].float().cpu())
        return torch.cat(out)

    return score


def has_filler(reply: str) -> bool:
    """True if a reply says more than its bare answer (a polite or elaborate filler)."""
    return len(reply.strip()) > len(reply_core(reply))


def oracle_metrics(prompts: Sequence[Messages], replies: Sequence[str]) -> dict[str, float]:
    """Mean oracle score, exact-match correctness (the oracle's correct band) and filler share."""
    scores = [oracle_score(p, r) for p, r in zip(prompts, replies, strict=True)]
    return {"oracle": sum(scores) / len(scores),
            "correct": sum(s >= 0.5 for s in scores) / len(scores),
            "filler": sum(has_filler(r) for r in replies) / len(replies)}


class ValueModel(nn.Module):
    """A value head on a transformer trunk: V(s_t) for every position, (B, T).

    From a reward model (TRL's PPO does the same): its trunk, and its score layer applied at every token
    instead of only the last one. From a causal LM (when the reward model reads another tokenizer, as on
    the Hub track): its trunk and a new linear head that starts at 0. Either way a copy: the model it is
    built from stays as it is.
    """

    def __init__(self, model):
        super().__init__()
        model = copy.deepcopy(model)  # the scorer (or the policy) must not move while the values learn
        self.trunk = model.base_model
        if hasattr(model, "score"):
            self.head = model.score
        else:
            self.head = nn.Linear(model.config.hidden_size, 1, bias=False)
            nn.init.zeros_(self.head.weight)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)  # left padding: count real tokens only
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids).last_hidden_state  # (B, T, D)
        return self.head(hidden)[..., 0].float()  # (B, T)


# ----------------------------------------------------------------------------------------------------
# PPO


@dataclass
class PPOFunctions:
    """The lab's exercise functions that the PPO loop calls (see the notebook for their contracts)."""

    response_logprobs: Callable
    kl_estimate: Callable
    shaped_rewards: Callable
    gae: Callable
    ppo_losses: Callable


@dataclass
class PPOConfig:
    steps: int = 60              # rollouts (one PPO update each)
    batch_size: int = 32         # prompts per rollout
    minibatch_size: int = 16     # rows per gradient step
    ppo_epochs: int = 2          # passes over each rollout
    lr: float = 2e-5             # policy learning rate
    value_lr: float = 1e-4       # value model learning rate (TRL uses one optimizer; two keep the scales apart)
    beta: float = 0.05           # KL penalty coefficient
    gamma: float = 1.0           # no discount within a reply (TRL's default)
    lam: float = 0.95            # GAE lambda (TRL's default)
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    max_grad_norm: float = 1.0
    max_new_tokens: int = 96
    temperature: float = 1.0
    kl_kind: str = "k3"          # the estimator used to *report* KL (the penalty is k1, as in TRL)
    seed: int = 0


def sequence_kl(fns, policy, ref_policy, batch: Rollout, kind: str = "k3") -> torch.Tensor:
    """(B,) KL(policy || reference) of each sampled reply: the per-token estimates summed over the reply."""
    with torch.no_grad():
        logp = fns.response_logprobs(policy, batch.input_ids, batch.attention_mask, batch.response_mask)
        ref_logp = fns.response_logprobs(ref_policy, batch.input_ids, batch.attention_mask, batch.response_mask)
        mask = batch.response_mask[:, 1:]
        return fns.kl_estimate(logp, ref_logp, mask, kind).sum(1)


def ppo_update(fns: PPOFunctions, policy, value_model, optimizers, batch: Rollout, old_logp, old_values,
               advantages, returns, cfg: PPOConfig, rng: random.Random) -> dict[str, float]:
    """`ppo_epochs` passes of minibatch gradient steps on one rollout; mean of each loss term."""
    mask = batch.response_mask[:, 1:]
    logs: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_fraction": [], "approx_kl": []}
    policy.train()
    value_model.train()
    for rows in rl.minibatches(batch.input_ids.shape[0], cfg.minibatch_size, cfg.ppo_epochs, rng):
        ids, att, resp = batch.input_ids[rows], batch.attention_mask[rows], batch.response_mask[rows]
        logp = fns.response_logprobs(policy, ids, att, resp)  # (b, T-1)
        values = value_model(ids, att)[:, :-1]  # (b, T-1): V of the state before each token
        out = fns.ppo_losses(logp, old_logp[rows], advantages[rows], values, old_values[rows], returns[rows],
                             mask[rows], cfg.clip_range, cfg.clip_range_value)
        rl.gradient_step(out[0] + out[1], [policy, value_model], optimizers, cfg.max_grad_norm)
        for key, value in zip(logs, out):
            logs[key].append(float(value.detach()))
    policy.eval()
    value_model.eval()
    return {k: sum(v) / len(v) for k, v in logs.items()}


def train_ppo(fns: PPOFunctions, policy, ref_policy, value_model, tokenizer, prompts: Sequence[Messages],
              reward_fn: Callable, cfg: PPOConfig, progress: bool = True) -> list[dict[str, float]]:
    """PPO with a KL penalty (Ziegler et al. 2019; InstructGPT, Ouyang et al. 2022, eq. 2), TRL's recipe.

    Each step: sample `batch_size` prompts, roll out, score with `reward_fn`, shape the rewards with the KL
    penalty, estimate advantages with GAE, then `ppo_epochs` of clipped updates in minibatches. The
    reference policy and the reward model stay frozen. Returns one dict per step: the reward model's
    score ("proxy"), the oracle's score and correctness, filler share, KL to the reference, the losses.
    """
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    optimizers = [torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0),
                  torch.optim.AdamW(value_model.parameters(), lr=cfg.value_lr, weight_decay=0.0)]
    history = []
    for step in tqdm(range(cfg.steps), desc=f"PPO beta={cfg.beta:g}", disable=not progress):
        batch = rollout(policy, tokenizer, rng.sample(list(prompts), cfg.batch_size), cfg.max_new_tokens,
                        cfg.temperature)
        mask = batch.response_mask[:, 1:]  # (B, T-1)
        with torch.no_grad():
            old_logp = fns.response_logprobs(policy, batch.input_ids, batch.attention_mask, batch.response_mask)
            ref_logp = fns.response_logprobs(ref_policy, batch.input_ids, batch.attention_mask, batch.response_mask)
            old_values = value_model(batch.input_ids, batch.attention_mask)[:, :-1] * mask
        scores = reward_fn(batch.prompts, batch.replies)  # (B,)
        rewards = fns.shaped_rewards(scores, old_logp, ref_logp, mask, cfg.beta)  # (B, T-1)
        advantages, returns = fns.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        kl = fns.kl_estimate(old_logp, ref_logp, mask, cfg.kl_kind).sum(1)  # (B,)
        losses = ppo_update(fns, policy, value_model, optimizers, batch, old_logp, old_values, advantages,
                            returns, cfg, rng)
        history.append({"step": step, "proxy": float(scores.mean()), "kl": float(kl.mean()),
                        **oracle_metrics(batch.prompts, batch.replies), **losses})
    return history


# ----------------------------------------------------------------------------------------------------
# DPO


@dataclass
class DPOFunctions:
    response_logprobs: Callable
    dpo_loss: Callable


@dataclass
class DPOConfig:
    steps: int = 200
    batch_size: int = 16   # pairs per step
    lr: float = 2e-5
    beta: float = 0.1
    loss_type: str = "sigmoid"
    max_grad_norm: float = 1.0
    seed: int = 0


def summed_logps(fns, model, batch: dict) -> torch.Tensor:
    """(B,) log-probability of each row's response: the per-token values summed over T-1."""
    return fns.response_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"]).sum(1)


def pairs_batch(tokenizer, pairs: Sequence[dict]) -> dict:
    """Chosen rows then rejected rows in one right-padded batch (TRL's layout), (2B, T) each."""
    prompts = [p["prompt"] for p in pairs]
    return pair_batch(tokenizer, prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])


def train_dpo(fns: DPOFunctions, policy, ref_policy, tokenizer, pairs: Sequence[dict], cfg: DPOConfig,
              evaluate: Callable | None = None, eval_every: int = 0, progress: bool = True) -> list[dict]:
    """DPO (Rafailov et al. 2023, eq. 7) on labelled pairs from a frozen reference: one loss per step.

    `evaluate(policy)` -> dict, if given, runs every `eval_every` steps and at the end (its keys join the
    step's record). Returns one dict per step: loss, implicit-reward accuracy and margin on the batch.
    """
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    history = []
    for step in tqdm(range(cfg.steps), desc=f"DPO beta={cfg.beta:g}", disable=not progress):
        batch = pairs_batch(tokenizer, rng.sample(list(pairs), cfg.batch_size))
        with torch.no_grad():
            ref_chosen, ref_rejected = summed_logps(fns, ref_policy, batch).chunk(2)  # (B,), (B,)
        policy.train()
        chosen, rejected = summed_logps(fns, policy, batch).chunk(2)
        losses, chosen_rewards, rejected_rewards = fns.dpo_loss(chosen, rejected, ref_chosen, ref_rejected,
                                                                cfg.beta, cfg.loss_type)
        optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        optimizer.step()
        policy.eval()
        record = {"step": step, "loss": float(losses.mean().detach()),
                  "reward_accuracy": float((chosen_rewards > rejected_rewards).float().mean()),
                  "reward_margin": float((chosen_rewards - rejected_rewards).mean())}
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == cfg.steps - 1):
            record.update(evaluate(policy))
        history.append(record)
    return history


# ----------------------------------------------------------------------------------------------------
# Evaluation on held-out prompts


def evaluate_policy(fns, policy, ref_policy, tokenizer, prompts: Sequence[Messages], reward_fn: Callable,
                    max_new_tokens: int = 96, kind: str = "k3", seed: int = 0) -> dict[str, float]:
    """One sampled reply per prompt: proxy (reward model), oracle, correctness, filler share and KL."""
    torch.manual_seed(seed)
    batch = rollout(policy, tokenizer, prompts, max_new_tokens)
    kl = sequence_kl(fns, policy, ref_policy, batch, kind)
    return {"proxy": float(reward_fn(batch.prompts, batch.replies).mean()), "kl": float(kl.mean()),
            **oracle_metrics(batch.prompts, batch.replies)}


def best_of_n_kl(n: int) -> float:
    """KL of best-of-n sampling to the base policy: log n - (n - 1) / n (Stiennon et al. 2020, app. G.3)."""
    return math.log(n) - (n - 1) / n


# ----------------------------------------------------------------------------------------------------
# Test helper: a student function must not call the library it is compared with


@contextlib.contextmanager
def blocked_imports(*prefixes: str) -> Iterator[None]:
    """Inside, importing any module named `prefix` or `prefix.*` raises ImportError."""
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            raise ImportError(f"{name} may not be used here: write the computation yourself")
        return real_import(name, *args, **kwargs)

    builtins.__import__ = guarded
    try:
        yield
    finally:
        builtins.__import__ = real_import


def uses_module(fn: Callable, prefix: str) -> bool:
    """True if `fn` reaches module `prefix` ("trl"): imports in its body, names bound to the module or to
    what it defines, helpers it calls (`ptlab.checks.library_uses`, the one static check of the course)."""
    return bool(checks.library_uses(fn, prefix))
