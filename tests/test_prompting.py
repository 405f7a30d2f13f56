"""ptlab.prompting: batched decoding with a rule, random-label prompts, error bars, the reference guard."""

import random

import pytest
import torch
from transformers import TopKLogitsWarper

from ptlab import models, prompting, tinyworld


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return models.load("tiny-base")


def test_decode_batch_greedy_equals_generate_one_by_one(tiny):
    model, tok = tiny
    prompts = ["bodu -> BODU\nkes -> KES\nfami -> ", tinyworld.cot_prompt([2, 1, 3]), "Q: 1+2+3\nA: "]
    got = prompting.decode_batch(model, tok, prompts, 12, batch_size=2)  # left padding inside a batch of 2
    for prompt, text in zip(prompts, got):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        assert text == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_decode_batch_rule_chooses_every_token(tiny):
    model, tok = tiny
    x = tok.convert_tokens_to_ids("x")
    calls = []

    def always_x(logits):
        calls.append(tuple(logits.shape))
        return torch.full((logits.shape[0],), x)

    assert prompting.decode_batch(model, tok, ["ab", "abcd"], 3, rule=always_x) == ["xxx", "xxx"]
    assert calls == [(2, len(tok))] * 3


def test_decode_batch_cuts_after_the_first_stop_string(tiny):
    model, tok = tiny
    out = prompting.decode_batch(model, tok, ["bodu -> BODU\nkes -> KES\nfami -> "], 20, stop_strings=["\n"])
    assert out == ["FAMI\n"]


def test_decode_batch_restores_padding_side(tiny):
    model, tok = tiny
    side = tok.padding_side
    prompting.decode_batch(model, tok, ["a", "abc"], 1)
    assert tok.padding_side == side


def test_cut_at_stop_keeps_the_earliest_stop():
    assert prompting.cut_at_stop("12 A: 3\nQ", ["\n", "A:"]) == "12 A:"
    assert prompting.cut_at_stop("no stop", ["\n"]) == "no stop"


def test_with_random_labels_breaks_every_pair_but_keeps_words_and_outputs():
    row = tinyworld.icl_dataset("test", n=1, k=4)[0]
    shuffled = prompting.with_random_labels(row["prompt"], random.Random(0))
    before = [line.split(" -> ") for line in row["prompt"].split("\n")[:-1]]
    after = [line.split(" -> ") for line in shuffled.split("\n")[:-1]]
    assert [x for x, _ in after] == [x for x, _ in before]
    assert sorted(y for _, y in after) == sorted(y for _, y in before)
    assert all(a[1] != b[1] for a, b in zip(after, before))  # every output moved (words are distinct)
    assert shuffled.rsplit("\n", 1)[1] == row["prompt"].rsplit("\n", 1)[1]  # the query is untouched


def test_with_random_labels_leaves_one_shot_prompts_alone():
    prompt = tinyworld.icl_prompt([("kes", "KES")], "bodu")
    assert prompting.with_random_labels(prompt, random.Random(0)) == prompt


def test_mean_and_stderr_is_the_binomial_standard_error():
    m, s = prompting.mean_and_stderr([True, False, True, True])
    assert m == 0.75
    assert s == pytest.approx((0.75 * 0.25 / 4) ** 0.5)
    with pytest.raises(ValueError, match="empty"):
        prompting.mean_and_stderr([])


def test_references_disabled_raises_inside_and_restores_after():
    warper, x = TopKLogitsWarper(2), torch.randn(1, 5)
    with prompting.references_disabled():
        with pytest.raises(RuntimeError, match="TopKLogitsWarper"):
            warper(None, x)
    assert torch.isfinite(warper(None, x)).sum() == 2


def test_toy_bpe_model_merges_a_trailing_space_into_the_next_word():
    model, tok = prompting.toy_bpe_model()
    prompt, full = tok("The capital of France is ")["input_ids"], tok("The capital of France is Paris")["input_ids"]
    assert full[: len(prompt) - 1] == prompt[:-1] and full[len(prompt) - 1] != prompt[-1]
    assert model(input_ids=torch.tensor([full])).logits.shape == (1, len(full), len(tok))


def test_kept_is_the_finite_entries():
    assert prompting.kept(torch.tensor([1.0, float("-inf"), 0.0])).tolist() == [True, False, True]


def test_warper_mask_handles_any_leading_shape_and_leaves_logits_alone():
    x = torch.randn(3, 4, 20, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    mask = prompting.warper_mask(TopKLogitsWarper(5), x)
    assert mask.shape == x.shape and mask.dtype == torch.bool
    assert torch.equal(x, before)
    for i in range(3):  # row by row, as transformers calls the warper during generation
        assert torch.equal(mask[i], torch.isfinite(TopKLogitsWarper(5)(None, x[i].clone())))
