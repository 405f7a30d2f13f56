"""Unit tests of ptlab.lora, the non-graded support code of lab 05 (tiny seeded fixtures, CPU, seconds)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ptlab import lora, tinyworld


@pytest.fixture(scope="module")
def tokenizer():
    return tinyworld.hf_tokenizer()


@pytest.fixture(scope="module")
def rows():
    return [tinyworld.chat_dataset("train", n=6, tasks=["upper"])[i] for i in range(6)]


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config)


class Oracle(nn.Module):
    """A fake causal LM whose logits put all mass on given next tokens (or on wrong ones)."""

    def __init__(self, vocab_size: int, labels: torch.Tensor, wrong_row: int | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.vocab_size, self.labels, self.wrong_row = vocab_size, labels, wrong_row

    def forward(self, input_ids, attention_mask=None):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.vocab_size)  # (B, T, V)
        target = self.labels[:, 1:].clamp(min=0)  # the token at t+1, predicted at t
        logits[:, :-1].scatter_(-1, target.unsqueeze(-1), 10.0)
        if self.wrong_row is not None:  # one row guesses token 0 at its last answer position
            last = int((self.labels[self.wrong_row] != lora.IGNORE).nonzero().max()) - 1
            logits[self.wrong_row, last] = 0.0
            logits[self.wrong_row, last, 0] = 10.0
        return type("Out", (), {"logits": logits})()


def test_encode_chat_masks_the_prompt_and_ends_with_eos(tokenizer, rows):
    ids, labels = lora.encode_chat(tokenizer, rows[0]["prompt_messages"], rows[0]["answer"])
    n_answer = len(rows[0]["answer"]) + 1  # one token per character, then <|end|>
    assert len(ids) == len(labels)
    assert labels[: len(ids) - n_answer] == [lora.IGNORE] * (len(ids) - n_answer)
    assert labels[-n_answer:] == ids[-n_answer:]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids[-n_answer:-1]) == rows[0]["answer"]


def test_collate_pads_right_and_ignores_padding(tokenizer, rows):
    batch = lora.collate(tokenizer, rows)
    B, T = batch["input_ids"].shape
    assert B == len(rows)
    assert batch["labels"].shape == batch["attention_mask"].shape == (B, T)
    padded = batch["attention_mask"] == 0
    assert bool((batch["input_ids"][padded] == tokenizer.pad_token_id).all())
    assert bool((batch["labels"][padded] == lora.IGNORE).all())


def test_accuracy_is_one_for_a_model_that_predicts_every_answer_token(tokenizer, rows):
    labels = lora.collate(tokenizer, rows)["labels"]
    assert lora.accuracy(Oracle(len(tokenizer), labels), tokenizer, rows, batch_size=len(rows)) == 1.0


def test_accuracy_counts_a_row_wrong_when_one_answer_token_is_wrong(tokenizer, rows):
    labels = lora.collate(tokenizer, rows)["labels"]
    model = Oracle(len(tokenizer), labels, wrong_row=2)
    assert lora.accuracy(model, tokenizer, rows, batch_size=len(rows)) == pytest.approx(5 / 6)


def test_trainable_parameters_counts_only_parameters_that_require_grad():
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    net[0].requires_grad_(False)
    assert lora.trainable_parameters(net) == 3 * 2 + 2


def test_train_lowers_the_loss_and_touches_only_trainable_parameters(tokenizer, rows):
    model = tiny_llama(len(tokenizer))
    frozen = model.model.embed_tokens.weight.detach().clone()
    model.model.embed_tokens.requires_grad_(False)
    losses = lora.train(model, tokenizer, rows, steps=8, lr=1e-2, batch_size=3, progress=False)
    assert len(losses) == 8
    assert losses[-1] < losses[0]
    assert torch.equal(model.model.embed_tokens.weight, frozen)
    assert not model.training  # handed back in eval mode


def test_train_refuses_a_model_with_nothing_to_train(tokenizer, rows):
    model = tiny_llama(len(tokenizer)).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        lora.train(model, tokenizer, rows, steps=1, progress=False)
