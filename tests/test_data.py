"""ptlab.data: Hub instruction data sets -> the course's chat rows, checked offline on small local files
in each Hub set's own format (HF_HUB_OFFLINE=1, as in CI)."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ptlab import data  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
ALPACA = DATA / "alpaca_sample.json"
NO_ROBOTS = DATA / "no_robots_sample.jsonl"
SHAREGPT = DATA / "sharegpt_sample.jsonl"


def test_alpaca_rows_become_user_then_assistant():
    ds = data.load_chat_dataset(ALPACA)
    assert ds.column_names == list(data.COLUMNS)
    assert len(ds) == 4
    first = ds[0]
    assert first["messages"] == [
        {"role": "user", "content": "Give three tips for staying healthy."},
        {"role": "assistant", "content": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep."},
    ]
    assert first["task"] == "alpaca"


def test_alpaca_input_follows_the_instruction_after_a_blank_line():
    row = data.load_chat_dataset(ALPACA)[1]
    assert row["prompt_messages"] == [
        {"role": "user", "content": "Translate the sentence into French.\n\nThe cat is black."}
    ]
    assert row["answer"] == "Le chat est noir."


def test_messages_format_keeps_system_and_multi_turn_and_category():
    ds = data.load_chat_dataset(NO_ROBOTS)
    assert [r["task"] for r in ds] == ["Generation", "Open QA", "Summarize", "Brainstorm"]
    system = ds[1]["messages"]
    assert [m["role"] for m in system] == ["system", "user", "assistant"]
    multi = ds[2]
    assert [m["role"] for m in multi["messages"]] == ["user", "assistant", "user", "assistant"]
    assert multi["prompt_messages"] == multi["messages"][:3]
    assert multi["answer"] == "Meeting moved to Tuesday."


def test_conversation_is_cut_after_its_last_assistant_reply():
    row = data.load_chat_dataset(NO_ROBOTS)[3]
    assert row["messages"][-1] == {"role": "assistant", "content": "11"}
    assert len(row["messages"]) == 2


def test_sharegpt_speakers_map_to_roles_and_reply_less_rows_are_dropped():
    ds = data.load_chat_dataset(SHAREGPT)
    assert len(ds) == 2  # s3 has no reply
    assert [m["role"] for m in ds[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert ds[0]["answer"] == "Eight."


def test_reply_less_row_raises_when_not_dropped():
    with pytest.raises(ValueError, match="row 2"):
        data.load_chat_dataset(SHAREGPT, drop_invalid=False)


def test_every_row_ends_with_its_answer_as_an_assistant_message():
    for path in (ALPACA, NO_ROBOTS, SHAREGPT):
        for row in data.load_chat_dataset(path):
            assert row["messages"][-1] == {"role": "assistant", "content": row["answer"]}
            assert row["messages"][:-1] == row["prompt_messages"]


def test_parquet_file_loads_like_the_json_it_was_written_from(tmp_path):
    from datasets import load_dataset

    path = tmp_path / "no_robots.parquet"
    load_dataset("json", data_files=str(NO_ROBOTS), split="train").to_parquet(str(path))
    assert data.load_chat_dataset(path).to_list() == data.load_chat_dataset(NO_ROBOTS).to_list()


def test_sample_of_n_rows_is_seeded_and_a_subset():
    full = data.load_chat_dataset(ALPACA).to_list()
    a = data.load_chat_dataset(ALPACA, n=2, seed=1).to_list()
    b = data.load_chat_dataset(ALPACA, n=2, seed=1).to_list()
    assert a == b
    assert len(a) == 2 and all(row in full for row in a)


def test_unknown_columns_name_the_expected_ones(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"question": "q", "reply": "r"}) + "\n")
    with pytest.raises(ValueError, match="instruction"):
        data.load_chat_dataset(path)


def test_unknown_format_lists_the_valid_ones():
    with pytest.raises(ValueError, match="alpaca"):
        data.load_chat_dataset(ALPACA, format="dolly")


def test_bad_role_is_named():
    with pytest.raises(ValueError, match="robot"):
        data.check_messages([{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}])


def test_missing_local_file_is_reported():
    with pytest.raises(FileNotFoundError):
        data.load_chat_dataset(DATA / "missing.jsonl")


def test_rows_render_with_the_tiny_chat_template():
    # The rows are what tokenizer.apply_chat_template expects: the tiny tokenizer renders them.
    from ptlab.tinyworld import hf_tokenizer

    tokenizer = hf_tokenizer()
    row = data.load_chat_dataset(NO_ROBOTS)[2]
    text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
    assert text.endswith("<|assistant|>Meeting moved to Tuesday.<|end|>")


# ---- preference data: (prompt, chosen, rejected), the columns of ptlab.tinyworld.preference_dataset ----

ULTRAFEEDBACK = DATA / "ultrafeedback_sample.jsonl"
TRL_PLAIN = DATA / "trl_preference_sample.json"


def test_ultrafeedback_rows_split_the_conversation_into_prompt_and_replies():
    ds = data.load_preference_dataset(ULTRAFEEDBACK)
    assert ds.column_names == list(data.PREFERENCE_COLUMNS)
    assert len(ds) == 3  # u4 is a tie (the same reply twice) and is dropped
    first = ds[0]
    assert first["prompt"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert (first["chosen"], first["rejected"]) == ("Paris.", "Lyon, I think.")
    assert [m["role"] for m in ds[2]["prompt"]] == ["system", "user"]  # a system turn stays in the prompt
    assert ds[2]["chosen"] == "Hola."


def test_tie_raises_when_not_dropped():
    with pytest.raises(ValueError, match="row 3"):
        data.load_preference_dataset(ULTRAFEEDBACK, drop_invalid=False)


def test_trl_plain_strings_become_a_user_prompt_and_two_replies():
    ds = data.load_preference_dataset(TRL_PLAIN)
    assert len(ds) == 3
    assert ds[1] == {"prompt": [{"role": "user", "content": "Two plus two equals"}], "chosen": " four.",
                     "rejected": " five."}


def test_trl_conversational_rows(tmp_path):
    path = tmp_path / "conv.jsonl"
    row = {"prompt": [{"role": "user", "content": "Hi?"}], "chosen": [{"role": "assistant", "content": "Hello."}],
           "rejected": [{"role": "assistant", "content": "Go away."}]}
    path.write_text(json.dumps(row) + "\n")
    assert data.detect_preference_format(row) == "conversational"
    assert data.load_preference_dataset(path).to_list() == [
        {"prompt": [{"role": "user", "content": "Hi?"}], "chosen": "Hello.", "rejected": "Go away."}]


def test_preference_formats_are_detected_from_the_first_row():
    assert data.detect_preference_format({"prompt": "p", "chosen": "a", "rejected": "b"}) == "plain"
    uf = {"prompt": "p", "chosen": [{"role": "user", "content": "p"}], "rejected": []}
    assert data.detect_preference_format(uf) == "ultrafeedback"
    with pytest.raises(ValueError, match="rejected"):
        data.detect_preference_format({"prompt": "p", "chosen": "a"})


def test_preference_parquet_and_sample_of_n(tmp_path):
    from datasets import load_dataset

    path = tmp_path / "uf.parquet"
    load_dataset("json", data_files=str(ULTRAFEEDBACK), split="train").to_parquet(str(path))
    full = data.load_preference_dataset(ULTRAFEEDBACK).to_list()
    assert data.load_preference_dataset(path).to_list() == full
    sample = data.load_preference_dataset(ULTRAFEEDBACK, n=2, seed=3).to_list()
    assert sample == data.load_preference_dataset(ULTRAFEEDBACK, n=2, seed=3).to_list()
    assert len(sample) <= 2 and all(row in full for row in sample)


def test_reply_that_is_not_the_assistants_is_rejected():
    row = {"prompt": "p", "chosen": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "a"}],
           "rejected": [{"role": "user", "content": "p"}]}
    with pytest.raises(ValueError, match="assistant"):
        data.convert_preference(row, "ultrafeedback")
    with pytest.raises(ValueError, match="plain"):
        data.load_preference_dataset(TRL_PLAIN, format="pairwise")


def test_preference_rows_have_the_tiny_worlds_columns_and_render():
    from ptlab.tinyworld import hf_tokenizer, preference_dataset

    world = preference_dataset("test", n=2)
    hub = data.load_preference_dataset(ULTRAFEEDBACK)
    for column in data.PREFERENCE_COLUMNS:
        assert type(world[0][column]) is type(hub[0][column])
    assert set(world[0]["prompt"][0]) == set(hub[0]["prompt"][0]) == {"role", "content"}
    messages = hub[0]["prompt"] + [{"role": "assistant", "content": hub[0]["chosen"]}]
    assert hf_tokenizer().apply_chat_template(messages, tokenize=False).endswith("<|assistant|>Paris.<|end|>")
