"""Unit tests of ptlab.peft_methods, the non-graded support code of lab 08 (tiny seeded fixtures, CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ptlab import peft_methods, tinyworld


@pytest.fixture(scope="module")
def tokenizer():
    return tinyworld.hf_tokenizer()


@pytest.fixture(scope="module")
def rows():
    data = tinyworld.chat_dataset("train", n=8, tasks=["upper"])
    return [data[i] for i in range(8)]


def tiny_llama(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


class LogitsOnly(nn.Module):
    """A module that returns a plain logits tensor, as the lab's PromptTuning and PrefixTuning do."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits[:, :]


def numpy_compress(delta: torch.Tensor):
    """Reference packing (not the lab's code): NumPy's packbits, lowest bit first; scale mean |delta|."""
    bits = np.packbits((delta >= 0).numpy().reshape(-1), bitorder="little")
    return torch.from_numpy(bits), delta.abs().mean()


def numpy_decompress(bits, scale, shape):
    n = int(np.prod(shape))
    signs = np.unpackbits(bits.numpy(), bitorder="little")[:n].astype(np.float32) * 2 - 1
    return scale * torch.from_numpy(signs).reshape(shape)


def test_view_gives_the_transformers_loss_of_the_wrapped_model(tokenizer, rows):
    model = tiny_llama(tokenizer.vocab_size if hasattr(tokenizer, "vocab_size") else len(tokenizer))
    batch = peft_methods.lora.collate(tokenizer, rows[:3])
    view = peft_methods.as_causal_lm(LogitsOnly(model))
    assert isinstance(view, peft_methods.CausalLMView)
    out = view(**batch)
    torch.testing.assert_close(out.loss, model(**batch).loss)
    torch.testing.assert_close(out.logits, model(**batch).logits)


def test_a_transformers_model_is_its_own_view():
    model = tiny_llama(32)
    assert peft_methods.as_causal_lm(model) is model


def test_trainable_bytes_are_two_per_parameter_in_bf16():
    layer = nn.Linear(4, 3)
    layer.bias.requires_grad_(False)
    assert peft_methods.trainable_parameters(layer) == 12
    assert peft_methods.trainable_bytes(layer) == 24
    assert peft_methods.trainable_bytes(layer, torch.float32) == 48


def test_run_method_trains_only_what_requires_grad_and_measures(tokenizer, rows):
    model = tiny_llama(len(tokenizer))
    model.requires_grad_(False)
    model.model.norm.weight.requires_grad_(True)
    frozen = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    result = peft_methods.run_method("norm", LogitsOnly(model), tokenizer, rows, rows[:4], steps=3, lr=1e-2,
                                     batch_size=4, progress=False)
    assert result.trainable == 32 and result.adapter_bytes == 64
    assert len(result.losses) == 3 and 0.0 <= result.accuracy <= 1.0
    assert result.seconds_per_step > 0 and result.seconds_per_token > 0
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, frozen)
    assert not torch.equal(model.model.norm.weight.detach(), torch.ones(32))
    assert "norm" in peft_methods.format_table([result], result.seconds_per_token)


def test_decoder_linears_leave_out_the_head():
    names = peft_methods.decoder_linears(tiny_llama(32))
    assert len(names) == 2 * 7 and "lm_head" not in names
    assert "model.layers.1.self_attn.k_proj" in names


def test_apply_bitdelta_puts_base_plus_scaled_signs_in_every_decoder_linear():
    base, fine = tiny_llama(32, seed=0), tiny_llama(32, seed=1)
    model = peft_methods.apply_bitdelta(base, fine, numpy_compress, numpy_decompress)
    name = "model.layers.1.mlp.down_proj"
    layer = model.get_submodule(name)
    assert isinstance(layer, peft_methods.BitDeltaLinear)
    w_base, w_fine = base.get_submodule(name).weight.detach(), fine.get_submodule(name).weight.detach()
    delta = w_fine - w_base
    expected = w_base + delta.abs().mean() * torch.where(delta >= 0, 1.0, -1.0)
    x = torch.randn(3, w_base.shape[1])
    torch.testing.assert_close(layer(x), x @ expected.T)
    # only the 14 scales train; the embeddings and norms are the fine-tuned model's
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        f"{n}.scale" for n in peft_methods.decoder_linears(fine)]
    torch.testing.assert_close(model.model.norm.weight, fine.model.norm.weight)
    size = peft_methods.bitdelta_bytes(model)
    n_linear = sum(fine.get_submodule(n).weight.numel() for n in peft_methods.decoder_linears(fine))
    assert size["delta_bf16"] == 2 * n_linear and size["sign_bits"] == n_linear // 8 and size["scales"] == 2 * 14


def test_distill_scales_moves_only_the_scales_and_lowers_the_loss(tokenizer, rows):
    base, fine = tiny_llama(len(tokenizer), seed=0), tiny_llama(len(tokenizer), seed=1)
    with torch.no_grad():  # a fine-tune that is a small change of the base
        for pb, pf in zip(base.parameters(), fine.parameters()):
            pf.copy_(pb + 0.3 * (pf - pb))
    model = peft_methods.apply_bitdelta(base, fine, numpy_compress, numpy_decompress)
    with torch.no_grad():  # start from a poor scale so there is something to distill
        for m in model.modules():
            if isinstance(m, peft_methods.BitDeltaLinear):
                m.scale.mul_(3.0)
    before = {n: b.clone() for n, b in model.named_buffers()}
    losses = peft_methods.distill_scales(model, fine, tokenizer, rows, steps=15, lr=1e-3, batch_size=4, progress=False)
    assert len(losses) == 15 and losses[-1] < losses[0]
    assert all(torch.equal(b, before[n]) for n, b in model.named_buffers())
