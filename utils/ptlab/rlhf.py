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
from functools import partial

import torch
from torch import nn

from ptlab import checks, rl
from ptlab.rl import (  # noqa: F401
    CHATML_TEMPLATE,
    Messages,
    Rollout,
    best_of_n_curve,
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


def reward_scorer(reward_model, tokenizer, batch_size: int = 16) -> Callable[[Sequence[Messages], Sequence[str]], torch.Tensor]:
    """A function (prompts, replies) -> (B,) reward-model scores of the full chats, right-padded."""
    device = next(reward_model.parameters()).device

    @torch.no_grad()
    def score(prompts: Sequence[Messages], replies: Sequence[str]) -> torch.Tensor:
        # chunks of similar length, so that one long reply does not pad every row of the batch
        order = sorted(range(len(prompts)), key=lambda i: len(replies[i]) + len(prompts[i][-1]["content"]))
        out = torch.zeros(len(prompts))
        for i in range(0, len(order), batch_size):
            rows = order[i: i + batch_size]
            batch = pair_batch(tokenizer, [prompts[j] for j in rows], [replies[j] for j in rows], "right")
            logits = reward_model(input_ids=batch["input_ids"].to(device),
                                  attention_mask=batch["attention_mask"].to(device)).logits  # (b, 1)
            out[rows] = logits[:, 0].float().cpu()
        return out

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

    From a reward model (InstructGPT initialises its value model from its reward model, Ouyang et al.
    2022): its trunk, and its score layer applied at every token instead of only the last one. From a causal LM (when the reward model reads another tokenizer, as on
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
    """Lab 04's full-mode PPO recipe on the tiny world (its defaults); the lab changes beta and the reward."""

    steps: int = 50              # rollouts (one PPO update each)
    batch_size: int = 16         # prompts per rollout
    minibatch_size: int = 16     # rows per gradient step
    ppo_epochs: int = 2          # passes over each rollout
    lr: float = 4e-5             # policy learning rate
    value_lr: float = 1e-4       # value model learning rate (its own optimizer: the two scales differ)
    beta: float = 0.5            # KL penalty coefficient, reward units per nat (the start value with kl_target)
    kl_target: float | None = None  # nats per reply: adapt beta toward it (Ziegler et al. 2019, eq. 2); None: fixed
    kl_horizon: int = 10         # the adaptive controller's horizon, in steps (its K_beta = 1 / horizon)
    whiten_scores: bool = False  # scores (B,) -> (s - mean) / std over each rollout, so that beta is in units of
    #                              the reward's spread whatever its scale (False: beta in the reward's own units)
    gamma: float = 1.0           # no discount within a reply
    lam: float = 0.95            # GAE lambda
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    max_grad_norm: float = 1.0
    max_new_tokens: int = 96
    temperature: float = 1.0
    kl_kind: str = "k3"          # the estimator used to *report* KL (the penalty is k1, the objective's log-ratio)
    seed: int = 0


def adaptive_beta(beta: float, kl: float, kl_target: float, horizon: int) -> float:
    """The next KL coefficient of Ziegler et al. 2019 (eq. 2): beta * (1 + e / horizon), with the error
    e = clip((kl - kl_target) / kl_target, -0.2, 0.2): beta grows while the measured KL is above target."""
    error = min(max((kl - kl_target) / kl_target, -0.2), 0.2)
    return beta * (1 + error / horizon)


def whiten_scores(scores: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B,) scores -> (scores - mean) / std over the batch; all-equal scores give zeros."""
    return (scores - scores.mean()) / (scores.std() + eps)


def per_token(fn: Callable, batch: Rollout) -> torch.Tensor:
    """`fn(input_ids, attention_mask, response_mask)` -> (B, T-1) on a rollout, by chunks of similar reply
    length cut to their columns (`rl.per_token_in_chunks`): the same values, a fraction of the padding."""
    return rl.per_token_in_chunks(fn, batch.input_ids, batch.attention_mask, batch.response_mask)


def sequence_kl(fns, policy, ref_policy, batch: Rollout, kind: str = "k3") -> torch.Tensor:
    """(B,) KL(policy || reference) of each sampled reply: the per-token estimates summed over the reply."""
    with torch.no_grad():
        logp, ref_logp = (per_token(partial(fns.response_logprobs, model), batch) for model in (policy, ref_policy))
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
        cols = rl.used_columns(batch.attention_mask[rows])  # this minibatch's columns: [lo, hi)
        ids, att, resp = (x[rows, cols] for x in (batch.input_ids, batch.attention_mask, batch.response_mask))
        logp = fns.response_logprobs(policy, ids, att, resp)  # (b, t-1)
        values = value_model(ids, att)[:, :-1]  # (b, t-1): V of the state before each token
        token_cols = slice(cols.start, cols.stop - 1)  # the per-token columns of the cut batch
        out = fns.ppo_losses(logp, *(x[rows, token_cols] for x in (old_logp, advantages)), values,
                             *(x[rows, token_cols] for x in (old_values, returns, mask)), cfg.clip_range,
                             cfg.clip_range_value)
        rl.gradient_step(out[0] + out[1], [policy, value_model], optimizers, cfg.max_grad_norm)
        for key, value in zip(logs, out):
            logs[key].append(float(value.detach()))
    policy.eval()
    value_model.eval()
    return {k: sum(v) / len(v) for k, v in logs.items()}


def train_ppo(fns: PPOFunctions, policy, ref_policy, value_model, tokenizer, prompts: Sequence[Messages],
              reward_fn: Callable, cfg: PPOConfig, progress: bool = True, evaluate: Callable | None = None,
              eval_every: int = 0) -> list[dict[str, float]]:
    """PPO with a KL penalty (Ziegler et al. 2019; InstructGPT, Ouyang et al. 2022, eq. 2).

    Each step: sample `batch_size` prompts, roll out, score with `reward_fn` (whitened over the rollout if
    `cfg.whiten_scores`), shape the rewards with the KL penalty, estimate advantages with GAE, then
    `ppo_epochs` of clipped updates in minibatches. The reference policy and the reward model stay
    frozen. With `cfg.kl_target`, beta adapts after each step (`adaptive_beta`). `evaluate(policy)` ->
    dict, if given, runs after every `eval_every`-th update and after the last (its keys join that step's
    record with an "eval_" prefix). Returns one dict per step: the raw score ("proxy"), the oracle's score
    and correctness, filler share, KL to the reference, beta, the losses.
    """
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    optimizers = [torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0),
                  torch.optim.AdamW(value_model.parameters(), lr=cfg.value_lr, weight_decay=0.0)]
    beta = cfg.beta
    history = []
    for step in tqdm(range(cfg.steps), desc=f"PPO beta={cfg.beta:g}", disable=not progress):
        record: dict[str, float] = {"step": step, "beta": beta}
        batch = rollout(policy, tokenizer, rng.sample(list(prompts), cfg.batch_size), cfg.max_new_tokens,
                        cfg.temperature)
        mask = batch.response_mask[:, 1:]  # (B, T-1)
        with torch.no_grad():
            old_logp, ref_logp = (per_token(partial(fns.response_logprobs, model), batch) for model in (policy, ref_policy))
            old_values = per_token(lambda ids, att, resp: value_model(ids, att)[:, :-1], batch) * mask
        scores = reward_fn(batch.prompts, batch.replies)  # (B,)
        rewards = fns.shaped_rewards(whiten_scores(scores) if cfg.whiten_scores else scores, old_logp, ref_logp,
                                     mask, beta)  # (B, T-1)
        advantages, returns = fns.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        kl = fns.kl_estimate(old_logp, ref_logp, mask, cfg.kl_kind).sum(1)  # (B,)
        losses = ppo_update(fns, policy, value_model, optimizers, batch, old_logp, old_values, advantages,
                            returns, cfg, rng)
        if cfg.kl_target is not None:
            beta = adaptive_beta(beta, float(kl.mean()), cfg.kl_target, cfg.kl_horizon)
        record.update({"proxy": float(scores.mean()), "kl": float(kl.mean()),
                       **oracle_metrics(batch.prompts, batch.replies), **losses})
        if evaluate is not None and eval_every and ((step + 1) % eval_every == 0 or step == cfg.steps - 1):
            record.update({f"eval_{k}": v for k, v in evaluate(policy).items()})  # after this step's update
        history.append(record)
    return history


# ----------------------------------------------------------------------------------------------------
# DPO


@dataclass
class DPOFunctions:
    response_logprobs: Callable
    dpo_loss: Callable


@dataclass
class DPOConfig:
    """Lab 04's full-mode DPO on the tiny world (120 steps of 16 pairs)."""

    steps: int = 120
    batch_size: int = 16   # pairs per step
    lr: float = 5e-5
    beta: float = 0.5
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
                    max_new_tokens: int = 96, kind: str = "k3", seed: int = 0, samples: int = 1) -> dict[str, float]:
    """`samples` sampled replies per prompt: mean proxy (reward model), oracle, correctness, filler share and
    KL to the reference (per reply, the per-token estimates summed)."""
    torch.manual_seed(seed)
    batch = rollout(policy, tokenizer, prompts, max_new_tokens, group_size=samples)
    kl = sequence_kl(fns, policy, ref_policy, batch, kind)
    return {"proxy": float(reward_fn(batch.prompts, batch.replies).mean()), "kl": float(kl.mean()),
            **oracle_metrics(batch.prompts, batch.replies)}


def best_of_n_kl(n: int) -> float:
    """log n - (n - 1) / n: an upper bound on the KL of best-of-n sampling to the base policy (Beirami et al.
    2024), reached only when no two samples are alike (Stiennon et al. 2020, app. G.3). For the KL on a
    policy's actual replies, see `rl.best_of_n_curve`."""
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
