"""Unit tests of ptlab.rl, the RL plumbing labs 04 (PPO, DPO) and 07 (GRPO) share (tiny-sft, CPU, seconds)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from ptlab import rl, tinyworld


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


def test_best_of_n_weights_match_simulated_best_of_n():
    rewards = torch.tensor([0.3, -1.0, 2.0, 0.3, 0.9])  # a tie at 0.3
    weights = rl.best_of_n_weights(rewards, 3)
    assert float(weights.sum()) == pytest.approx(1.0)
    g = torch.Generator().manual_seed(0)
    draws = torch.randint(0, 5, (200_000, 3), generator=g)  # n = 3 candidates, with replacement
    best = rewards[draws].max(1).values
    for level in rewards.unique():
        simulated = float((best == level).double().mean())
        # 200,000 draws: a share of at most 0.5 has a standard error of at most 0.0011
        assert float(weights[rewards == level].sum()) == pytest.approx(simulated, abs=0.005)
    assert weights[0] == weights[3]  # tied samples share their level's mass
    torch.testing.assert_close(rl.best_of_n_weights(rewards, 1), torch.full((5,), 0.2, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        rl.best_of_n_weights(torch.tensor([0.3, float("nan")]), 3)


def test_empirical_kl_of_best_of_n_is_the_closed_form_for_distinct_replies_and_less_for_repeats():
    n, M = 4, 20_000
    rewards = torch.randn(M, generator=torch.Generator().manual_seed(0))
    weights = rl.best_of_n_weights(rewards, n)
    # distinct replies: log n - (n - 1) / n as M grows (Stiennon et al. 2020); at M = 20,000 within 1e-3
    assert rl.empirical_kl(weights, list(range(M))) == pytest.approx(math.log(n) - (n - 1) / n, abs=1e-3)
    # the same 20,000 samples as 50 replies repeated (reward then depends on the reply only): a smaller KL
    keys = [int(k) for k in (rewards * 7).round().clamp(-25, 24)]
    repeated = rl.best_of_n_weights(torch.tensor(keys, dtype=torch.float64), n)
    assert 0 < rl.empirical_kl(repeated, keys) < math.log(n) - (n - 1) / n
    assert rl.empirical_kl(rl.best_of_n_weights(torch.zeros(8), n), ["same"] * 8) == 0.0  # one reply: no KL


def test_per_token_in_chunks_equals_one_forward_on_the_whole_batch(sft):
    model, tok = sft
    prompts = list(tinyworld.chat_dataset("test", n=6, tasks=tinyworld.SFT_TASKS)["prompt_messages"])
    batch = rl.pair_batch(tok, prompts, ["KES", "b", "Great question! I went through it letter by letter: x",
                                         "ab", "Sure! abc", "x"], side="left")

    def logp(ids, att, resp):  # per-token log-probs of the next token, 0 off the reply
        pos = (att.cumsum(1) - 1).clamp(min=0)
        out = torch.log_softmax(model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, :-1], -1)
        return out.gather(-1, ids[:, 1:, None])[..., 0] * resp[:, 1:]

    with torch.no_grad():
        whole = logp(batch["input_ids"], batch["attention_mask"], batch["response_mask"])
        chunked = rl.per_token_in_chunks(logp, batch["input_ids"], batch["attention_mask"], batch["response_mask"],
                                         chunk_size=2)
    assert rl.used_columns(batch["attention_mask"][[1, 5]]).start > 0  # short rows are cut to fewer columns
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)  # float32 rounding of other shapes only


def test_best_of_n_curve_averages_the_exact_pick_over_prompts():
    replies = [["a", "b", "c"], ["x", "x", "y"]]
    rewards = torch.tensor([[0.0, 1.0, 2.0], [5.0, 5.0, 1.0]])
    oracle = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    one, big = rl.best_of_n_curve(replies, rewards, {"oracle": oracle, "proxy": rewards}, [1, 200])
    assert one["kl"] == pytest.approx(0.0) and one["oracle"] == pytest.approx(1 / 3)  # n = 1: the samples' mean
    # n = 200 picks "c" and "x" almost surely: KL log 3 and log 1.5, oracle 0, proxy (2 + 5) / 2
    assert big["kl"] == pytest.approx((math.log(3) + math.log(1.5)) / 2, abs=1e-6)
    assert big["oracle"] == pytest.approx(0.0, abs=1e-6) and big["proxy"] == pytest.approx(3.5, abs=1e-6)


def test_sample_draws_what_transformers_generate_draws_for_one_row(sft):
    """One row, one seed: the same tokens as `generate` with pure sampling (no top-k, no top-p)."""
    model, tok = sft
    for prompt in tinyworld.chat_dataset("test", n=4, tasks=tinyworld.SFT_TASKS)["prompt_messages"]:
        ids, mask = rl.pad(rl.prompt_ids(tok, [prompt]), tok.pad_token_id, "left")
        torch.manual_seed(3)
        ours = rl.sample(model, ids, mask, 40, 1.0, tok.eos_token_id, tok.pad_token_id)
        torch.manual_seed(3)
        theirs = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=40,
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
        assert ours.tolist() == theirs.tolist()
