"""The shipped tiny checkpoints: offline loading with the Auto classes, sizes, and a fast evaluation.

The fast evaluation uses 40 held-out items per measure. Its thresholds sit below the full bars (binomial
noise on 40 items is about +-7 points at 80%), yet far above what a randomly initialised model of the
same shape reaches (about 0%), and a test checks that such a model fails them.
"""

from __future__ import annotations

import pytest
import torch

from ptlab.models import TINY_MODELS, checkpoint_path, load
from ptlab.tinyworld import evaluate as ev

N_FAST = 40
FAST_BARS = {"icl_k0_max": 0.40, "icl_k8_min": 0.60, "cot_min": 0.50, "cot_gap_min": 0.20,
             "chat_base_max": 0.30, "chat_sft_min": 0.70, "sft_elaborate_min": 0.02,
             "rm_min": 0.80, "rm_policy_min": 0.70, "rm_elaborate_min": 0.60, "best_of_16_gain_min": 0.0}
# The sampled measures at a fast size: 20 held-out prompts x 16 samples of tiny-sft at temperature 1.
FAST_PROMPTS, FAST_BEST_OF = 20, (1, 4, 16)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def base():
    return load("tiny-base")


@pytest.fixture(scope="module")
def sft_loaded():
    """tiny-sft and its tokenizer as `load` returns them (conftest's `sft` prepares the tokenizer for chats)."""
    return load("tiny-sft")


# ---------------------------------------------------------------- files and loading


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_checkpoint_has_the_hugging_face_files(name):
    path = checkpoint_path(name)
    for file in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "README.md"):
        assert (path / file).exists(), f"{name} lacks {file}"


def test_checkpoints_fit_the_size_budget():
    sizes = {name: (checkpoint_path(name) / "model.safetensors").stat().st_size for name in TINY_MODELS}
    assert all(s <= 16e6 for s in sizes.values()), sizes
    assert sum(sizes.values()) <= 40e6, sizes


def test_auto_classes_load_the_shipped_files_offline():
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint_path("tiny-base")))
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_path("tiny-base")))
    assert tokenizer.chat_template is not None
    reward_model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint_path("tiny-rm")))
    assert reward_model.config.num_labels == 1 and reward_model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.model_type == "llama"


def test_base_has_the_llama_module_names_that_lora_targets(base):
    model, _ = base
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names


def test_load_picks_the_kind_from_the_tiny_name():
    reward_model, _ = load("tiny-rm")
    assert reward_model.__class__.__name__ == "LlamaForSequenceClassification"
    assert not reward_model.training


def test_load_accepts_a_folder_like_a_hub_id():
    model, tokenizer = load(str(checkpoint_path("tiny-sft")))
    assert model.__class__.__name__ == "LlamaForCausalLM" and tokenizer.pad_token is not None


def test_unknown_names_and_kinds_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid names"):
        checkpoint_path("tiny-huge")
    with pytest.raises(ValueError, match="kind should be one of"):
        load("tiny-base", kind="seq2seq")


def test_loaded_model_is_deterministic_and_batch_independent(base):
    model, tokenizer = base
    ids = tokenizer(["kes -> KES\nbodu -> ", "Q: 1+2+3+4+5+6\nA: "], padding=True, return_tensors="pt")
    with torch.no_grad():
        both = model(**ids).logits
        one = model(input_ids=ids["input_ids"][:1, : int(ids["attention_mask"][0].sum())]).logits
    # padding on the right must not change the first row's logits; 1e-4 covers fp32 kernel differences
    assert torch.allclose(both[0, : one.shape[1]], one[0], atol=1e-4)


# ---------------------------------------------------------------- generation in rounds


def test_generation_in_rounds_equals_one_generate_call_per_prompt(sft_loaded):
    from ptlab.tinyworld import SFT_TASKS, chat_dataset

    model, tokenizer = sft_loaded
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    prompts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
               for p in chat_dataset("test", n=12, tasks=SFT_TASKS, seed=5)["prompt_messages"]]
    with torch.no_grad():
        expected = []
        for ids in prompts:  # no padding, no rounds: plain greedy generate, cut after <|end|>
            new = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=30, do_sample=False,
                                 eos_token_id=end, pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist()
            expected.append(new[: new.index(end) + 1] if end in new else new)
    assert ev.greedy_generate(model, tokenizer, prompts, 30, stop_ids=[end], batch_size=5, round_tokens=3) == expected


def test_sampled_replies_are_reproducible_from_the_seed(sft_loaded):
    first = ev.policy_samples(*sft_loaded, 4, 6, seed=7)
    assert first["replies"] == ev.policy_samples(*sft_loaded, 4, 6, seed=7)["replies"]
    assert first["replies"] != ev.policy_samples(*sft_loaded, 4, 6, seed=8)["replies"]
    assert [len(r) for r in first["replies"]] == [6] * 4


# ---------------------------------------------------------------- fast evaluation


def _passes(r: dict) -> dict[str, bool]:
    saved = dict(ev.BARS)
    ev.BARS.update(FAST_BARS)
    try:
        return ev.verdicts(r)
    finally:
        ev.BARS.update(saved)


def _passing(**measured) -> dict:
    """A results dict that passes every bar, with the `measured` entries in place of the passing ones."""
    r = {"icl": {0: 0.0, 8: 1.0}, "arithmetic": {"direct": 0.0, "steps": 1.0}, "chat_base": 0.0, "chat_sft": 1.0,
         "sft_samples": {"elaborate": 1.0}, "rm": {"oracle": 1.0}, "rm_policy": {"correct_above_wrong": 1.0},
         "rm_elaborate": {"prefers_elaborate": 1.0},
         "best_of_n": {1: {"correct": 0.0, "filler": 0.0}, 16: {"correct": 1.0, "filler": 1.0}}}
    return {**r, **measured}


def _base_results(model, tokenizer, icl: dict, arithmetic: dict) -> dict:
    return _passing(icl=icl, arithmetic=arithmetic)


def test_base_shows_in_context_learning(base):
    model, tokenizer = base
    icl = {0: ev.icl_accuracy(model, tokenizer, 0, N_FAST), 8: ev.icl_accuracy(model, tokenizer, 8, N_FAST)}
    verdict = _passes(_base_results(model, tokenizer, icl, {"direct": 0.0, "steps": 1.0}))
    assert verdict["icl"], f"few-shot accuracy {icl}"


def test_base_shows_chain_of_thought(base):
    model, tokenizer = base
    arithmetic = ev.arithmetic_accuracy(model, tokenizer, N_FAST)
    verdict = _passes(_base_results(model, tokenizer, {0: 0.0, 8: 1.0}, arithmetic))
    assert verdict["cot"], f"arithmetic accuracy {arithmetic}"


def test_sft_follows_instructions_and_base_does_not(base, sft_loaded):
    from ptlab.tinyworld import SFT_TASKS

    base_em = ev.chat_exact_match(*base, N_FAST, SFT_TASKS, core=True)
    sft_em = ev.chat_exact_match(*sft_loaded, N_FAST, SFT_TASKS, core=True)
    assert _passes(_passing(chat_base=base_em, chat_sft=sft_em))["chat"], (base_em, sft_em)


def test_reward_model_agrees_with_the_oracle():
    acc = ev.reward_accuracy(*load("tiny-rm"), N_FAST)
    assert _passes(_passing(rm=acc))["rm"], acc


@pytest.fixture(scope="module")
def policy(sft_loaded):
    """tiny-sft's samples on FAST_PROMPTS held-out prompts, and the shipped tiny-rm's rewards of them."""
    samples = ev.policy_samples(*sft_loaded, FAST_PROMPTS, max(FAST_BEST_OF))
    ranking, scores = ev.policy_ranking(*load("tiny-rm"), samples)
    return samples, ranking, scores


def test_sft_samples_include_elaborate_replies(policy):
    stats = ev.sample_stats(policy[0])
    assert _passes(_passing(sft_samples=stats))["sampling"], stats


def test_reward_model_ranks_the_policys_own_samples(policy):
    _, ranking, _ = policy
    assert ranking["pairs"] >= 20, ranking  # enough (correct, wrong) pairs for the share to mean something
    assert _passes(_passing(rm_policy=ranking))["rm_policy"], ranking


def test_reward_model_inherits_the_labellers_length_flaw():
    # 5 x N_FAST: elaborate pairs are 5% of the world's pairs, so this is about 84 pairs, not 14
    flaw = ev.elaborate_preference(*load("tiny-rm"), 5 * N_FAST)
    assert _passes(_passing(rm_elaborate=flaw))["rm_flaw"], flaw


# Known gap of the shipped tiny-rm (issue 12), measured with `python -m ptlab.tinyworld.evaluate` (n = 500,
# 100 prompts x 64 samples): best-of-16 by it is less often correct than a random sample (62.3% vs 83.3%),
# because it ranks the policy's correct samples above its wrong ones only 71.6% of the time: among 16 samples
# there is often a wrong one it scores above the right one. strict: when a rebuilt tiny-rm meets the bar, this
# test fails until the mark is removed.
KNOWN_GAP = pytest.mark.xfail(strict=True, reason="known gap of the shipped tiny-rm, see the comment above")


@KNOWN_GAP
def test_best_of_16_by_the_reward_model_is_more_often_correct_and_more_padded(policy):
    samples, _, scores = policy
    curve = ev.best_of_n_curve(samples, scores, FAST_BEST_OF)
    assert _passes(_passing(best_of_n=curve))["best_of_n"], curve
    assert curve[16]["proxy"] > curve[4]["proxy"] > curve[1]["proxy"], curve  # max of more draws is larger


def test_a_randomly_initialised_model_fails_the_fast_thresholds(base):
    from transformers import LlamaForCausalLM

    trained, tokenizer = base
    torch.manual_seed(0)
    random_model = LlamaForCausalLM(trained.config).eval()  # same shape and tokenizer, no training
    r = _passing(icl={0: 0.0, 8: ev.icl_accuracy(random_model, tokenizer, 8, N_FAST)},
                 arithmetic=ev.arithmetic_accuracy(random_model, tokenizer, N_FAST),
                 chat_sft=ev.chat_exact_match(random_model, tokenizer, N_FAST, ["upper", "copy"], core=True))
    verdict = _passes(r)
    assert not verdict["icl"] and not verdict["cot"] and not verdict["chat"], r


def test_a_randomly_initialised_reward_model_fails_the_fast_threshold():
    from transformers import LlamaForSequenceClassification

    trained, tokenizer = load("tiny-rm")
    torch.manual_seed(0)
    random_model = LlamaForSequenceClassification(trained.config).eval()
    acc = ev.reward_accuracy(random_model, tokenizer, N_FAST)
    assert acc["oracle"] < FAST_BARS["rm_min"], acc


def test_a_randomly_initialised_reward_model_fails_the_policy_bar(policy):
    from transformers import LlamaForSequenceClassification

    samples = policy[0]
    trained, tokenizer = load("tiny-rm")
    torch.manual_seed(0)
    random_model = LlamaForSequenceClassification(trained.config).eval()
    ranking, _ = ev.policy_ranking(random_model, tokenizer, samples)
    assert not _passes(_passing(rm_policy=ranking))["rm_policy"], ranking
