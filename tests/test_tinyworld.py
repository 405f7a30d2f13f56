"""The tiny world as a specification: tokenizer, tasks, splits, data sets, the oracle and the labellers."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from ptlab import tinyworld as tw
from ptlab.tinyworld.tokenizer import CharCodec, save_tokenizer
from ptlab.tinyworld.world import random_word


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("tok")
    save_tokenizer(path)
    return AutoTokenizer.from_pretrained(str(path))


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_round_trips_every_world_text(tokenizer):
    texts = [tw.corpus_document(random.Random(i)) for i in range(50)]
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id, "every encoded text should start with <|bos|>"
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_is_one_token_per_character(tokenizer):
    text = "Q: 3+5+8+6+2+9\nSteps:\n  8+8"
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) == len(text)


def test_fast_codec_agrees_with_tokenizer(tokenizer):
    text = tw.corpus_document(random.Random(7))
    assert CharCodec().encode(text) == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_chat_template_renders_roles_as_special_tokens(tokenizer):
    messages = [{"role": "user", "content": 'Repeat the word "kes".'}, {"role": "assistant", "content": "kes"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == '<|bos|><|user|>Repeat the word "kes".<|end|><|assistant|>kes<|end|>'
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt) and prompt.endswith("<|assistant|>")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids[:2]) == ["<|bos|>", "<|user|>"]


def test_eos_is_the_end_of_turn_token(tokenizer):
    assert tokenizer.eos_token == "<|end|>" and tokenizer.pad_token == "<|pad|>"


# ---------------------------------------------------------------- tasks and splits


def test_there_are_at_least_eight_tasks_with_instructions():
    assert len(tw.TASKS) >= 8
    for task in tw.TASKS.values():
        assert "{word}" in task.instruction
        assert task.answer("bodu")  # every rule gives a non-empty answer on a 4-letter word


def test_task_rules_on_a_known_word():
    expected = {"copy": "kes", "upper": "KES", "capitalize": "Kes", "first": "k", "last": "s",
                "shift": "lft", "double": "kkeess", "drop_first": "es", "drop_last": "ke", "swap": "eks"}
    assert {name: tw.TASKS[name].answer("kes") for name in expected} == expected


def test_sft_heldout_tasks_are_tasks_and_not_tuned_on():
    assert set(tw.SFT_HELDOUT_TASKS) <= set(tw.TASKS)
    assert not set(tw.SFT_HELDOUT_TASKS) & set(tw.SFT_TASKS)


def test_words_of_a_split_stay_in_that_split():
    rng = random.Random(0)
    assert all(tw.split_of(random_word(rng, "test")) == "test" for _ in range(200))
    assert all(tw.split_of(random_word(rng, "train")) == "train" for _ in range(200))


def test_test_queries_never_appear_in_the_training_corpus():
    test_words = set(tw.icl_dataset("test", n=100, k=0)["prompt"])
    corpus = "\n".join(tw.corpus_dataset("train", n=500)["text"])
    for prompt in test_words:
        query = prompt.removesuffix(" -> ")
        assert f"\n{query} -> " not in corpus and not corpus.startswith(f"{query} -> ")


def test_same_seed_same_data_and_other_seed_other_data():
    a, b = tw.chat_dataset("train", n=50, seed=3), tw.chat_dataset("train", n=50, seed=3)
    assert a.to_list() == b.to_list()
    assert tw.chat_dataset("train", n=50, seed=4)["messages"] != a["messages"]
    assert tw.preference_dataset("test", n=30).to_list() == tw.preference_dataset("test", n=30).to_list()
    assert tw.arithmetic_dataset("test", n=30).to_list() == tw.arithmetic_dataset("test", n=30).to_list()


def test_unknown_task_and_split_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="valid tasks"):
        tw.chat_dataset("train", n=2, tasks=["reverse"])
    with pytest.raises(ValueError, match="split should be one of"):
        tw.arithmetic_dataset("validation", n=2)


# ---------------------------------------------------------------- in-context learning


def test_icl_prompt_has_demonstrations_and_no_task_name():
    prompt = tw.icl_prompt([("kes", "KES"), ("bodu", "BODU")], "fami")
    assert prompt == "kes -> KES\nbodu -> BODU\nfami -> "
    for row in tw.icl_dataset("test", n=20, k=8):
        assert row["prompt"].count("\n") == 8
        assert row["task"] not in row["prompt"]


def test_icl_rows_keep_the_same_query_across_k():
    queries = [
        [p.rsplit("\n", 1)[-1] for p in tw.icl_dataset("test", n=10, k=k)["prompt"]] for k in (0, 1, 4, 8)
    ]
    assert all(q == queries[0] for q in queries)


def test_icl_dataset_is_balanced_over_tasks():
    tasks = tw.icl_dataset("test", n=100, k=1)["task"]
    assert {t: tasks.count(t) for t in tw.TASKS} == {t: 100 // len(tw.TASKS) for t in tw.TASKS}


# ---------------------------------------------------------------- arithmetic


def test_worked_solution_counts_up_one_step_per_line_and_ends_with_the_answer():
    lines = tw.cot_solution([3, 4, 2]).splitlines()
    assert lines == ["3 4 2", "4 3 2", "5 2 2", "6 1 2", "7 0 2", "7 2", "8 1", "9 0", "9", "A: 9"]
    assert tw.cot_solution([9, 0, 1]).splitlines() == ["9 0 1", "9 1", "0 0", "0", "A: 0"]  # 9 + 1 wraps to 0
    assert tw.parse_arithmetic_answer(tw.cot_solution([3, 4, 2])) == "9"


def test_arithmetic_rows_are_consistent():
    for row in tw.arithmetic_dataset("test", n=50):
        digits = [int(c) for c in row["question"].split("+")]
        assert row["answer"] == str(sum(digits) % 10)
        assert row["direct_prompt"].endswith("A: ") and row["cot_prompt"].endswith(f"{tw.STEP_CUE}\n")
        assert tw.parse_arithmetic_answer(row["solution"]) == row["answer"]


# ---------------------------------------------------------------- chat, oracle and preferences


def test_chat_rows_end_with_the_assistant_reply():
    for row in tw.chat_dataset("test", n=30):
        assert row["messages"][:-1] == row["prompt_messages"]
        assert row["messages"][-1] == {"role": "assistant", "content": row["answer"]}
        task, word = tw.parse_instruction(row["prompt_messages"][-1]["content"])
        assert task.name == row["task"] and task.answer(word) == row["answer"]


def test_oracle_puts_correctness_first_then_concision():
    prompt = [{"role": "user", "content": 'Write "kes" in capital letters.'}]
    bare, polite, elaborate = "KES", "Sure! KES", tw.FILLERS[2][0] + "KES"
    wrong_bare = "KEZ"
    assert tw.oracle_score(prompt, bare) > tw.oracle_score(prompt, polite) > tw.oracle_score(prompt, elaborate)
    assert tw.oracle_score(prompt, elaborate) > tw.oracle_score(prompt, wrong_bare)


def test_labels_mostly_agree_with_the_oracle_but_favour_elaborate_replies():
    data = tw.preference_dataset("train", n=2000)
    agree = sum(data["label_agrees_with_oracle"]) / len(data)
    assert 0.90 <= agree < 1.0  # the flaw is a minority (expected 1 - 0.05 * 0.85 = 0.96)
    elaborate = [a for a, k in zip(data["label_agrees_with_oracle"], data["kind"]) if k == "elaborate"]
    assert sum(elaborate) / len(elaborate) < 0.5  # on those pairs the labellers mostly go against the oracle


def test_chosen_is_the_label_and_oracle_scores_match_the_replies():
    for row in tw.preference_dataset("test", n=50):
        assert row["chosen"] != row["rejected"]
        assert row["chosen_oracle_score"] == tw.oracle_score(row["prompt"], row["chosen"])
        assert row["label_agrees_with_oracle"] == (row["chosen_oracle_score"] > row["rejected_oracle_score"])


def test_each_pair_kind_changes_one_thing():
    for row in tw.preference_dataset("train", n=300):
        chosen, rejected = row["chosen"], row["rejected"]
        if row["kind"] == "correctness":  # two bare answers, one right
            assert tw.reply_core(chosen) == chosen and tw.reply_core(rejected) == rejected
            assert (chosen == row["answer"]) != (rejected == row["answer"])
        else:  # the same right answer in two styles
            assert tw.reply_core(chosen) == tw.reply_core(rejected) == row["answer"]


# ---------------------------------------------------------------- tiny-sft's replies and the labellers on samples


def test_sft_replies_carry_fillers_in_the_stated_shares():
    rng = random.Random(0)
    replies = [tw.sft_reply(rng, "KES") for _ in range(20000)]
    assert all(tw.reply_core(r) == "KES" for r in replies)  # a filler never changes the answer
    for level, share in tw.SFT_FILLER_SHARES.items():
        seen = sum(tw.filler_level(r) == level for r in replies) / len(replies)
        assert abs(seen - share) < 0.01, (level, seen)  # 3.5 standard errors at 20,000 draws
    assert len({r for r in replies if tw.filler_level(r) == tw.ELABORATE_LEVEL}) == len(tw.FILLERS[2])


def test_filler_level_reads_back_every_filler_and_nothing_else():
    for level, fillers in tw.FILLERS.items():
        for filler in fillers:
            assert tw.filler_level(filler + "KES") == level
    assert tw.filler_level("KES") == tw.filler_level("Sure KES") == tw.filler_level("Great question KES") == 0


def test_labellers_on_two_samples_follow_the_oracle_except_the_length_flaw():
    prompt = [{"role": "user", "content": 'Write "kes" in capital letters.'}]
    elaborate = tw.FILLERS[2][1] + "KES"
    rng = random.Random(0)
    draws = 4000
    # correctness first: a wrong elaborate reply never beats a right bare one, in either order
    assert all(tw.labeller_prefers_first(rng, prompt, "KES", tw.FILLERS[2][0] + "KEZ") for _ in range(200))
    assert not any(tw.labeller_prefers_first(rng, prompt, "KEZ", "KES") for _ in range(200))
    assert tw.labeller_prefers_first(rng, prompt, "KES", "Sure! KES")  # concise first, no flaw for polite
    assert tw.labeller_prefers_first(rng, prompt, "KEZ", "Sure! KEZ")  # two wrong replies: the shorter
    assert tw.labeller_prefers_first(rng, prompt, "KEZ", "KEZZ") is None  # the oracle ties: no label
    flawed = sum(tw.labeller_prefers_first(rng, prompt, elaborate, "KES") for _ in range(draws)) / draws
    assert abs(flawed - tw.LABELLER_LENGTH_BIAS) < 0.025  # 4.5 standard errors at 4,000 draws
    swapped = sum(tw.labeller_prefers_first(rng, prompt, "Sure! KES", elaborate) for _ in range(draws)) / draws
    assert abs(swapped - (1 - tw.LABELLER_LENGTH_BIAS)) < 0.025


def test_preference_dataset_of_one_kind_holds_only_that_kind():
    data = tw.preference_dataset("train", n=200, kind="elaborate")
    assert set(data["kind"]) == {"elaborate"}
    elaborate_chosen = sum(tw.filler_level(c) == tw.ELABORATE_LEVEL for c in data["chosen"]) / len(data)
    assert abs(elaborate_chosen - tw.LABELLER_LENGTH_BIAS) < 0.1  # 4 standard errors at 200 pairs
    assert data["chosen"][:20] == tw.preference_dataset("train", n=20, kind="elaborate")["chosen"]  # seeded
    with pytest.raises(ValueError, match="expected 'correctness', 'style' or 'elaborate'"):
        tw.preference_dataset("train", n=1, kind="length")


# ---------------------------------------------------------------- which of the policy's samples tiny-rm's labellers see


def test_all_pairs_compares_every_two_distinct_replies_once():
    from ptlab.tinyworld.train import all_pairs

    pairs = all_pairs(["KES", "KEZ", "KES", "Sure! KES"])
    assert len(pairs) == 3 and all(a != b for a, b in pairs)
    assert {frozenset(p) for p in pairs} == {frozenset(p) for p in [("KES", "KEZ"), ("KES", "Sure! KES"),
                                                                   ("KEZ", "Sure! KES")]}


class _FavouriteLetter(torch.nn.Module):
    """A stand-in policy whose next-token logits put `letter` far ahead of everything else, at every position."""

    def __init__(self, vocab_size: int, letter_id: int) -> None:
        super().__init__()
        self.vocab_size, self.letter_id = vocab_size, letter_id

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        logits[..., self.letter_id] = 20.0
        return SimpleNamespace(logits=logits)


def test_policy_slips_replace_one_answer_letter_with_the_policys_likeliest_wrong_token(tokenizer):
    from ptlab.tinyworld.train import policy_slips

    policy = _FavouriteLetter(len(tokenizer), tokenizer.convert_tokens_to_ids("y"))  # no answer has a y
    rows = policy_slips(policy, tokenizer, 100, seed=0, batch_size=32)
    assert len(rows) == 100  # a correct reply against a wrong one: the labellers always have a verdict
    for row in rows:
        chosen, rejected = row["chosen"], row["rejected"]
        assert tw.oracle_score(row["prompt"], chosen) >= 0.5 > tw.oracle_score(row["prompt"], rejected)
        answer = tw.reply_core(chosen)
        prefix = chosen[: len(chosen) - len(answer)]  # the filler, kept as it was
        differ = [i for i, (a, b) in enumerate(zip(chosen, rejected)) if a != b]
        assert len(rejected) == len(chosen) and len(differ) == 1 and differ[0] >= len(prefix)
        assert rejected[differ[0]] == "y"
    again = policy_slips(policy, tokenizer, 100, seed=0, batch_size=32)
    assert [r["rejected"] for r in rows] == [r["rejected"] for r in again]  # seeded
    likes_a = _FavouriteLetter(len(tokenizer), tokenizer.convert_tokens_to_ids("a"))
    assert len(policy_slips(likes_a, tokenizer, 100, seed=0)) == 100  # never the right letter, liked best or not


def test_policy_slips_cut_the_answer_short_where_the_policy_would_end(tokenizer):
    from ptlab.tinyworld.train import policy_slips

    policy = _FavouriteLetter(len(tokenizer), tokenizer.convert_tokens_to_ids("<|end|>"))
    for row in policy_slips(policy, tokenizer, 40, seed=1):
        answer = tw.reply_core(row["chosen"])
        assert row["chosen"].startswith(row["rejected"]) and len(row["rejected"]) >= len(row["chosen"]) - len(answer)
