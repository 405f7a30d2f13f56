"""ptlab.tinyworld.hubtwin: the test suite's stand-in for a Hub model is in SmolLM2's format and has
SmolLM2's features (byte-level BPE, ChatML, pad = eos, no BOS added, GQA, tied embeddings, no biases)."""

import hashlib

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from ptlab import models
from ptlab.tinyworld import chat_dataset, hubtwin

HUB_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json")


def _digest(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in HUB_FILES}


def test_twin_folder_holds_the_hub_files(hub_twin):
    missing = [name for name in HUB_FILES if not (hub_twin / name).is_file()]
    assert missing == []


def test_twin_loads_with_the_auto_classes_and_ptlab_models_load(hub_twin):
    causal = AutoModelForCausalLM.from_pretrained(hub_twin)
    tokenizer = AutoTokenizer.from_pretrained(hub_twin)
    reward = AutoModelForSequenceClassification.from_pretrained(hub_twin, num_labels=1)
    model, tok = models.load(str(hub_twin))
    assert type(causal).__name__ == "LlamaForCausalLM" and type(reward).__name__ == "LlamaForSequenceClassification"
    assert reward.score.out_features == 1
    assert len(tokenizer) == causal.config.vocab_size == model.config.vocab_size
    assert tok.pad_token_id == model.config.pad_token_id
    # SmolLM2 ships bf16 weights and transformers 5 loads a checkpoint in its stored dtype by default
    assert causal.dtype == torch.bfloat16


def test_models_load_gives_float32_unless_asked_for_the_stored_dtype(hub_twin):
    assert models.load(str(hub_twin))[0].dtype == torch.float32
    assert models.load(str(hub_twin), kind="reward")[0].dtype == torch.float32
    assert models.load(str(hub_twin), dtype="auto")[0].dtype == torch.bfloat16


def test_twin_has_smollm2_architecture_features(hub_twin):
    model = AutoModelForCausalLM.from_pretrained(hub_twin)
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads, "grouped-query attention"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "tied embeddings"
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(m.bias is None for m in linears), "no biases (Qwen2 has q/k/v biases, Llama none)"
    assert all(m.in_features % 64 == 0 for m in linears), "every layer fits bitsandbytes' 4-bit blocks"
    assert 1e5 < model.num_parameters() < 1e6


def test_twin_tokenizer_is_subword_and_round_trips(hub_twin):
    tokenizer = AutoTokenizer.from_pretrained(hub_twin)
    texts = [m["content"] for chat in chat_dataset("test", n=20)["messages"] for m in chat]
    lengths = [(len(tokenizer(t)["input_ids"]), len(t)) for t in texts]
    assert any(n_tokens < n_chars for n_tokens, n_chars in lengths), "BPE merges characters into tokens"
    assert len({n_chars - n_tokens for n_tokens, n_chars in lengths}) > 1, "the merge count depends on the text"
    assert all(tokenizer.decode(tokenizer(t)["input_ids"]) == t for t in texts)
    assert tokenizer("3+4")["input_ids"] == tokenizer("3")["input_ids"] + tokenizer("+")["input_ids"] \
        + tokenizer("4")["input_ids"], "digits are split one by one, as SmolLM2's pre-tokenizer does"


def test_twin_tokenizer_has_smollm2_special_tokens_and_chat_template(hub_twin):
    tokenizer = AutoTokenizer.from_pretrained(hub_twin)
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_end|>", "<|im_start|>")
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tokenizer("hi")["input_ids"][0] != tokenizer.bos_token_id, "like SmolLM2, no BOS is added"
    prompt = [{"role": "user", "content": "hi"}]
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": "HI"}], tokenize=False)
    assert full.startswith(text) and full.endswith("HI<|im_end|>\n")


def test_twin_generates_and_scores_a_padded_batch(hub_twin):
    model, tokenizer = models.load(str(hub_twin))
    tokenizer.padding_side = "left"
    batch = tokenizer(["Write kes", "a"], return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (2, batch["input_ids"].shape[1] + 4)
    reward, _ = models.load(str(hub_twin), kind="reward")
    assert reward(**batch).logits.shape == (2, 1)


def test_twin_build_is_deterministic_in_its_seed(hub_twin, tmp_path):
    again = hubtwin.build(tmp_path / "again", seed=0)
    other = hubtwin.build(tmp_path / "other", seed=1)
    assert _digest(again) == _digest(hub_twin)
    assert _digest(other)["model.safetensors"] != _digest(hub_twin)["model.safetensors"]
    assert _digest(other)["tokenizer.json"] == _digest(hub_twin)["tokenizer.json"], "the seed draws weights only"


def test_build_leaves_the_callers_random_state_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    hubtwin.build(tmp_path / "twin", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_is_course_model_tells_tiny_names_from_folders_and_hub_ids(hub_twin):
    assert models.is_course_model("tiny-base") and models.is_course_model("tiny-rm")
    assert not models.is_course_model(str(hub_twin))
    assert not models.is_course_model("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.parametrize("vocab_size", [300, 600])
def test_train_bpe_reaches_the_requested_vocabulary(vocab_size):
    tok = hubtwin.train_bpe(hubtwin.training_text(200), vocab_size)
    assert tok.get_vocab_size() == vocab_size


def test_base_flavour_has_smollm2_base_tokens_no_pad_and_no_template(hub_twin_base):
    tokenizer = AutoTokenizer.from_pretrained(hub_twin_base)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<|endoftext|>", None)
    assert tokenizer.chat_template is None


def test_models_load_gives_a_base_model_a_pad_token_and_chatml(hub_twin_base):
    model, tok = models.load(str(hub_twin_base))
    assert tok.pad_token == "<|endoftext|>" and model.config.pad_token_id == 0, "models.load pads with eos"
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>"), "ChatML's markers are the model's own special tokens"


def test_flavours_share_the_tokenizer(hub_twin, hub_twin_base):
    # (the weights differ in one row: Llama zeroes the pad token's embedding at init, and base has no pad)
    assert _digest(hub_twin_base)["tokenizer.json"] == _digest(hub_twin)["tokenizer.json"]


def test_unknown_flavour_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="instruct"):
        hubtwin.build(tmp_path / "x", flavour="chat")
