"""RL support shared by lab 04 (PPO, DPO) and lab 07 (GRPO): the parts of an RL loop students do not write.

Rollouts with the KV cache (one or G samples per prompt), the padded batch layout, minibatch order, the
optimizer step and the per-step report (length, entropy, KL). The labs' modules (`ptlab.rlhf`, `ptlab.rlvr`)
build their loops from these and take the students' functions (log-probs, advantages, losses) as arguments,
so nothing here computes a log-probability, an advantage or a loss by itself.

Layout: a batch is `input_ids` (B, T) = left-padded prompt + response + right padding, `attention_mask`
(B, T), and `response_mask` (B, T), 1 on the response tokens (the end-of-turn token included). Per-token
tensors are (B, T-1), aligned with `logits[:, :-1]`: entry t belongs to the token `input_ids[:, t + 1]`, so
the per-token response mask is `response_mask[:, 1:]`. A rollout with G samples per prompt keeps each
prompt's G rows contiguous (rows g*G .. g*G+G-1), as TRL's GRPOTrainer does.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

Messages = list[dict]

# ----------------------------------------------------------------------------------------------------
# Tokenising prompts and pairs


def prompt_ids(tokenizer, prompts: Sequence[Messages]) -> list[list[int]]:
    """Each prompt's chat rendering up to and including the assistant header."""
    return [list(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]) for p in prompts]


def pad(rows: Sequence[Sequence[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad lists of ids to one (B, T) tensor on the "left" or "right"; returns (ids, mask)."""
    if side not in ("left", "right"):
        raise ValueError(f"side should be 'left' or 'right', got {side!r}")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        cols = slice(T - len(r), T) if side == "left" else slice(0, len(r))
        ids[b, cols] = torch.tensor(list(r), dtype=torch.long)
        mask[b, cols] = 1
    return ids, mask


def reply_ids(tokenizer, prompt: Messages, reply: str) -> tuple[list[int], list[int]]:
    """(prompt ids, reply ids with its end-of-turn token) from the chat template, for any tokenizer."""
    head = prompt_ids(tokenizer, [prompt])[0]
    full = list(tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": reply}],
                                              tokenize=True, return_dict=True)["input_ids"])
    if full[: len(head)] != head:
        raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
    return head, full[len(head):]


def pair_batch(tokenizer, prompts: Sequence[Messages], replies: Sequence[str], side: str = "right") -> dict:
    """Prompt + reply per row, padded: input_ids, attention_mask, response_mask, all (B, T)."""
    rows, starts = [], []
    for prompt, reply in zip(prompts, replies, strict=True):
        head, tail = reply_ids(tokenizer, prompt, reply)
        rows.append(head + tail)
        starts.append(len(head))
    input_ids, attention_mask = pad(rows, tokenizer.pad_token_id, side)
    T = input_ids.shape[1]
    response_mask = torch.zeros_like(attention_mask)
    for b, (row, start) in enumerate(zip(rows, starts)):
        offset = T - len(row) if side == "left" else 0
        response_mask[b, offset + start: offset + len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def prepare_chat_tokenizer(tokenizer):
    """Give a tokenizer a chat template (ChatML if it has none) and make its end-of-turn token the EOS,
    so that `generate` stops where a reply ends. Returns the tokenizer."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    marker = "Zq7marker"  # any text the template copies verbatim
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    after = text[text.index(marker) + len(marker):]
    specials = sorted(tokenizer.all_special_tokens + list(tokenizer.get_added_vocab()), key=len, reverse=True)
    token = next((t for t in specials if t and after.startswith(t)), None)
    if token is None:
        raise ValueError(f"the chat template writes {after[:20]!r} after a reply, not a special token; "
                         "set tokenizer.eos_token to the model's end-of-turn token by hand")
    tokenizer.eos_token = token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = token
    return tokenizer


# ----------------------------------------------------------------------------------------------------
# Rollouts


@dataclass
class Rollout:
    """Sampled replies: input_ids, attention_mask, response_mask (B, T); prompts and reply texts (B each).

    `group_size` G: each prompt's G samples are contiguous rows; B = number of prompts * G.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompts: list[Messages]
    replies: list[str]
    group_size: int = 1

    def select(self, rows: Sequence[int]) -> Rollout:
        """The given rows (group_size 1: a selection need not keep whole groups)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        return Rollout(self.input_ids[idx], self.attention_mask[idx], self.response_mask[idx],
                       [self.prompts[i] for i in rows], [self.replies[i] for i in rows])

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) reply length in tokens, the end-of-turn token included."""
        return self.response_mask.sum(1)


@torch.no_grad()
def sample(policy, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, temperature: float, eos_id: int,
           pad_id: int) -> torch.Tensor:
    """Sample up to `max_new_tokens` tokens after left-padded prompts, with the KV cache; pure sampling.

    A row leaves the batch (and the cache) once it writes `eos_id`, so the rare long reply costs one row's
    forward per token, not the whole batch's, as it would with `generate`. Args: ids, mask (B, P).
    Returns (B, N) tokens, N the longest reply's length, `pad_id` after each row's end-of-turn token.
    """
    B = ids.shape[0]
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=ids.device)
    live = torch.arange(B, device=ids.device)  # rows still writing
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)  # left padding: count real tokens only
    out = policy(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    cache, logits, next_pos = out.cache, out.logits[:, -1], position_ids[:, -1:] + 1
    for t in range(max_new_tokens):
        token = torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1)  # (b, 1)
        tokens[live, t] = token[:, 0]
        going = token[:, 0] != eos_id
        if t + 1 == max_new_tokens or not bool(going.any()):
            return tokens[:, : t + 1]
        if not bool(going.all()):
            keep = going.nonzero()[:, 0]
            live, token, mask, next_pos = live[keep], token[keep], mask[keep], next_pos[keep]
            for layer in cache.layers:
                layer.batch_select_indices(keep)
        mask = torch.cat([mask, torch.ones_like(token)], dim=1)  # (b, P + t + 1)
        logits = policy(input_ids=token, attention_mask=mask, position_ids=next_pos, cache=cache,
                        use_cache=True).logits[:, -1]
        next_pos = next_pos + 1
    return tokens


@torch.no_grad()
def rollout(policy, tokenizer, prompts: Sequence[Messages], max_new_tokens: int = 96,
            temperature: float = 1.0, group_size: int = 1) -> Rollout:
    """Sample `group_size` replies per prompt (pure sampling: no top-k, no top-p, so the KL terms are exact).

    Prompts are left-padded so that every reply starts in the same column; after a row's end-of-turn
    token comes padding, which the response mask leaves out. Rows: each prompt's samples together,
    B = len(prompts) * group_size.
    """
    if group_size < 1:
        raise ValueError(f"group_size should be >= 1, got {group_size}")
    prompts = [p for p in prompts for _ in range(group_size)]
    device = next(policy.parameters()).device
    ids, mask = pad(prompt_ids(tokenizer, prompts), tokenizer.pad_token_id, "left")  # (B, P)
    generated = sample(policy, ids.to(device), mask.to(device), max_new_tokens, temperature,
                       tokenizer.eos_token_id, tokenizer.pad_token_id).cpu()  # (B, N)
    is_eos = generated == tokenizer.eos_token_id
    # a token is part of the reply if no end-of-turn token came strictly before it
    eos_before = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    response = (~eos_before).long()  # (B, N)
    response_mask = torch.cat([torch.zeros_like(mask), response], dim=1)  # (B, T), T = P + N
    attention_mask = torch.cat([mask, response], dim=1)
    input_ids = torch.cat([ids, generated], dim=1).masked_fill(attention_mask == 0, tokenizer.pad_token_id)
    replies = [tokenizer.decode(g[r.bool()], skip_special_tokens=True) for g, r in zip(generated, response)]
    return Rollout(input_ids, attention_mask, response_mask, prompts, replies, group_size)


# ----------------------------------------------------------------------------------------------------
# Forward passes on the columns a batch uses


def used_columns(attention_mask: torch.Tensor) -> slice:
    """The columns [lo, hi) of a (B, T) batch where some row has a real token. Cutting a batch to them
    changes no per-token value (padding is masked out anyway): its per-token tensors are then
    columns [lo, hi - 1) of the full batch's (B, T-1) ones."""
    used = attention_mask.bool().any(0).nonzero()[:, 0]
    return slice(int(used[0]), int(used[-1]) + 1)


def per_token_in_chunks(fn, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor,
                        chunk_size: int = 8) -> torch.Tensor:
    """`fn(input_ids, attention_mask, response_mask)` -> (b, t-1) per-token values, run on chunks of rows of
    similar reply length, each cut to its used columns, and put back as (B, T-1), 0 outside each chunk's
    columns. In a rollout one long reply makes T long for every row; here only its chunk pays for it.
    """
    order = sorted(range(input_ids.shape[0]), key=lambda b: int(response_mask[b].sum()))
    out = None
    for i in range(0, len(order), chunk_size):
        rows = torch.tensor(order[i: i + chunk_size])
        cols = used_columns(attention_mask[rows])
        part = fn(input_ids[rows, cols], attention_mask[rows, cols], response_mask[rows, cols])  # (b, t-1)
        if out is None:
            out = part.new_zeros((input_ids.shape[0], input_ids.shape[1] - 1))
        out[rows, cols.start: cols.stop - 1] = part
    return out


# ----------------------------------------------------------------------------------------------------
# Updates and the per-step report


def minibatches(n: int, size: int, epochs: int, rng: random.Random) -> Iterator[torch.Tensor]:
    """Row indices for `epochs` passes over n rows in shuffled minibatches of at most `size` rows."""
    for _ in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for i in range(0, n, size):
            yield torch.tensor(order[i: i + size])


def gradient_step(loss: torch.Tensor, models: Sequence[torch.nn.Module], optimizers: Sequence[torch.optim.Optimizer],
                  max_grad_norm: float) -> None:
    """Backward, clip each model's gradient norm to `max_grad_norm` separately, step every optimizer."""
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for model in models:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    for opt in optimizers:
        opt.step()


def sampled_entropy(logp: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean -log p of the sampled reply tokens, (B, T-1) each: an unbiased estimate of the policy's
    per-token entropy when the tokens were sampled from it at temperature 1 (no extra forward pass)."""
    return float(-(logp * mask).sum() / mask.sum().clamp(min=1))


def mean_records(records: Sequence[dict[str, float]]) -> dict[str, float]:
    """Key-wise mean of a list of dicts with the same keys (e.g. one per minibatch)."""
    return {k: sum(r[k] for r in records) / len(records) for k in records[0]}


# ----------------------------------------------------------------------------------------------------
# Best-of-n on an empirical reply distribution


def best_of_n_weights(rewards: torch.Tensor, n: int) -> torch.Tensor:
    """Probability that best-of-n picks each of M samples, when its n candidates are drawn with replacement
    from those M samples (the empirical distribution of one prompt's replies).

    The best of n draws has reward <= r with probability F(r)^n, F the empirical CDF, so a reward level r
    gets F(r)^n - F(r-)^n; samples tied at one reward share their level's mass equally (ties broken at
    random). Args: rewards (M,). Returns (M,) float64 weights summing to 1; n = 1 gives 1/M each.
    """
    if n < 1:
        raise ValueError(f"n should be >= 1, got {n}")
    if rewards.dim() != 1 or rewards.numel() == 0:
        raise ValueError(f"rewards should be a non-empty (M,) tensor, got {tuple(rewards.shape)}")
    if rewards.isnan().any():
        raise ValueError("rewards should be numbers, got NaN")
    r = rewards.double()
    M = r.numel()
    ordered = r.sort().values  # counting by binary search: O(M log M), not an (M, M) comparison
    at_most = torch.searchsorted(ordered, r, right=True).double() / M  # (M,) F(r_i)
    below = torch.searchsorted(ordered, r).double() / M                # (M,) F(r_i-)
    tied = M * (at_most - below)                                        # (M,) samples sharing r_i
    return (at_most ** n - below ** n) / tied


def empirical_kl(weights: torch.Tensor, keys: Sequence) -> float:
    """KL(q || p) in nats between a reweighting q of M samples and their empirical distribution p (1/M each),
    both summed over equal keys (e.g. identical reply texts), so a policy that repeats its replies is
    measured on its distribution over replies, not over sample indices. Args: weights (M,) summing to 1."""
    if len(keys) != weights.numel():
        raise ValueError(f"keys ({len(keys)}) and weights ({weights.numel()}) should have one entry per sample")
    q: dict = {}
    p: dict = {}
    for key, w in zip(keys, weights.tolist()):
        q[key] = q.get(key, 0.0) + w
        p[key] = p.get(key, 0.0) + 1 / len(keys)
    return sum(qk * math.log(qk / p[k]) for k, qk in q.items() if qk > 0)


def best_of_n_curve(replies: Sequence[Sequence[str]], rewards: torch.Tensor, values: dict[str, torch.Tensor],
                    ns: Sequence[int]) -> list[dict[str, float]]:
    """Best-of-n by `rewards` on M samples per prompt, for each n, in expectation over the empirical
    distribution (no second sampling): the KL to that distribution (`empirical_kl`, equal replies pooled)
    and the mean of each of `values` under best-of-n, averaged over the P prompts.

    Args: replies P lists of M texts; rewards (P, M); values name -> (P, M) (e.g. an oracle's scores).
    Returns one dict per n: {"n", "kl", name: mean, ...}.
    """
    P, M = rewards.shape
    if len(replies) != P or any(len(r) != M for r in replies):
        raise ValueError(f"replies should be {P} lists of {M} texts, like rewards {tuple(rewards.shape)}")
    curve = []
    for n in ns:
        weights = [best_of_n_weights(rewards[p], n) for p in range(P)]  # P x (M,)
        row = {"n": n, "kl": sum(empirical_kl(w, replies[p]) for p, w in enumerate(weights)) / P}
        for name, v in values.items():
            row[name] = sum(float(w @ v[p].double()) for p, w in enumerate(weights)) / P
        curve.append(row)
    return curve
