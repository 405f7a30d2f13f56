"""PPO throughput of lab 04's loop on the tiny models: rollout and update, in reply tokens per second.

    python benchmarks/bench_ppo.py                       # 2 threads, batch 32, 2 epochs, 5 runs
    python benchmarks/bench_ppo.py --threads 1 --batch 64 --runs 3

Rollout = `rlhf.rollout` (sampling with `generate`, KV cache) of one reply per prompt from tiny-sft.
Update = `rlhf.ppo_update` on that rollout (per epoch and minibatch: policy log-probs, values, the losses,
backward and two AdamW steps), with the lab's solution functions. Both are reported per reply token
(the tokens PPO learns from); the baseline is one no-grad forward of the same batch, so the ratios say
what sampling and training cost against scoring. Run it under the shared lock on a busy machine.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys

import torch
from common import ROOT, commit, median_seconds

sys.path.insert(0, str(ROOT / "tests"))
from test_rlhf_support import solution_namespace  # noqa: E402  (the lab's solution cells, read from the notebook)

from ptlab import env, models, rlhf, tinyworld  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env.quiet_libraries()
    torch.set_num_threads(args.threads)
    ns = solution_namespace()
    fns = rlhf.PPOFunctions(ns["response_logprobs"], ns["kl_estimate"], ns["shaped_rewards"], ns["gae"], ns["ppo_losses"])
    policy0, tok = models.load("tiny-sft")
    rlhf.prepare_chat_tokenizer(tok)
    reward_model, _ = models.load("tiny-rm")
    prompts = list(tinyworld.chat_dataset("train", n=args.batch, tasks=tinyworld.SFT_TASKS)["prompt_messages"])

    torch.manual_seed(0)
    batch = rlhf.rollout(policy0, tok, prompts)
    reply_tokens = int(batch.response_mask.sum())
    mask = batch.response_mask[:, 1:]
    policy, value_model = copy.deepcopy(policy0), rlhf.ValueModel(reward_model)
    cfg = rlhf.PPOConfig(batch_size=args.batch, minibatch_size=args.batch, ppo_epochs=args.epochs)
    with torch.no_grad():
        old_logp = fns.response_logprobs(policy, batch.input_ids, batch.attention_mask, batch.response_mask)
        old_values = value_model(batch.input_ids, batch.attention_mask)[:, :-1] * mask
    rewards = fns.shaped_rewards(torch.randn(args.batch), old_logp, old_logp, mask, 0.05)
    advantages, returns = fns.gae(rewards, old_values, mask, 1.0, 0.95)
    optimizers = [torch.optim.AdamW(policy.parameters(), lr=1e-6), torch.optim.AdamW(value_model.parameters(), lr=1e-6)]

    def forward():
        with torch.no_grad():
            policy0(input_ids=batch.input_ids, attention_mask=batch.attention_mask)

    def roll():
        torch.manual_seed(0)  # the same replies (and lengths) every run
        rlhf.rollout(policy0, tok, prompts)

    def update():
        rlhf.ppo_update(fns, policy, value_model, optimizers, batch, old_logp, old_values, advantages, returns, cfg,
                        random.Random(0))

    times = {name: median_seconds(fn, args.runs) for name, fn in
             (("forward (baseline)", forward), ("rollout", roll), ("update", update))}
    print(f"torch {torch.__version__}, device cpu, {torch.get_num_threads()} threads, commit {commit()}")
    print(f"batch {args.batch} prompts, {reply_tokens} reply tokens, T = {batch.input_ids.shape[1]}, "
          f"update = {args.epochs} epochs x 1 minibatch; median of {args.runs} runs")
    base = times["forward (baseline)"]
    for name, seconds in times.items():
        print(f"{name:20} {seconds * 1e3:8.1f} ms  {reply_tokens / seconds:9.0f} reply tokens/s  x{seconds / base:5.1f} forward")


if __name__ == "__main__":
    main()
