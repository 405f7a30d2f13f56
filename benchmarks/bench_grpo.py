"""GRPO throughput of lab 07's loop on tiny-sft: rollout and update in tokens per second, and each phase's share.

    python benchmarks/bench_grpo.py                        # 1 thread, 8 prompts x G = 8, 5 runs
    python benchmarks/bench_grpo.py --threads 2 --prompts 16 --group 4 --runs 3

One GRPO step of `rlvr.train_grpo`, phase by phase, on B = prompts x G samples: rollout (`rl.rollout`,
sampling with `generate` and the KV cache), reward (the verifier on every reply), log-probs (no-grad forwards
of the policy and the frozen reference: the old and reference log-probs), update (`rlvr.grpo_update`: one
minibatch of all rows, forward with grad, the loss, backward, AdamW). Rollout is reported per generated
token (every row's new columns, padding included: `generate` computes them all), the rest per reply token;
the baseline is one no-grad forward of the batch. The functions are the reference functions of
tests/test_rlvr_support.py. Run it under the shared lock on a busy machine.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys

import torch
from common import ROOT, commit, median_seconds

sys.path.insert(0, str(ROOT / "tests"))
from test_rlvr_support import FNS  # noqa: E402  (reference verifier, advantages, loss, log-probs)

from ptlab import env, models, rl, rlvr, tinyworld  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env.quiet_libraries()
    torch.set_num_threads(args.threads)
    policy0, tok = models.load("tiny-sft")
    rl.prepare_chat_tokenizer(tok)
    prompts = list(tinyworld.chat_dataset("train", n=args.prompts)["prompt_messages"])
    cfg = rlvr.GRPOConfig(prompts_per_step=args.prompts, group_size=args.group,
                          minibatch_size=args.prompts * args.group, max_new_tokens=args.max_new_tokens)

    torch.manual_seed(0)
    batch = rl.rollout(policy0, tok, prompts, cfg.max_new_tokens, group_size=cfg.group_size)
    reply_tokens = int(batch.response_mask.sum())
    generated = batch.input_ids.shape[0] * (batch.input_ids.shape[1] - int((batch.response_mask == 0).all(0).sum()))
    policy = copy.deepcopy(policy0).requires_grad_(True)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    with torch.no_grad():
        old_logp = FNS.response_logprobs(policy0, batch.input_ids, batch.attention_mask, batch.response_mask)
    rewards = rlvr.rewards_of(FNS.reward, batch.prompts, batch.replies)
    advantages = FNS.group_advantages(rewards, cfg.group_size, cfg.scale)

    def forward():
        with torch.no_grad():
            policy0(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def roll():
        torch.manual_seed(0)  # the same replies (and lengths) every run
        rl.rollout(policy0, tok, prompts, cfg.max_new_tokens, group_size=cfg.group_size)

    def score():
        rlvr.rewards_of(FNS.reward, batch.prompts, batch.replies)

    def logprobs():
        with torch.no_grad():
            for model in (policy, policy0):  # the old (rollout-time) policy and the reference
                FNS.response_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_mask)

    def update():
        rlvr.grpo_update(FNS, policy, optimizer, batch, old_logp, old_logp, advantages, cfg, random.Random(0))

    phases = (("rollout", roll, generated), ("reward", score, reply_tokens), ("log-probs", logprobs, reply_tokens),
              ("update", update, reply_tokens))
    base = median_seconds(forward, args.runs)
    times = {name: median_seconds(fn, args.runs) for name, fn, _ in phases}
    total = sum(times.values())
    print(f"torch {torch.__version__}, device cpu, {torch.get_num_threads()} threads, commit {commit()}")
    print(f"{args.prompts} prompts x G = {args.group} = {batch.input_ids.shape[0]} samples, {reply_tokens} reply tokens, "
          f"{generated} generated positions, T = {batch.input_ids.shape[1]}; median of {args.runs} runs")
    print(f"{'forward (baseline)':20} {base * 1e3:8.1f} ms")
    for name, _, tokens in phases:
        s = times[name]
        print(f"{name:20} {s * 1e3:8.1f} ms  {tokens / s:9.0f} tokens/s  x{s / base:6.1f} forward  "
              f"{s / total:6.1%} of a step")


if __name__ == "__main__":
    main()
