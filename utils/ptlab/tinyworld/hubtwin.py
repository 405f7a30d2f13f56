"""A Hub twin: a tiny, randomly initialised model saved in exactly the format of a SmolLM2 checkpoint.

The course promises that changing one line (`MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"`) runs a lab
on a real Hub model. The shipped tiny models cannot test that promise: their tokenizer is one character
per token, adds `<|bos|>` to every text and has a pad token distinct from the end of turn. A Hub
model differs on each point, and the test suite cannot download one (no network). So this module writes a
model that differs the way SmolLM2-Instruct does, in a few hundred kilobytes and a second:

- a byte-level BPE tokenizer (trained with `tokenizers` on the tiny world's text; digits split one by
  one, as SmolLM2's pre-tokenizer does), so token counts differ from character counts;
- SmolLM2-Instruct's special tokens and ids (`<|endoftext|>` 0, `<|im_start|>` 1, `<|im_end|>` 2), its
  chat template (ChatML with a default system turn), no BOS added by `tokenizer(text)`, and
  pad token = eos token = `<|im_end|>`;
- the Llama architecture with SmolLM2's features: grouped-query attention (fewer key/value heads than
  query heads), tied input/output embeddings, no biases in q/k/v/o or the MLP, weights stored in bf16
  (`"dtype": "bfloat16"` in config.json, as SmolLM2 ships).

`flavour="base"` writes SmolLM2-135M's (the base model's) tokenizer set-up instead: `<|endoftext|>` as
BOS, EOS and UNK, no pad token and no chat template, so a lab must bring its own template and pad token.

Its weights are random: it exercises every code path of a lab (loading, chat templates, padding,
generation, training steps, quantization), never a result. Build it with

    python -m ptlab.tinyworld.hubtwin OUT_FOLDER [--seed 0] [--flavour instruct|base]

and run a lab on it with `ptlab run LAB --solutions --model OUT_FOLDER` (tests/test_hub_track.py does).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# SmolLM2's first three special tokens, with its ids (0, 1, 2).
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END)

# flavour -> (bos, eos, pad or None, ships a chat template), as in SmolLM2-135M-Instruct / SmolLM2-135M
FLAVOURS: dict[str, tuple[str, str, str | None, bool]] = {
    "instruct": (IM_START, IM_END, IM_END, True),  # pads with its end-of-turn token
    "base": (ENDOFTEXT, ENDOFTEXT, None, False),
}

# ChatML as in SmolLM2-Instruct's tokenizer_config.json: a default system turn when the chat has none,
# a newline after each role and after each <|im_end|>. (The default system text is shorter than
# SmolLM2's own; the structure is the same.)
CHAT_TEMPLATE: str = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass
class TwinShape:
    """SmolLM2-135M's proportions, shrunk: 9 query heads over 3 key/value heads there, 4 over 2 here.

    Every linear layer's input width is a multiple of 64 (bitsandbytes' 4-bit block size), as in SmolLM2
    (576 and 1536), so 4-bit loading quantizes every layer on a CPU too.
    """

    hidden_size: int = 64
    intermediate_size: int = 192
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # grouped-query attention: two query heads share each key/value head
    head_dim: int = 16
    max_position_embeddings: int = 2048


def training_text(n_documents: int = 2000) -> list[str]:
    """The tiny world's text the BPE merges are learned from: corpus documents and chat turns."""
    from ptlab.tinyworld import chat_dataset, corpus_dataset

    texts = list(corpus_dataset("train", n=n_documents)["text"])
    for messages in chat_dataset("train", n=n_documents)["messages"]:
        texts.extend(m["content"] for m in messages)
    return texts


def train_bpe(texts: list[str], vocab_size: int = 1024) -> Tokenizer:
    """A byte-level BPE tokenizer like SmolLM2's (digits split singly, then GPT-2's byte-level regex).

    Every byte has a token (the initial alphabet), so no text is ever unknown; the special tokens take
    ids 0, 1, 2. No post-processor: `tokenizer(text)` adds no BOS, as with SmolLM2.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _check_flavour(flavour: str) -> None:
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour should be one of {list(FLAVOURS)}, got {flavour!r}")


def save_tokenizer(tok: Tokenizer, out: Path, max_length: int, flavour: str = "instruct") -> None:
    """tokenizer.json as trained, and SmolLM2's tokenizer_config.json / special_tokens_map.json."""
    _check_flavour(flavour)
    bos, eos, pad, has_template = FLAVOURS[flavour]
    tok.save(str(out / "tokenizer.json"))
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True} for i, t in enumerate(SPECIAL_TOKENS)}
    special = {"additional_special_tokens": [IM_START, IM_END], "bos_token": bos, "eos_token": eos,
               "pad_token": pad, "unk_token": ENDOFTEXT}
    special = {k: v for k, v in special.items() if v is not None}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "tokenizer_class": "GPT2Tokenizer",
        "vocab_size": tok.get_vocab_size(),
        **special,
    }
    if has_template:
        config["chat_template"] = CHAT_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


def twin_config(vocab_size: int, shape: TwinShape | None = None, flavour: str = "instruct"):
    """The LlamaConfig: SmolLM2's choices (tied embeddings, no biases, GQA, rope theta 1e5) at toy size."""
    from transformers import LlamaConfig

    _check_flavour(flavour)
    bos, eos, pad, _ = FLAVOURS[flavour]
    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    return LlamaConfig(
        vocab_size=vocab_size,
        tie_word_embeddings=True,
        attention_bias=False,  # Qwen2 has q/k/v biases; Llama and SmolLM2 have none
        mlp_bias=False,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        bos_token_id=ids[bos],
        eos_token_id=ids[eos],
        pad_token_id=ids.get(pad),
        initializer_range=0.02,
        architectures=["LlamaForCausalLM"],
        **asdict(shape or TwinShape()),
    )


def build(out: str | Path, seed: int = 0, vocab_size: int = 1024, flavour: str = "instruct",
          dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the twin to `out` (config.json, model.safetensors, generation_config.json, tokenizer files).

    Args:
        seed: draws the weights (the tokenizer depends on the world's text only).
        flavour: "instruct" (SmolLM2-135M-Instruct's tokens and chat template) or "base" (SmolLM2-135M's).
    Deterministic in its arguments (same bytes on every run); about two seconds on one CPU core.
    """
    _check_flavour(flavour)
    from transformers import GenerationConfig, LlamaForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_bpe(training_text(), vocab_size)
    shape = TwinShape()
    config = twin_config(tok.get_vocab_size(), shape, flavour)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's random state
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.to(dtype)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                               pad_token_id=config.pad_token_id)
    model.save_pretrained(str(out), safe_serialization=True)
    save_tokenizer(tok, out, shape.max_position_embeddings, flavour)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ptlab.tinyworld.hubtwin", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="folder to write the model to (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (default 1024)")
    parser.add_argument("--flavour", choices=list(FLAVOURS), default="instruct",
                        help="SmolLM2-135M-Instruct's tokenizer set-up (default) or the base model's")
    args = parser.parse_args(argv)
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = build(args.out, seed=args.seed, vocab_size=args.vocab_size, flavour=args.flavour)
    print(f"wrote a SmolLM2-format twin to {path}")


if __name__ == "__main__":
    main()
