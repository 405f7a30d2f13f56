"""Unit tests of ptlab.qlora (lab 06's non-graded support): 4-bit loading, LoRA set-up, memory counts.

Tiny random Llamas saved to a temporary folder in the Hugging Face format; CPU only, no network.
"""

from __future__ import annotations

import pytest
import torch

from ptlab import env

pytest.importorskip("bitsandbytes")
env.quiet_libraries()  # bitsandbytes prints a CPU notice on import

from ptlab import qlora  # noqa: E402


def _save_llama(path, intermediate_size: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from ptlab.tinyworld import hf_tokenizer

    tokenizer = hf_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=intermediate_size,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama96")
    _save_llama(path, intermediate_size=96)  # down_proj reads 96 features: not a multiple of 64
    return str(path)


@pytest.fixture(scope="module")
def llama4bit(llama_dir):
    with env.quiet():
        return qlora.load(llama_dir, torch.device("cpu"), quantize=True)


def test_compute_dtype_is_float32_on_cpu():
    assert qlora.compute_dtype(torch.device("cpu")) == torch.float32


def test_nf4_config_is_the_qlora_recipe():
    config = qlora.nf4_config(torch.bfloat16, skip=["down_proj"])
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert set(config.llm_int8_skip_modules) == {"lm_head", "down_proj"}


def test_cpu_unsafe_modules_lists_layers_whose_inputs_are_not_a_multiple_of_64(llama_dir, tmp_path):
    assert qlora.cpu_unsafe_modules(llama_dir) == ["down_proj"]
    _save_llama(tmp_path, intermediate_size=128)
    assert qlora.cpu_unsafe_modules(str(tmp_path)) == []


def test_load_4bit_quantizes_the_safe_linear_layers_only(llama4bit):
    import bitsandbytes as bnb

    model, _ = llama4bit
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.q_proj, bnb.nn.Linear4bit)
    assert isinstance(layer.mlp.up_proj, bnb.nn.Linear4bit)
    assert type(layer.mlp.down_proj) is torch.nn.Linear  # kept in float32 on a CPU


def test_parameter_counts_add_up_to_the_unquantized_model(llama_dir, llama4bit):
    with env.quiet():
        full, _ = qlora.load(llama_dir, torch.device("cpu"), quantize=False)
    counts = qlora.parameter_counts(llama4bit[0])
    assert counts["nf4"] == 4 * 64 * 64 + 2 * 64 * 96  # q, k, v, o and gate, up
    assert counts["nf4"] + counts["other"] == sum(p.numel() for p in full.parameters())
    assert qlora.parameter_counts(full) == {"nf4": 0, "other": counts["nf4"] + counts["other"]}


def test_weight_memory_matches_the_storage_format(llama4bit):
    model, _ = llama4bit
    counts = qlora.parameter_counts(model)
    memory = qlora.weight_memory_bytes(model)
    assert memory["nf4_codes"] == counts["nf4"] // 2  # two 4-bit codes per byte
    assert memory["other"] == counts["other"] * 4  # float32
    # one uint8 code per block of 64, plus per layer one float32 absmax2 per 256 blocks and the offset
    n_blocks_per_layer = [64 * 64 // 64] * 4 + [64 * 96 // 64] * 2
    expected = sum(n + 4 * -(-n // 256) + 4 for n in n_blocks_per_layer)
    assert memory["nf4_constants"] == expected
    assert memory["nf4_code_tables"] == 6 * (16 + 256) * 4  # one NF4 and one 8-bit table per layer
    assert memory["total"] == sum(v for k, v in memory.items() if k != "total")


def test_add_lora_trains_only_the_adapters(llama_dir):
    with env.quiet():
        model, _ = qlora.load(llama_dir, torch.device("cpu"), quantize=True)  # peft changes it in place
    peft_model = qlora.add_lora(model, r=4, alpha=8, quantized=True)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert sum(p.numel() for n, p in peft_model.named_parameters() if p.requires_grad) == 4 * 4 * (64 + 64)


def test_4bit_forward_is_close_to_the_full_precision_one(llama_dir, llama4bit):
    with env.quiet():
        full, _ = qlora.load(llama_dir, torch.device("cpu"), quantize=False)
    ids = torch.arange(3, 19).view(2, 8)
    with torch.no_grad():
        exact = full(input_ids=ids).logits
        approx = llama4bit[0](input_ids=ids).logits
    # NF4's relative RMS error on normal weights is about 10%; the logits should not be further off
    assert float((approx - exact).norm() / exact.norm()) < 0.2


def test_peak_gpu_memory_is_none_on_cpu():
    with qlora.peak_gpu_memory(torch.device("cpu")) as peak:
        torch.ones(3).sum()
    assert peak["peak_bytes"] is None
