"""Unit tests of ptlab.rl, the RL plumbing labs 04 (PPO, DPO) and 07 (GRPO) share (tiny-sft, CPU, seconds)."""

from __future__ import annotations

import random

import pytest
import torch

from ptlab import models, rl, tinyworld


@pytest.fixture(scope="module")
def sft():
    torch.set_num_threads(1)
    model, tokenizer = models.load("tiny-sft")
    return model.requires_grad_(False), rl.prepare_chat_tokenizer(tokenizer)


def test_a_group_rollout_keeps_each_prompts_samples_together(sft):
    model, tok = sft
    prompts = list(tinyworld.chat_dataset("test", n=2, tasks=tinyworld.SFT_TASKS)["prompt_messages"])
    torch.manual_seed(0)
    batch = rl.rollout(model, tok, prompts, max_new_tokens=24, group_size=3)
    assert batch.group_size == 3 and batch.input_ids.shape[0] == 6
    assert batch.prompts == [prompts[0]] * 3 + [prompts[1]] * 3
    for b, reply in enumerate(batch.replies):  # the mask covers the reply's tokens (end-of-turn included if any)
        ids = batch.input_ids[b][batch.response_mask[b].bool()].tolist()
        assert tok.decode(ids, skip_special_tokens=True) == reply
    assert batch.lengths.tolist() == batch.response_mask.sum(1).tolist()
    with pytest.raises(ValueError, match="group_size"):
        rl.rollout(model, tok, prompts, group_size=0)


def test_minibatches_visit_every_row_once_per_epoch():
    batches = list(rl.minibatches(10, 4, 3, random.Random(0)))
    assert [len(b) for b in batches] == [4, 4, 2] * 3
    for epoch in range(3):
        assert sorted(torch.cat(batches[3 * epoch: 3 * epoch + 3]).tolist()) == list(range(10))


def test_sampled_entropy_estimates_the_entropy_of_the_sampling_distribution():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125])
    tokens = torch.multinomial(probs, 40_000, replacement=True).view(200, 200)
    logp = probs.log()[tokens]  # (B, T-1) log-probs of the sampled tokens
    mask = torch.ones_like(logp)
    mask[:, 150:] = 0  # padding must not count
    logp[:, 150:] = -50.0
    exact = float(-(probs * probs.log()).sum())  # 1.75 bits = 1.2130 nats
    # 30,000 samples of -log p (std 0.6 nats): the mean's standard error is 0.0035
    assert rl.sampled_entropy(logp, mask) == pytest.approx(exact, abs=0.015)


def test_gradient_step_clips_each_model_separately():
    a, b = torch.nn.Linear(2, 1, bias=False), torch.nn.Linear(2, 1, bias=False)
    opts = [torch.optim.SGD(a.parameters(), lr=1.0), torch.optim.SGD(b.parameters(), lr=1.0)]
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    x = torch.tensor([[3.0, 4.0]])
    rl.gradient_step(100 * a(x).sum() + 0.1 * b(x).sum(), [a, b], opts, max_grad_norm=1.0)
    assert torch.linalg.norm(wa - a.weight.detach()) == pytest.approx(1.0)   # 500 clipped to 1
    assert torch.linalg.norm(wb - b.weight.detach()) == pytest.approx(0.5)   # 0.5: below the limit, kept


def test_mean_records_averages_key_by_key():
    assert rl.mean_records([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 6.0}]) == {"a": 2.0, "b": 4.0}
