"""Greedy decoding of tiny-base with and without the KV cache (same run, ratio).

    python benchmarks/bench_generate.py                 # 256 new tokens, median of 5 runs
    python benchmarks/bench_generate.py --new-tokens 128 --runs 3

Its own plain loop (not lab 01's solution): cached, each step feeds one token with `past_key_values`;
uncached, each step feeds the whole sequence again. Both must produce the same tokens (checked), so the
ratio is the price of recomputing every earlier key and value at every step.
"""

from __future__ import annotations

import argparse
import inspect
import platform

import torch
from common import commit, median_seconds

from ptlab import models, tinyworld


def cache_name(model) -> str:
    """The cache's argument and output name: `cache` from transformers 5.2x on, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def greedy(model, ids: torch.Tensor, new_tokens: int, use_cache: bool) -> list[int]:
    """Greedy continuation of ids (1, T): `new_tokens` ids, no stopping (a fixed amount of work)."""
    name = cache_name(model)
    inputs, past, out_ids = ids, None, []
    for _ in range(new_tokens):
        out = model(input_ids=inputs, use_cache=use_cache, **{name: past})
        token = out.logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        out_ids.append(int(token))
        if use_cache:
            inputs, past = token, getattr(out, name)
        else:
            inputs = torch.cat([inputs, token], dim=1)  # (1, T + t)
    return out_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (tiny-base is fastest on one)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = models.load("tiny-base")
    model.to(device)
    prompt = tinyworld.cot_prompt([9, 8, 7])
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)  # (1, T)
    if model.config.max_position_embeddings < ids.shape[1] + args.new_tokens:
        raise SystemExit(f"--new-tokens {args.new_tokens} exceeds the model's {model.config.max_position_embeddings} positions")
    same = greedy(model, ids, args.new_tokens, True) == greedy(model, ids, args.new_tokens, False)
    if not same:
        raise SystemExit("cached and uncached greedy decoding disagree: the timing would compare different work")
    times = {use_cache: median_seconds(lambda u=use_cache: greedy(model, ids, args.new_tokens, u), args.runs)
             for use_cache in (True, False)}
    print(f"torch {torch.__version__}, {device} ({platform.processor() or platform.machine()}), "
          f"{torch.get_num_threads()} thread(s), commit {commit()}")
    print(f"tiny-base, prompt {ids.shape[1]} tokens, {args.new_tokens} new tokens, median of {args.runs} runs")
    for use_cache, seconds in times.items():
        print(f"  use_cache={use_cache!s:5}  {seconds:7.3f} s  {seconds / args.new_tokens * 1e3:6.2f} ms/token")
    print(f"  uncached / cached = {times[False] / times[True]:.2f}x")


if __name__ == "__main__":
    main()
