"""Support code for lab 06 (QLoRA): load a model in 4 bits or in full precision, add peft LoRA, measure memory.

None of the lab's graded functions live here (`absmax_quantize`, `zeropoint_quantize`,
`blockwise_absmax_quantize`, `nf4_codebook`, `nf4_quantize`, `nf4_dequantize`, `double_quantize`,
`bits_per_parameter`, `int8_matmul_with_outliers`, `model_memory_bytes`): students write those. This
module only runs the experiment around them, through the libraries a practitioner would use:
transformers' `BitsAndBytesConfig`, peft's `prepare_model_for_kbit_training` and `LoraConfig`.
Training and the accuracy probe are `ptlab.lora.train` and `ptlab.lora.accuracy` (lab 05's loop).

Two tracks, one code path: on a CPU the tiny course model trains in float32; on a GPU a Hub model
trains with bf16 compute, or fp16 on GPUs without bf16 (a T4).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence

import torch
from torch import nn

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")  # LoRA targets: the attention projections


def compute_dtype(device: torch.device) -> torch.dtype:
    """The dtype matmuls run in: float32 on a CPU, bf16 on a GPU that has it, else fp16 (a T4)."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def nf4_config(dtype: torch.dtype, skip: Sequence[str] = ()):
    """The QLoRA paper's storage recipe: NF4 weights, double-quantized constants, `dtype` compute.

    `skip` names modules to keep unquantized (the output head always is, as transformers does by default).
    """
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=["lm_head", *skip],  # the option's name is historic; it applies to 4-bit too
    )


BLOCKSIZE = 64  # bitsandbytes' 4-bit block size (BitsAndBytesConfig's default)


def cpu_unsafe_modules(name: str) -> list[str]:
    """Linear layers whose in_features is not a multiple of the 4-bit block size (64).

    bitsandbytes 0.50's compiled CPU `dequantize_4bit` numbers the blocks row by row, not over the flattened
    weight as `quantize_4bit` does, so for such layers (tiny-base's down_proj reads 688 features) it
    returns wrong weights (its pure-torch reference kernel and the CUDA kernels are right). On a CPU we keep
    these layers unquantized rather than train on corrupted weights.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from ptlab import models

    source = str(models.checkpoint_path(name)) if name in models.TINY_MODELS else name
    with torch.device("meta"):  # shapes only, no memory
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))
    return sorted({module_name.rsplit(".", 1)[-1] for module_name, module in skeleton.named_modules()
                   if isinstance(module, nn.Linear) and module.in_features % BLOCKSIZE})


def load(name: str, device: torch.device, quantize: bool):
    """(model, tokenizer) for training: 4-bit NF4 when `quantize`, else full precision (fp32 on CPU).

    Args:
        name: a tiny model name ("tiny-base"), a folder, or a Hub id.
        device: where to put it; "cuda" loads onto GPU 0.
        quantize: load the linear layers' weights as bitsandbytes `Params4bit` (NF4, double quant);
            on a CPU, layers listed by `cpu_unsafe_modules` stay in float32.
    """
    from ptlab import models

    dtype = compute_dtype(device)
    device_map = {"": 0} if device.type == "cuda" else "cpu"
    kwargs = {"device_map": device_map, "dtype": dtype}
    if quantize:
        skip = cpu_unsafe_modules(name) if device.type == "cpu" else []
        kwargs["quantization_config"] = nf4_config(dtype, skip)
    model, tokenizer = models.load(name, **kwargs)
    if quantize and device.type == "cpu":
        # On CPUs with AVX512-bf16, bitsandbytes repacks a 4-bit weight into a CPU inference layout on the
        # first no-grad forward; that layout needs out_features % 32 == 0 (tiny-base's MLP has 688) and
        # changes the bytes we inspect. Keep the standard NF4 layout: dequantize + matmul.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    return model, tokenizer


def add_lora(model, r: int = 8, alpha: int = 16, targets: Sequence[str] = ATTENTION,
             quantized: bool = False, gradient_checkpointing: bool = False):
    """Freeze the model and add peft LoRA adapters (rank `r`, scale alpha / r) on `targets`.

    A 4-bit model first goes through `prepare_model_for_kbit_training` (norms and head in fp32, input
    gradients on, optional gradient checkpointing), as in the QLoRA recipe.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets),
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _is_4bit(param: torch.Tensor) -> bool:
    return getattr(param, "quant_state", None) is not None


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Parameters stored in 4 bits ("nf4", counted as the unpacked weight's elements) and the rest."""
    counts = {"nf4": 0, "other": 0}
    for param in model.parameters():
        if _is_4bit(param):
            counts["nf4"] += int(torch.Size(param.quant_state.shape).numel())
        else:
            counts["other"] += param.numel()
    return counts


def _quant_state_tensors(state) -> Iterator[tuple[str, torch.Tensor]]:
    """(kind, tensor) for what a bitsandbytes QuantState keeps: the block constants (absmax, offset, and
    the nested state of double quantization) and the code tables (16 NF4 levels, 256 8-bit levels)."""
    for attr, kind in (("absmax", "nf4_constants"), ("offset", "nf4_constants"), ("code", "nf4_code_tables")):
        value = getattr(state, attr, None)
        if isinstance(value, torch.Tensor):
            yield kind, value
    nested = getattr(state, "state2", None)
    if nested is not None:
        yield from _quant_state_tensors(nested)


def weight_memory_bytes(model: nn.Module) -> dict[str, int]:
    """Measured bytes of the weights: packed 4-bit codes, their quantization constants, everything else.

    Each tensor's storage is counted once (tied embeddings count once). bitsandbytes gives every layer its
    own copy of the code tables (about 1 KB); they are listed apart because the formula leaves them out.
    Returns {"nf4_codes", "nf4_constants", "nf4_code_tables", "other", "total"} in bytes.
    """
    seen: set[int] = set()
    out = {"nf4_codes": 0, "nf4_constants": 0, "nf4_code_tables": 0, "other": 0}

    def add(key: str, t: torch.Tensor) -> None:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            out[key] += t.untyped_storage().nbytes()

    for param in model.parameters():
        if _is_4bit(param):
            add("nf4_codes", param.data)
            for kind, t in _quant_state_tensors(param.quant_state):
                add(kind, t)
        else:
            add("other", param.data)
    out["total"] = sum(out.values())
    return out


@contextlib.contextmanager
def peak_gpu_memory(device: torch.device) -> Iterator[dict[str, int | None]]:
    """Measure the peak GPU memory allocated inside the block (bytes); None on a CPU."""
    result: dict[str, int | None] = {"peak_bytes": None}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    try:
        yield result
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize()
            result["peak_bytes"] = torch.cuda.max_memory_allocated()


def free() -> None:
    """Collect garbage and return cached GPU memory, so the next measurement starts clean (`del` first)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
