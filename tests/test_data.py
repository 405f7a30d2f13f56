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
