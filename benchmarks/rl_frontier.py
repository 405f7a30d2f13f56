"""Oracle and proxy against KL on lab 04's world: PPO (KL-penalised, beta = 0, oracle reward), DPO, best-of-n.

    python benchmarks/rl_frontier.py                 # seed 0
    python benchmarks/rl_frontier.py --seeds 0 1     # each training method once per seed

Every method starts from tiny-sft and is measured on the same held-out prompts (`--prompts`, the test
split), with `--samples` sampled replies per prompt: the reward model's score (proxy, `tiny-rm`), the
hidden oracle's score and the KL to tiny-sft in nats per reply (k3 per token, summed over the reply).
The trainings are the lab's: `rlhf.train_ppo` and `rlhf.train_dpo` with the solution notebook's
functions and the lab's full-mode settings (`rlhf.PPOConfig()`, `rlhf.DPOConfig()` defaults).

- ppo: the reward model as reward, the lab's KL coefficient;
- ppo with beta 0: no KL penalty;
- ppo_oracle: the oracle as reward, the lab's KL coefficient: the control (same optimiser, a true reward);
- dpo: the lab's DPO run on the world's labelled pairs (`rlhf.DPOConfig()`: beta 0.5);
- grpo: lab 07's full-mode GRPO recipe (`rlvr.GRPOConfig()`: 40 steps of 8 prompts x G = 8, lr 5e-5, "dapo"
  aggregation, "group" scaling, beta 0) with the exact verifier as its reward, on lab 04's training prompts: the side-by-side
  of lab 07 (a reward that cannot be gamed) with lab 04's PPO (a reward model), same prompts, same measurements;
  its functions are the reference functions of tests/test_rlvr_support.py;
- best_of_n, n = 1, 2, 4, ..., 64 (once, from the first seed: it trains nothing): M = `--bon-samples`
  samples of tiny-sft per prompt (at least 64), the reward model's favourite of n candidates drawn from
  them. Its numbers are exact expectations over that empirical reply distribution
  (`rl.best_of_n_curve`): the pick's mean oracle and proxy, and the KL of best-of-n to the empirical
  distribution, identical replies pooled (`rl.empirical_kl`). This measures the KL on the replies
  tiny-sft actually writes, and it repeats them; log n - (n - 1) / n is only an upper bound (Beirami et
  al. 2024), reached when no two samples are alike. For n close to M the M samples stand in for tiny-sft
  less well (at n = M = 64 the best-of-n pick is the pool's best in 63% of draws).

Prints a table, then, as its last line, `FRONTIER {json}`: {"start": {"oracle", "proxy"}, "runs": [{"method",
"beta", "n", "seed", "kl", "oracle", "proxy", "correct", "filler", "seconds"}, ...]} ("n" is null except for
best-of-n; "beta" is null for best-of-n; "correct" is the share of replies the oracle counts as right, "filler"
the share that say more than their answer, `rlhf.has_filler`). `--methods` runs a
subset of the training runs (ppo_beta0: PPO with beta = 0); best-of-n always runs, since its n = 1 row is the
start. `--ppo-steps`, `--ppo-lr` and `--ppo-lam` (GAE's lambda) change PPO's recipe for a probe.
`--filler-bonus B` is a probe of the world, not of the recipe: the proxy becomes tiny-rm's score plus B for a
reply that opens with an elaborate filler (any answer), everywhere (PPO's reward, best-of-n's pick, every
"proxy" printed): a reward model whose flaw pays on every prompt, without training one. With `--filler-only` the
bonus is the whole proxy (tiny-rm's score left out): a reward with one exploit and no other signal, the control
for whether PPO can learn to write a filler `tiny-sft` rarely samples. Run it under
the shared lock on a busy machine; `--jobs 2` runs two at a time (one thread each), and each row's "seconds" is
its own run's wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import sys
import time

import torch
from common import ROOT, commit

sys.path.insert(0, str(ROOT / "tests"))
from test_rlhf_support import solution_namespace  # noqa: E402  (the lab's solution cells, read from the notebook)
from test_rlvr_support import FNS as GRPO_FNS  # noqa: E402  (lab 07's reference verifier, advantages and loss)

from ptlab import env, models, rl, rlhf, rlvr, tinyworld  # noqa: E402

BON_NS = (1, 2, 4, 8, 16, 32, 64)
METHODS = ("best_of_n", "ppo", "ppo_beta0", "ppo_oracle", "dpo", "grpo")


def oracle_reward(prompts, replies) -> torch.Tensor:
    """The hidden oracle as a reward function (the control run): (B,) scores."""
    return torch.tensor([tinyworld.oracle_score(p, r) for p, r in zip(prompts, replies, strict=True)])


def with_filler_bonus(score, bonus: float):
    """`score` plus `bonus` for each reply that opens with an elaborate filler: (prompts, replies) -> (B,)."""

    def proxy(prompts, replies) -> torch.Tensor:
        extra = torch.tensor([bonus * (tinyworld.filler_level(r) == tinyworld.ELABORATE_LEVEL) for r in replies])
        return score(prompts, replies) + extra

    return proxy


def no_score(prompts, replies) -> torch.Tensor:
    """A reward model that scores every reply 0 (`--filler-only`: the bonus is the whole reward)."""
    return torch.zeros(len(replies))


def load_world(args) -> dict:
    """The lab's solution functions, tiny-sft, tiny-rm (with `--filler-bonus`), the prompts and the labelled pairs."""
    env.quiet_libraries()
    torch.set_num_threads(args.threads)
    ns = solution_namespace()
    policy0, tok = models.load("tiny-sft")
    reward_model, reward_tok = models.load("tiny-rm")
    pairs = tinyworld.preference_dataset("train", n=5000, tasks=tinyworld.SFT_TASKS)
    return {"fns": rlhf.PPOFunctions(ns["response_logprobs"], ns["kl_estimate"], ns["shaped_rewards"], ns["gae"],
                                     ns["ppo_losses"]),
            "dpo_fns": rlhf.DPOFunctions(ns["response_logprobs"], ns["dpo_loss"]),
            "policy0": policy0.requires_grad_(False), "tok": rlhf.prepare_chat_tokenizer(tok),
            "reward_model": reward_model,
            "proxy": with_filler_bonus(no_score if args.filler_only else rlhf.reward_scorer(reward_model, reward_tok),
                                       args.filler_bonus),
            "train_prompts": list(tinyworld.chat_dataset("train", n=2000, tasks=tinyworld.SFT_TASKS)["prompt_messages"]),
            "eval_prompts": list(tinyworld.chat_dataset("test", n=args.prompts, tasks=tinyworld.SFT_TASKS)["prompt_messages"]),
            "pairs": [{"prompt": p, "chosen": c, "rejected": r}
                      for p, c, r in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])]}


def evaluate(w: dict, policy, seed: int, samples: int) -> dict:
    return rlhf.evaluate_policy(w["fns"], policy, w["policy0"], w["tok"], w["eval_prompts"], w["proxy"], seed=seed,
                                samples=samples)


def train_run(w: dict, args, method: str, beta: float, seed: int) -> dict:
    """One training run from tiny-sft ("ppo", "ppo_oracle", "dpo" or "grpo"), measured on the held-out prompts."""
    env.seed_everything(seed)
    policy = copy.deepcopy(w["policy0"]).requires_grad_(True)
    if method == "grpo":
        rlvr.train_grpo(GRPO_FNS, policy, w["policy0"], w["tok"], w["train_prompts"],
                        rlvr.GRPOConfig(steps=args.grpo_steps, beta=beta, seed=seed), progress=False)
    elif method == "dpo":
        rlhf.train_dpo(w["dpo_fns"], policy, w["policy0"], w["tok"], w["pairs"],
                       rlhf.DPOConfig(beta=beta, seed=seed, steps=args.dpo_steps), progress=False)
    else:
        reward_fn = oracle_reward if method == "ppo_oracle" else w["proxy"]
        rlhf.train_ppo(w["fns"], policy, w["policy0"], rlhf.ValueModel(w["reward_model"]), w["tok"], w["train_prompts"],
                       reward_fn, rlhf.PPOConfig(beta=beta, seed=seed, steps=args.ppo_steps, lr=args.ppo_lr,
                                                 lam=args.ppo_lam),
                       progress=False)
    return evaluate(w, policy, seed, args.samples)


def best_of_n(w: dict, args, seed: int) -> list[dict]:
    """The best-of-n curve from `args.bon_samples` samples of tiny-sft per held-out prompt (`rl.best_of_n_curve`)."""
    torch.manual_seed(seed)
    prompts, M = w["eval_prompts"], args.bon_samples
    replies = []  # P lists of M replies
    for i in range(0, len(prompts), 4):  # 4 prompts x M samples per rollout (the KV cache of all P * M rows is GBs)
        batch = rlhf.rollout(w["policy0"], w["tok"], prompts[i:i + 4], group_size=M)  # each prompt's samples together
        replies += [batch.replies[j:j + M] for j in range(0, len(batch.replies), M)]
    flat_prompts = [p for p in prompts for _ in range(M)]
    flat_replies = [r for rs in replies for r in rs]
    rewards = w["proxy"](flat_prompts, flat_replies).view(len(prompts), M)
    oracle = oracle_reward(flat_prompts, flat_replies).view(len(prompts), M)
    correct = (oracle >= 0.5).double()  # the oracle's correct band, as rlhf.oracle_metrics counts it
    filler = torch.tensor([float(rlhf.has_filler(r)) for r in flat_replies]).view(len(prompts), M)
    return rl.best_of_n_curve(replies, rewards, {"oracle": oracle, "proxy": rewards, "correct": correct,
                                                 "filler": filler}, BON_NS)


_WORLD: dict = {}


def run_task(task: tuple) -> list[dict]:
    """One row of the table (a training run) or the best-of-n rows, in this process: (args, method, beta, seed)."""
    args, method, beta, seed = task
    method = "ppo" if method == "ppo_beta0" else method
    if not _WORLD:
        _WORLD.update(load_world(args))
    t0 = time.time()
    if method == "best_of_n":
        curve = best_of_n(_WORLD, args, seed)
        return [{"method": method, "beta": None, "n": r["n"], "seed": seed, "kl": r["kl"], "oracle": r["oracle"],
                 "proxy": r["proxy"], "correct": r["correct"], "filler": r["filler"], "seconds": time.time() - t0}
                for r in curve]
    out = train_run(_WORLD, args, method, beta, seed)
    row = {"method": method, "beta": beta, "n": None, "seed": seed, "kl": out["kl"], "oracle": out["oracle"],
           "proxy": out["proxy"], "correct": out["correct"], "filler": out["filler"], "seconds": time.time() - t0}
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="a subset to run (ppo_beta0: PPO with beta = 0)")
    parser.add_argument("--prompts", type=int, default=128, help="held-out prompts")
    parser.add_argument("--samples", type=int, default=2, help="sampled replies per held-out prompt")
    parser.add_argument("--bon-samples", type=int, default=64, help="tiny-sft samples per prompt for best-of-n")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each")
    parser.add_argument("--ppo-steps", type=int, default=rlhf.PPOConfig().steps, help="(a smoke run: 1)")
    parser.add_argument("--ppo-lr", type=float, default=rlhf.PPOConfig().lr, help="PPO's policy learning rate")
    parser.add_argument("--ppo-lam", type=float, default=rlhf.PPOConfig().lam, help="PPO's GAE lambda")
    parser.add_argument("--filler-bonus", type=float, default=0.0,
                        help="added to the proxy of replies behind an elaborate filler (a probe; 0: tiny-rm as it is)")
    parser.add_argument("--filler-only", action="store_true",
                        help="the proxy is the filler bonus alone, tiny-rm's score left out (a probe: needs --filler-bonus)")
    parser.add_argument("--grpo-steps", type=int, default=rlvr.GRPOConfig().steps, help="(a smoke run: 1)")
    parser.add_argument("--dpo-steps", type=int, default=rlhf.DPOConfig().steps, help="(a smoke run: 1)")
    args = parser.parse_args()
    if args.filler_only and not args.filler_bonus:
        parser.error("--filler-only needs --filler-bonus: without it every reply scores 0")
    if args.bon_samples < max(BON_NS):
        parser.error(f"--bon-samples should be at least {max(BON_NS)}")
    lab_beta, dpo_beta = rlhf.PPOConfig().beta, rlhf.DPOConfig().beta
    betas = {"ppo": lab_beta, "ppo_beta0": 0.0, "ppo_oracle": lab_beta, "dpo": dpo_beta, "grpo": rlvr.GRPOConfig().beta}
    # best-of-n trains nothing: one sample pool, from the first seed; it also gives the start (best-of-1)
    tasks = [(args, "best_of_n", None, args.seeds[0])] + [
        (args, method, betas[method], seed) for seed in args.seeds for method in METHODS[1:] if method in args.methods]
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            runs = [row for rows in pool.imap(run_task, tasks) for row in rows]
    else:
        runs = [row for task in tasks for row in run_task(task)]
    start = {"oracle": runs[0]["oracle"], "proxy": runs[0]["proxy"]}  # best-of-1: tiny-sft's own samples
    runs = runs[len(BON_NS):] + runs[:len(BON_NS)]  # training runs first

    print(f"torch {torch.__version__}, device cpu, {torch.get_num_threads()} threads, commit {commit()}")
    print(f"{args.prompts} held-out prompts x {args.samples} replies (best-of-n: {args.bon_samples} samples per prompt), "
          f"seeds {args.seeds}; start (tiny-sft): oracle {start['oracle']:.3f}, proxy {start['proxy']:+.2f}"
          + (f"; proxy = {'' if args.filler_only else 'tiny-rm '}{args.filler_bonus:+g} behind an elaborate filler"
             if args.filler_bonus else ""))
    print(f"{'method':11} {'beta':>5} {'n':>3} {'seed':>4} {'KL':>6} {'oracle':>7} {'proxy':>6} {'correct':>7} "
          f"{'filler':>6} {'seconds':>8}")
    for r in runs:
        beta = "" if r["beta"] is None else f"{r['beta']:g}"
        n = "" if r["n"] is None else str(r["n"])
        print(f"{r['method']:11} {beta:>5} {n:>3} {r['seed']:>4} {r['kl']:6.2f} {r['oracle']:7.3f} {r['proxy']:+6.2f} "
              f"{r['correct']:7.1%} {r['filler']:6.1%} {r['seconds']:8.0f}")
    print("FRONTIER " + json.dumps({"start": start, "runs": runs}))


if __name__ == "__main__":
    main()
