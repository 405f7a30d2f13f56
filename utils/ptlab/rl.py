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
def rollout(policy, tokenizer, prompts: Sequence[Messages], max_new_tokens: int = 96,
            temperature: float = 1.0, group_size: int = 1) -> Rollout:
    """Sample `group_size` replies per prompt (pure sampling: no top-k, no top-p, so the KL terms are exact).

    Prompts are left-padded so that every reply starts in the same column; after a row's end-of-turn
    token, `generate` writes padding, which the response mask leaves out. Rows: each prompt's samples
    together, B = len(prompts) * group_size.
    """
    if group_size < 1:
        raise ValueError(f"group_size should be >= 1, got {group_size}")
    prompts = [p for p in prompts for _ in range(group_size)]
    device = next(policy.parameters()).device
    ids, mask = pad(prompt_ids(tokenizer, prompts), tokenizer.pad_token_id, "left")  # (B, P)
    out = policy.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                          temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id).cpu()  # (B, T)
    generated = out[:, ids.shape[1]:]  # (B, G)
    is_eos = generated == tokenizer.eos_token_id
    # a token is part of the reply if no end-of-turn token came strictly before it
    eos_before = (is_eos.long().cumsum(1) - is_eos.long()) > 0
    response = (~eos_before).long()  # (B, G)
    response_mask = torch.cat([torch.zeros_like(mask), response], dim=1)  # (B, T)
    attention_mask = torch.cat([mask, response], dim=1)
    input_ids = out.masked_fill((attention_mask == 0), tokenizer.pad_token_id)
    replies = [tokenizer.decode(g[r.bool()], skip_special_tokens=True) for g, r in zip(generated, response)]
    return Rollout(input_ids, attention_mask, response_mask, prompts, replies, group_size)


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
