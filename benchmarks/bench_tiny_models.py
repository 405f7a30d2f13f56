"""Load time and CPU generation speed of the shipped tiny checkpoints.

    PYTHONPATH=utils python benchmarks/bench_tiny_models.py [--runs 5] [--new-tokens 64] [--threads 2]

For each causal model: load time (from_pretrained, median of N), greedy generation speed in new tokens
per second at batch 1 with the KV cache, and the same without the cache as the in-run baseline (the
ratio is what the cache buys). For the reward model: load time and scored chats per second (batch 32).
"""

from __future__ import annotations

import argparse
import os
import platform

import torch
from common import commit, median_seconds


def bench_causal(name: str, runs: int, new_tokens: int) -> None:
    from ptlab.models import load

    load_s = median_seconds(lambda: load(name), runs)
    model, tokenizer = load(name)
    prompt = tokenizer("kes -> KES\nbodu -> BODU\nfami -> ", return_tensors="pt")

    def generate(use_cache: bool):
        # min_new_tokens = max_new_tokens: every run decodes exactly new_tokens tokens
        with torch.no_grad():
            model.generate(**prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           use_cache=use_cache, pad_token_id=tokenizer.pad_token_id)

    cached = new_tokens / median_seconds(lambda: generate(True), runs)
    uncached = new_tokens / median_seconds(lambda: generate(False), runs)
    print(f"{name:<10} load {load_s * 1e3:7.0f} ms   generate {cached:7.0f} tok/s with KV cache, "
          f"{uncached:7.0f} tok/s without (x{cached / uncached:.1f})")


def bench_reward(name: str, runs: int) -> None:
    from ptlab.models import load
    from ptlab.tinyworld import preference_dataset
    from ptlab.tinyworld.evaluate import rewards

    load_s = median_seconds(lambda: load(name), runs)
    model, tokenizer = load(name)
    data = preference_dataset("test", n=32)
    seconds = median_seconds(lambda: rewards(model, tokenizer, data["prompt"], data["chosen"]), runs)
    print(f"{name:<10} load {load_s * 1e3:7.0f} ms   score   {32 / seconds:7.0f} chats/s (batch 32)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device cpu ({platform.processor() or platform.machine()}), "
          f"{args.threads} threads, commit {commit()}, median of {args.runs} runs after 1 warm-up")
    for name in ("tiny-base", "tiny-sft"):
        bench_causal(name, args.runs, args.new_tokens)
    bench_reward("tiny-rm", args.runs)


if __name__ == "__main__":
    main()
