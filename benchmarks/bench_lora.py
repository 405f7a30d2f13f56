"""Forward time of a LoRA layer, unmerged and merged, against the bare base layer (same run, ratios).

    python benchmarks/bench_lora.py                      # defaults: d 1024, r 8, 4096 tokens
    python benchmarks/bench_lora.py --d 2048 --r 16 --tokens 2048 --runs 50

The LoRA layer is peft's own (`peft.tuners.lora.Linear`, through `get_peft_model`), so this script
times the reference implementation, not the lab's exercise. Unmerged, every call computes
W0 x + (alpha/r) B (A x): two extra thin matmuls. After `merge()` the update lives in W0 and the layer
calls only the base: it must cost what the base costs (ratio ~1.00).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import statistics
import time
import warnings

import torch
from common import commit
from torch import nn


class Net(nn.Module):
    """One linear layer, named so that peft can target it."""

    def __init__(self, d: int):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def median_ms(fns: dict, x: torch.Tensor, runs: int, warmup: int) -> dict[str, float]:
    """Median wall time of each fn(x) in milliseconds, after warm-up calls (synchronised on CUDA).

    The functions take turns within every run, so a noisy neighbour on a shared machine slows all of
    them alike and the ratios stay meaningful.
    """
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn(x)
        sync()
        for _ in range(runs):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(x)
                sync()
                times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=1024, help="layer width (d_in = d_out)")
    parser.add_argument("--r", type=int, default=8, help="LoRA rank")
    parser.add_argument("--tokens", type=int, default=2048, help="rows of x (batch x sequence)")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the course machines have 2)")
    args = parser.parse_args()

    with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bitsandbytes' CPU notice and peft's deprecation warnings
        from peft import LoraConfig, get_peft_model

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    base = Net(args.d).to(device).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=args.r, lora_alpha=2 * args.r, target_modules=["proj"]))
    unmerged = peft_model.base_model.model.proj
    nn.init.normal_(unmerged.lora_B["default"].weight, std=0.01)  # a trained-looking, non-zero update
    merged = copy.deepcopy(unmerged)
    merged.merge()  # W0 <- W0 + (alpha/r) B A; forward now calls the base layer only
    x = torch.randn(args.tokens, args.d, device=device)
    with torch.no_grad():
        err = (merged(x) - unmerged(x)).abs().max().item()

    fns = {"base nn.Linear": base.proj, "LoRA unmerged (peft)": unmerged, "LoRA merged (peft)": merged}
    ms = median_ms(fns, x, args.runs, args.warmup)
    t_base = ms["base nn.Linear"]

    print(f"torch {torch.__version__}, device {device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if device.type == 'cuda' else f', {args.threads} threads'}, commit {commit()}")
    print(f"x ({args.tokens}, {args.d}), W ({args.d}, {args.d}), r {args.r}; median of {args.runs} runs after {args.warmup} warm-up")
    print(f"{'layer':<22} {'ms':>9} {'vs base':>8}")
    for name, t in ms.items():
        print(f"{name:<22} {t:>9.3f} {t / t_base:>7.2f}x")
    print(f"max |merged - unmerged| output: {err:.2e}")


if __name__ == "__main__":
    main()
