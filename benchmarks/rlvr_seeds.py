"""Lab 07's GRPO runs over seeds: held-out pass@1 and greedy accuracy before and after, and how each run moved.

    python benchmarks/rlvr_seeds.py --seeds 0 1 2 --pass-at-k     # the main run (rlvr.GRPOConfig()), three seeds
    python benchmarks/rlvr_seeds.py --seeds 1 --runs grpo_loss scale_none dapo expert_iteration --jobs 2

The setting is lab 07's full mode: tiny-sft, training prompts of all ten task families (train split), held-out
prompts of the test split (seed 3): 64 of the eight families tiny-sft was tuned on ("trained") and 32 of the two
it never saw in chat form ("unseen"); pass@1 at T = 1 from 4 samples per prompt, and one greedy reply. Runs:
main (`rlvr.GRPOConfig()`: "dapo" aggregation, "group" scaling), grpo_loss ("grpo" aggregation), dr_grpo_loss
("dr_grpo" aggregation: the sum over tokens / (B * max_new_tokens)), scale_none
(Dr. GRPO's advantages), dapo (the dynamic-sampling filter and clip-higher 0.28) and expert_iteration
(`rlvr.ExpertIterationConfig()`); unseen_only trains on prompts of the two unseen families alone, 4 prompts x
G = 16 per step (the task tiny-sft almost never solves, as the training target). As in the notebook, the main run is evaluated at steps 0, 20 and 40 (its
"seconds" include them), the others after their last step. Each seed seeds the run (its prompts, samples and minibatches); the held-out
evaluation always uses sampling seed 0. The functions are the reference functions of tests/test_rlvr_support.py.
With `--pass-at-k`, tiny-sft and each main run also get the notebook's pass@k curves: 64 samples (sampling seed 1)
on the first 32 prompts of each held-out set, pass@k for k = 1, 2, 4, ..., 64 (unbiased, Chen et al. 2021).

Prints a table, then, as its last line, `RLVR {json}`: {"start": {set: {"pass1", "greedy"}}, "runs": [{"run",
"seed", "seconds", "<set>_pass1", "<set>_greedy", "first" and "last": means over the first and last 5 steps of
"reward", "kl", "length", "length_correct", "length_wrong", "entropy", "flat_groups" (the notebook's variant table
uses "last"), "rows": samples trained on per step}, ...]}.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import sys
import time

import torch
from common import ROOT, commit

sys.path.insert(0, str(ROOT / "tests"))
from test_rlvr_support import FNS  # noqa: E402  (reference verifier, advantages, loss, log-probs)

from ptlab import env, models, rl, rlvr, tinyworld  # noqa: E402

RUNS = {"main": {}, "grpo_loss": {"loss_type": "grpo"}, "dr_grpo_loss": {"loss_type": "dr_grpo"}, "scale_none": {"scale": "none"},
        "dapo": {"dynamic_sampling": True, "epsilon_high": 0.28}, "expert_iteration": None,
        # the hard families alone: training prompts of the two unseen families only, G = 16 samples of 4 prompts
        # (the main run's 64 samples per step), so that more groups hold a right sample
        "unseen_only": {"prompts_per_step": 4, "group_size": 16}}
HARD_ONLY = {"unseen_only"}
KS = (1, 2, 4, 8, 16, 32, 64)
STEP_KEYS = ("reward", "kl", "length", "length_correct", "length_wrong", "entropy", "flat_groups")
_WORLD: dict = {}


def load_world(threads: int) -> dict:
    env.quiet_libraries()
    torch.set_num_threads(threads)
    policy0, tok = models.load("tiny-sft")
    rl.prepare_chat_tokenizer(tok)
    return {"policy0": policy0.requires_grad_(False), "tok": tok,
            "train": list(tinyworld.chat_dataset("train", n=2000)["prompt_messages"]),
            "train_unseen": list(tinyworld.chat_dataset("train", n=2000, tasks=tinyworld.SFT_HELDOUT_TASKS)["prompt_messages"]),
            "eval": {"trained": list(tinyworld.chat_dataset("test", n=64, tasks=tinyworld.SFT_TASKS, seed=3)["prompt_messages"]),
                     "unseen": list(tinyworld.chat_dataset("test", n=32, tasks=tinyworld.SFT_HELDOUT_TASKS, seed=3)["prompt_messages"])}}


def evaluate(w: dict, policy) -> dict[str, float]:
    out = {}
    for name, prompts in w["eval"].items():
        r = rlvr.evaluate(FNS.reward, policy, w["tok"], prompts, samples=4, max_new_tokens=rlvr.GRPOConfig().max_new_tokens)
        out.update({f"{name}_pass1": r["pass1"], f"{name}_greedy": r["greedy"]})
    return out


def pass_at_k_curves(w: dict, policy) -> dict[str, list[float]]:
    """Per held-out set: mean over its first 32 prompts of pass@k, k in KS, from 64 samples each (1 - C(n-c, k) / C(n, k))."""
    out = {}
    for name, prompts in w["eval"].items():
        counts = rlvr.correct_counts(FNS.reward, policy, w["tok"], prompts[:32], max(KS), rlvr.GRPOConfig().max_new_tokens,
                                     seed=1)
        n = max(KS)
        out[name] = [sum(1 - math.comb(n - c, k) / math.comb(n, k) for c in counts) / len(counts) for k in KS]
    return out


def step_means(history: list[dict]) -> dict[str, float]:
    """Means of the step reports' keys, NaNs (no right, or no wrong, reply in a step) left out; absent keys absent."""
    out = {}
    for key in STEP_KEYS:
        values = [r[key] for r in history if key in r and not math.isnan(r[key])]
        if values:  # expert iteration reports the reward only
            out[key] = sum(values) / len(values)
    return out


def run_task(task: tuple) -> dict:
    """One run from tiny-sft (or "start": tiny-sft itself evaluated): (threads, run name, seed, with pass@k) -> its row."""
    threads, name, seed, with_pass_at_k = task
    if not _WORLD:
        _WORLD.update(load_world(threads))
    w = _WORLD
    if name == "start":
        row = {"run": "start", **evaluate(w, w["policy0"])}
        return {**row, "pass_at_k": pass_at_k_curves(w, w["policy0"])} if with_pass_at_k else row
    env.seed_everything(seed)
    policy = copy.deepcopy(w["policy0"]).requires_grad_(True)
    t0 = time.time()
    if RUNS[name] is None:
        history = rlvr.train_expert_iteration(FNS, policy, w["tok"], w["train"], rlvr.ExpertIterationConfig(seed=seed),
                                              progress=False)
    else:  # as the notebook: the main run is evaluated at steps 0, 20 and 40 (evaluation reseeds the sampler)
        every = 20 if name == "main" else 0
        history = rlvr.train_grpo(FNS, policy, w["policy0"], w["tok"], w["train_unseen" if name in HARD_ONLY else "train"],
                                  rlvr.GRPOConfig(**RUNS[name], seed=seed), evaluate_fn=lambda p: evaluate(w, p),
                                  eval_every=every, progress=False)
    seconds = time.time() - t0
    final = {k: v for k, v in history[-1].items() if k.endswith(("_pass1", "_greedy"))} or evaluate(w, policy)
    row = {"run": name, "seed": seed, "seconds": seconds, **final,
           "first": step_means(history[:5]), "last": step_means(history[-5:]),
           "rows": sum(r.get("rows", 0) for r in history) / len(history)}  # samples trained on per step
    if with_pass_at_k and name == "main":
        row["pass_at_k"] = pass_at_k_curves(w, policy)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=["main"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each")
    parser.add_argument("--pass-at-k", action="store_true", help="pass@k curves of tiny-sft and of each main run")
    args = parser.parse_args()
    tasks = [(args.threads, "start", None, args.pass_at_k)] + [
        (args.threads, name, seed, args.pass_at_k) for name in args.runs for seed in args.seeds]
    if args.jobs > 1:
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            rows = list(pool.imap(run_task, tasks))
    else:
        rows = [run_task(task) for task in tasks]
    start, runs = rows[0], rows[1:]
    sets = ("trained", "unseen")
    print(f"torch {torch.__version__}, device cpu, {args.threads} thread(s) per run, commit {commit()}")
    print("held-out: 64 prompts of the trained families, 32 of the unseen ones; pass@1 from 4 samples at T = 1; greedy")
    print(f"{'run':17} {'seed':>4} " + " ".join(f"{s + ' pass@1':>15} {s + ' greedy':>15}" for s in sets) + f" {'seconds':>8}")
    print(f"{'tiny-sft (start)':17} {'':>4} " + " ".join(f"{start[s + '_pass1']:15.1%} {start[s + '_greedy']:15.1%}" for s in sets))
    for r in runs:
        print(f"{r['run']:17} {r['seed']:>4} " + " ".join(f"{r[s + '_pass1']:15.1%} {r[s + '_greedy']:15.1%}" for s in sets)
              + f" {r['seconds']:8.0f}")
    for name in args.runs:
        mine = [r for r in runs if r["run"] == name]
        cells = []
        for key in [f"{s}_{m}" for s in sets for m in ("pass1", "greedy")]:
            values = [r[key] for r in mine]
            cells.append(f"{key} {sum(values) / len(values):.1%} ({min(values):.1%} to {max(values):.1%})")
        print(f"{name} over seeds {args.seeds}: " + ", ".join(cells))
        for key in [k for k in STEP_KEYS if all(k in r[part] for r in mine for part in ("first", "last"))]:
            first, last = ([r[part][key] for r in mine] for part in ("first", "last"))
            print(f"    {key:15} first 5 steps {sum(first) / len(first):7.3f}   last 5 steps {sum(last) / len(last):7.3f}")
    for r in [start] + runs:
        for name, ys in r.get("pass_at_k", {}).items():
            label = "tiny-sft" if r["run"] == "start" else f"{r['run']} seed {r['seed']}"
            print(f"pass@k {label:18} {name:8} " + "  ".join(f"@{k}: {y:.3f}" for k, y in zip(KS, ys)))
    print("RLVR " + json.dumps({"start": {s: {"pass1": start[s + "_pass1"], "greedy": start[s + "_greedy"]} for s in sets},
                                "runs": runs}))


if __name__ == "__main__":
    main()
