"""Support code for lab 05 (LoRA): the training loop, the accuracy probe and a parameter counter.

None of the lab's graded functions live here (`lora_param_count`, `transformer_param_counts`,
`LoRALinear`, `add_lora`, `low_rank_approx`): students write those. This module only runs the
experiments around them, the same way for full fine-tuning, peft and the students' own LoRA.

Data: rows of a chat data set with `prompt_messages` (the conversation up to the assistant's turn) and
`answer` (the assistant's reply), as `ptlab.tinyworld.chat_dataset` makes them. Only the answer tokens
(and the token that ends the turn) are trained on and scored.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

IGNORE = -100  # label id that torch's cross-entropy skips (prompt and padding positions)


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with `requires_grad=True` (what an optimizer would update)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def encode_chat(tokenizer, prompt_messages: list[dict], answer: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt + answer + end of turn, and labels that are `IGNORE` on the prompt.

    The prompt is rendered with the chat template and the generation prompt, exactly what a model sees
    at inference; the answer is followed by the tokenizer's end-of-turn token (`eos_token`).
    """
    prompt = tokenizer.apply_chat_template(prompt_messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + answer_ids
    labels = [IGNORE] * len(prompt_ids) + answer_ids
    return ids, labels


def collate(tokenizer, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask and labels, each (B, T_max)."""
    pairs = [encode_chat(tokenizer, row["prompt_messages"], row["answer"]) for row in rows]
    width = max(len(ids) for ids, _ in pairs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(pairs), width), pad, dtype=torch.long)  # (B, T)
    labels = torch.full((len(pairs), width), IGNORE, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)  # (B, T)
    for i, (ids, lab) in enumerate(pairs):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def train(
    model: nn.Module,
    tokenizer,
    rows: Sequence[dict],
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 16,
    seed: int = 0,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """AdamW on the answer tokens for `steps` steps over shuffled `rows`; returns the loss per step.

    Only parameters with `requires_grad=True` are given to the optimizer, so the same loop trains a full
    model, a peft model or a model with hand-written LoRA layers.
    """
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; did you freeze everything?")
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    order: list[int] = []
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        if len(order) < batch_size:  # a new shuffled pass over the data
            order += rng.sample(range(len(rows)), len(rows))
        batch = collate(tokenizer, [rows[i] for i in order[:batch_size]])
        del order[:batch_size]
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, tokenizer, rows: Sequence[dict], batch_size: int = 64) -> float:
    """Share of rows whose answer greedy decoding reproduces exactly, end-of-turn token included.

    Computed in one teacher-forced pass: greedy decoding writes the answer exactly if and only if the
    argmax at every answer position is the answer's next token (each step then sees the right prefix).
    """
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]  # list or Dataset
        batch = collate(tokenizer, chunk)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        predicted = logits[:, :-1].argmax(-1)  # (B, T-1): the guess for the token at t+1
        target = batch["labels"][:, 1:]  # (B, T-1)
        scored = target != IGNORE
        right = (predicted == target) | ~scored
        correct += int(right.all(dim=1).sum())
    return correct / max(1, len(rows))
