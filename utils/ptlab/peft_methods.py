"""Support code for lab 08 (PEFT methods and BitDelta): training, timing, sizes and BitDelta's model wrapper.

None of the lab's graded code lives here (`PromptTuning`, `PrefixTuning`, `Adapter`/`add_adapters`,
`IA3Linear`/`add_ia3`, `add_bitfit`, `bitdelta_compress`/`bitdelta_decompress`): students write those. This
module runs the experiments around them the same way for every method:

- `as_causal_lm` gives a module whose `forward(input_ids, attention_mask)` returns logits (B, T, V) the
  interface of a transformers causal LM (`.logits`, and `.loss` from `labels`), so lab 05's training loop and
  accuracy probe (`ptlab.lora.train`, `ptlab.lora.accuracy`) run it unchanged;
- `run_method` trains one method and measures what the lab's comparison table reports;
- `BitDeltaLinear` / `apply_bitdelta` put a compressed weight delta into a copy of a model, taking the
  students' `compress` and `decompress` as arguments, and `distill_scales` trains only the per-matrix scales
  to match the fine-tuned model's logits (Liu et al. 2024, BitDelta's scale distillation).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ptlab import lora

Compress = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Decompress = Callable[[torch.Tensor, torch.Tensor, tuple[int, ...]], torch.Tensor]


def logits_of(output) -> torch.Tensor:
    """The logits of a model call: a tensor as it is, or the `.logits` of a transformers output."""
    return output if isinstance(output, torch.Tensor) else output.logits


class CausalLMView(nn.Module):
    """A module returning logits (B, T, V), seen as a transformers causal LM: `.logits` and, given labels, `.loss`.

    The loss is transformers' own causal-LM loss (`ForCausalLMLoss`: logits at t score the label at t+1,
    -100 skipped), the one `model(**batch).loss` computes for a plain transformers model.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SimpleNamespace:
        from transformers.loss.loss_utils import ForCausalLMLoss

        logits = logits_of(self.module(input_ids=input_ids, attention_mask=attention_mask))  # (B, T, V)
        loss = None if labels is None else ForCausalLMLoss(logits.contiguous(), labels, vocab_size=logits.shape[-1])  # a slice may not view
        return SimpleNamespace(logits=logits, loss=loss)


def as_causal_lm(module: nn.Module) -> nn.Module:
    """`module` itself if it is a transformers model, else a `CausalLMView` of it (shares its parameters)."""
    return module if hasattr(module, "config") and hasattr(module, "generate") else CausalLMView(module)


def trainable_parameters(module: nn.Module) -> int:
    """Parameters with `requires_grad=True`, each shared tensor counted once."""
    return lora.trainable_parameters(module)


def trainable_bytes(module: nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes to store the trainable parameters in `dtype` (bf16 by default, as adapters are shipped)."""
    return trainable_parameters(module) * torch.finfo(dtype).bits // 8


@torch.no_grad()
def seconds_per_token(module: nn.Module, batch: dict[str, torch.Tensor], repeats: int = 20) -> float:
    """Fastest of `repeats` forward passes over `batch`, divided by its real (unpadded) tokens.

    The minimum, not the median: other jobs on a shared machine only ever add time, so the fastest pass is the
    closest to the method's own cost (a median over 5 passes put full fine-tuning, the plain architecture,
    26 % above the base model on 2 shared CPU cores).
    """
    view = as_causal_lm(module).eval()
    logits_of(view(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits_of(view(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
        times.append(time.perf_counter() - start)
    return min(times) / int(batch["attention_mask"].sum())


@dataclass
class MethodResult:
    """One row of the comparison table."""

    method: str
    trainable: int  # parameters trained (and stored per task)
    adapter_bytes: int  # those parameters in bf16
    accuracy: float  # exact-match accuracy on the held-out rows, after training
    seconds_per_step: float  # mean wall time of one optimizer step
    seconds_per_token: float  # forward time per token at inference (teacher-forced batch)
    losses: list[float]


def run_method(name: str, module: nn.Module, tokenizer, train_rows: Sequence[dict], test_rows: Sequence[dict],
               steps: int, lr: float, batch_size: int, seed: int = 0, progress: bool = True) -> MethodResult:
    """Train `module` (only its parameters with requires_grad) with `ptlab.lora.train` and measure it.

    Args:
        module: a transformers model or a module whose forward(input_ids, attention_mask) gives logits.
        train_rows, test_rows: chat rows (`prompt_messages`, `answer`) as `ptlab.tinyworld.chat_dataset` makes.
    """
    view = as_causal_lm(module)
    torch.manual_seed(seed)
    start = time.perf_counter()
    losses = lora.train(view, tokenizer, train_rows, steps=steps, lr=lr, batch_size=batch_size, seed=seed,
                        desc=name, progress=progress)
    per_step = (time.perf_counter() - start) / max(1, steps)
    batch = lora.collate(tokenizer, [test_rows[i] for i in range(min(16, len(test_rows)))])
    device = next(module.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    return MethodResult(name, trainable_parameters(module), trainable_bytes(module),
                        lora.accuracy(view, tokenizer, test_rows), per_step, seconds_per_token(module, batch), losses)


def format_table(results: Sequence[MethodResult], base_seconds_per_token: float) -> str:
    """The comparison table as Markdown-like text; inference overhead relative to the base model."""
    lines = [f"{'method':<28} {'trainable':>10} {'bytes (bf16)':>13} {'accuracy':>9} {'ms/step':>8} {'overhead':>9}"]
    for r in results:
        lines.append(f"{r.method:<28} {r.trainable:>10,} {r.adapter_bytes:>13,} {r.accuracy:>9.1%} "
                     f"{1e3 * r.seconds_per_step:>8.1f} {r.seconds_per_token / base_seconds_per_token - 1:>+9.0%}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# BitDelta: a fine-tune as base weights + one bit per weight + one scale per matrix


class BitDeltaLinear(nn.Module):
    """A linear layer computing x (W_base + scale * sign)^T, with `scale` the only trainable number.

    `sign` is decompressed once from the packed bits with scale 1 (so any decompress works, differentiable
    or not) and kept as a buffer; the packed bits are kept too, since they are what one would store.
    """

    def __init__(self, base_weight: torch.Tensor, bits: torch.Tensor, scale: torch.Tensor, decompress: Decompress):
        super().__init__()
        shape = tuple(base_weight.shape)  # (d_out, d_in)
        unit = torch.ones((), dtype=torch.float32, device=base_weight.device)
        self.register_buffer("base_weight", base_weight.detach().clone())
        self.register_buffer("bits", bits.detach().clone())
        self.register_buffer("sign", decompress(bits, unit, shape).to(base_weight.dtype).detach())  # (d_out, d_in)
        self.scale = nn.Parameter(torch.as_tensor(scale, dtype=base_weight.dtype, device=base_weight.device).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.base_weight + self.scale * self.sign)


def decoder_linears(model: nn.Module) -> list[str]:
    """Names of the nn.Linear modules inside the decoder layers (the head and embeddings are not among them)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and ".layers." in f".{name}"]


def apply_bitdelta(base: nn.Module, fine: nn.Module, compress: Compress, decompress: Decompress) -> nn.Module:
    """A copy of `fine` whose decoder linear weights are W_base + decompress(compress(W_fine - W_base)).

    Only the linear layers of the decoder are compressed; the embeddings (tied to the head) and the norm gains
    stay the fine-tune's, uncompressed (`bitdelta_bytes` counts them in bf16).
    All parameters are frozen except the scales.
    """
    model = copy.deepcopy(fine).requires_grad_(False)
    base_modules = dict(base.named_modules())
    for name in decoder_linears(model):
        parent, _, child = name.rpartition(".")
        w_base = base_modules[name].weight.detach()
        delta = getattr(model.get_submodule(parent), child).weight.detach() - w_base  # (d_out, d_in)
        bits, scale = compress(delta)
        setattr(model.get_submodule(parent), child, BitDeltaLinear(w_base, bits, scale, decompress))
    return model


def bitdelta_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes per part of a model made by `apply_bitdelta`: packed signs, scales (bf16), and the parameters
    that are kept in full (embeddings, norms) in bf16; and the bf16 bytes of the linear deltas uncompressed."""
    layers = [m for m in model.modules() if isinstance(m, BitDeltaLinear)]
    kept = sum(p.numel() for p in model.parameters() if not any(p is m.scale for m in layers))
    return {
        "sign_bits": sum(m.bits.numel() * m.bits.element_size() for m in layers),
        "scales": 2 * len(layers),
        "kept_bf16": 2 * kept,
        "delta_bf16": 2 * sum(m.sign.numel() for m in layers),
    }


def distill_scales(model: nn.Module, teacher: nn.Module, tokenizer, rows: Sequence[dict], steps: int,
                   lr: float = 1e-4, batch_size: int = 8, seed: int = 0, progress: bool = True) -> list[float]:
    """BitDelta's scale distillation: train only the scales so the model's logits match the teacher's.

    Loss: mean squared error between the two models' logits at the real (unpadded) positions of chat
    prompts + answers (BitDelta's objective ||Z_fine(x) - Z_bin(x; alpha)||^2, averaged over positions and the
    vocabulary). Returns the loss per step.
    """
    import random

    from tqdm.auto import tqdm

    scales = [m.scale for m in model.modules() if isinstance(m, BitDeltaLinear)]
    optimizer = torch.optim.Adam(scales, lr=lr)
    device = scales[0].device
    rng = random.Random(seed)
    losses = []
    for _ in tqdm(range(steps), desc="scale distillation", disable=not progress, leave=False):
        batch = lora.collate(tokenizer, rng.sample(list(rows), batch_size))
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        with torch.no_grad():
            target = teacher(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        logits = model(input_ids=ids, attention_mask=mask).logits  # (B, T, V)
        keep = mask.bool()  # (B, T)
        loss = (logits[keep] - target[keep]).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
