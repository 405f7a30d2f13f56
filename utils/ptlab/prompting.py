"""Support for lab 01 (prompting and decoding): batched decoding with a pluggable next-token rule,
random-label demonstrations, error bars, a guard that keeps transformers' own decoding out of a test, and
the truncation tests' reference masks.

Nothing here is an exercise's solution. `decode_batch` lets transformers' `generate` run the loop (left
padding, KV cache, stopping) and asks a *rule* for every token, so the lab's experiments run many
prompts at once while the student's `sample_next_token` still decides each token.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator, Sequence

import torch

NextTokenRule = Callable[[torch.Tensor], torch.Tensor]  # logits (B, V) float -> token ids (B,) int64


# ----------------------------------------------------------------------------------------------------
# Batched decoding with a pluggable rule


class _RuleProcessor:
    """A transformers logits processor that lets `rule` choose the token: the chosen id keeps score 0,
    every other id gets -inf, so greedy search then picks exactly the rule's choice."""

    def __init__(self, rule: NextTokenRule):
        self.rule = rule

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = self.rule(scores)  # (B,)
        if chosen.shape != scores.shape[:1]:
            raise ValueError(f"the next-token rule should return ({scores.shape[0]},) ids, got {tuple(chosen.shape)}")
        out = torch.full_like(scores, float("-inf"))  # (B, V)
        return out.scatter(-1, chosen.long().view(-1, 1).to(scores.device), 0.0)


def cut_at_stop(text: str, stop_strings: Sequence[str] = ()) -> str:
    """`text` up to and including the earliest of `stop_strings` (all of it if none occurs)."""
    ends = [text.index(s) + len(s) for s in stop_strings if s in text]
    return text[: min(ends)] if ends else text


@torch.no_grad()
def decode_batch(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, rule: NextTokenRule | None = None,
                 stop_strings: Sequence[str] = (), batch_size: int = 64) -> list[str]:
    """The continuation text of each prompt, decoded in left-padded batches by transformers' `generate`.

    Args:
        prompts: N prompt strings (tokenised with the tokenizer's usual special tokens).
        max_new_tokens: length limit of each continuation, in tokens.
        rule: picks each next token from the logits (B, V); None is greedy (argmax).
        stop_strings: a continuation ends after the first of these (kept in the text); EOS also ends it.
    Returns:
        N strings, special tokens removed.
    """
    from transformers import LogitsProcessorList

    processors = LogitsProcessorList([_RuleProcessor(rule)]) if rule is not None else None
    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # every prompt ends in the last column
    texts: list[str] = []
    try:
        for first in range(0, len(prompts), batch_size):
            batch = tokenizer(list(prompts[first : first + batch_size]), return_tensors="pt", padding=True)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, logits_processor=processors,
                                 pad_token_id=tokenizer.pad_token_id, stop_strings=list(stop_strings) or None,
                                 tokenizer=tokenizer if stop_strings else None)
            new = out[:, batch["input_ids"].shape[1] :]  # (B, new)
            texts += [cut_at_stop(t, stop_strings) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return texts


# ----------------------------------------------------------------------------------------------------
# Demonstrations with random labels (Min et al., 2022)


def with_random_labels(prompt: str, rng: random.Random) -> str:
    """The same few-shot prompt with its demonstrations' outputs shuffled among them (no output stays put).

    The input words, the output words and the format are unchanged; only the input -> output mapping is
    broken: Min et al. (2022), "Rethinking the Role of Demonstrations", Section 4.
    Args:
        prompt: a tiny-world few-shot prompt, 'x1 -> y1\\n...xk -> yk\\nquery -> ' (k >= 2 to shuffle).
    """
    *demos, query = prompt.split("\n")
    pairs = [line.split(" -> ", 1) for line in demos]
    if len(pairs) < 2:
        return prompt
    outputs = [y for _, y in pairs]
    shift = rng.randrange(1, len(outputs))  # a rotation by 1..k-1 moves every output
    outputs = outputs[shift:] + outputs[:shift]
    return "".join(f"{x} -> {y}\n" for (x, _), y in zip(pairs, outputs)) + query


# ----------------------------------------------------------------------------------------------------
# Error bars


def mean_and_stderr(hits: Sequence[bool | float]) -> tuple[float, float]:
    """Mean of n hits and its standard error sqrt(m (1 - m) / n) (binomial; 0 for n = 1)."""
    n = len(hits)
    if n == 0:
        raise ValueError("hits is empty: there is nothing to average")
    m = sum(float(h) for h in hits) / n
    return m, math.sqrt(max(m * (1 - m), 0.0) / n) if n > 1 else 0.0


# ----------------------------------------------------------------------------------------------------
# A guard for test cells: the reference must not be the implementation


def _raiser(what: str) -> Callable:
    def refuse(*args, **kwargs):
        raise RuntimeError(f"this exercise calls {what}: the test compares with it, so write the computation "
                           "yourself with torch operations")

    return refuse


@contextlib.contextmanager
def references_disabled() -> Iterator[None]:
    """Inside the block, transformers' warpers and `generate` raise: a student function that only wraps
    the reference it is graded against fails, whatever name it imported the class under."""
    from transformers import (
        GenerationMixin,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    targets = [(cls, "__call__", f"transformers' {cls.__name__}") for cls in
               (TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, TemperatureLogitsWarper)]
    targets.append((GenerationMixin, "generate", "model.generate"))
    saved = [(obj, name, obj.__dict__[name]) for obj, name, _ in targets]
    try:
        for obj, name, what in targets:
            setattr(obj, name, _raiser(what))
        yield
    finally:
        for obj, name, original in saved:
            setattr(obj, name, original)


# ----------------------------------------------------------------------------------------------------
# The truncation tests' references: here, not in a notebook cell a student can edit


def kept(filtered: torch.Tensor) -> torch.Tensor:
    """The tokens a truncation rule kept: the finite entries of its output logits (..., V) -> bool (..., V)."""
    return torch.isfinite(filtered)


def warper_mask(warper: Callable, logits: torch.Tensor) -> torch.Tensor:
    """Which tokens a transformers logits warper (`TopKLogitsWarper(k)`, ...) keeps, for logits of any shape.

    Args:
        warper: called as warper(input_ids, scores (B, V)), as transformers' warpers are.
        logits: (..., V) float tensor; it is not modified.
    Returns:
        (..., V) bool tensor, True where the warper leaves the logit finite.
    """
    flat = logits.reshape(-1, logits.shape[-1])  # (B, V): warpers take one row per sequence
    return kept(warper(None, flat.clone())).reshape(logits.shape)  # a copy: the caller's logits stay as they are


# ----------------------------------------------------------------------------------------------------
# A small subword model for tests


_BPE_TEXT = (
    "The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid. "
    "London is the capital of England. Capital: Paris, Rome, Madrid, London. Paris is big and Rome is old. "
    "The answer is 42. The answer is Paris. Is it Paris or Rome? It is Paris."
)


def toy_bpe_model(seed: int = 0):
    """A randomly initialised two-layer Llama with a byte-level BPE tokenizer trained on a few sentences.

    For tests that must hold for subword tokenizers ("is " + "Paris" merges into " Paris"); offline, < 1 s.
    Returns:
        (model, tokenizer): model in eval mode; tokenizer with pad "<pad>" and eos "<eos>", no BOS.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator([_BPE_TEXT] * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config).eval(), tokenizer
