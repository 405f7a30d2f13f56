"""Hub instruction data sets, converted to the course's chat form.

Every loader returns a `datasets.Dataset` with the same columns as `ptlab.tinyworld.chat_dataset`, so a
lab runs unchanged on the tiny world (offline) or on a Hub data set (Colab):

    messages         list of {"role", "content"}: the whole conversation, ending with an assistant reply
    prompt_messages  the conversation before that final reply
    answer           the final reply's text (the reference an evaluation compares with)
    task             a category if the data set has one, else the format's name

Three common formats are understood, detected from the columns:

    alpaca     instruction / input / output          (tatsu-lab/alpaca, yahma/alpaca-cleaned, ...)
    messages   messages = [{"role", "content"}, ...] (HuggingFaceH4/no_robots, ...)
    sharegpt   conversations = [{"from", "value"}, ...] (ShareGPT-style sets)

    ds = load_chat_dataset("HuggingFaceH4/no_robots", split="train", n=2000)   # Colab: the Hub
    ds = load_chat_dataset("tests/data/alpaca_sample.json")                   # offline: a local file

A local path (.json, .jsonl, .parquet) in the Hub set's own format loads with no network, which is how
the tests check this module with `HF_HUB_OFFLINE=1`. This module only reshapes text: tokenising,
loss masking and batching are the lab's exercises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

FORMATS = ("alpaca", "messages", "sharegpt")
ROLES = ("system", "user", "assistant")
# ShareGPT speaker names -> chat roles
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
LOCAL_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}
COLUMNS = ("messages", "prompt_messages", "answer", "task")


def detect_format(column_names: Sequence[str]) -> str:
    """The chat format of a data set from its column names: "alpaca", "messages" or "sharegpt"."""
    columns = set(column_names)
    if "messages" in columns:
        return "messages"
    if "conversations" in columns:
        return "sharegpt"
    if {"instruction", "output"} <= columns:
        return "alpaca"
    raise ValueError(
        f"cannot tell the chat format from the columns {sorted(columns)}; expected 'messages', "
        f"'conversations' or 'instruction'+'output' (formats {FORMATS}); pass format= to choose one"
    )


def alpaca_to_messages(row: Mapping) -> list[dict]:
    """An Alpaca row -> [user, assistant]. A non-empty `input` follows the instruction after a blank line,
    as in Alpaca's own prompt, where it is the material the instruction is about."""
    instruction = str(row["instruction"]).strip()
    extra = str(row.get("input") or "").strip()
    user = f"{instruction}\n\n{extra}" if extra else instruction
    return [{"role": "user", "content": user}, {"role": "assistant", "content": str(row["output"]).strip()}]


def sharegpt_to_messages(row: Mapping) -> list[dict]:
    """A ShareGPT row (`conversations` of {"from", "value"}) -> messages with standard role names."""
    messages = []
    for turn in row["conversations"]:
        speaker = turn["from"]
        if speaker not in SHAREGPT_ROLES:
            raise ValueError(f"unknown ShareGPT speaker {speaker!r}; expected one of {sorted(SHAREGPT_ROLES)}")
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": str(turn["value"])})
    return messages


def check_messages(messages: Sequence[Mapping]) -> list[dict]:
    """Validate a conversation and return it as plain {"role", "content"} dicts.

    Roles must be system/user/assistant, contents strings, and at least one assistant reply present.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"messages should be a non-empty list of {{'role', 'content'}} dicts, got {messages!r}")
    clean = []
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}]['role'] should be one of {ROLES}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}]['content'] should be a string, got {type(content).__name__}")
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in clean):
        raise ValueError("the conversation has no assistant reply, so there is nothing to learn from it")
    return clean


def to_chat_row(messages: Sequence[Mapping], task: str) -> dict:
    """The course's row for one conversation: cut after its last assistant reply (later turns teach
    nothing), and split into prompt and reference answer."""
    messages = check_messages(messages)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    messages = messages[: last + 1]
    return {"messages": messages, "prompt_messages": messages[:last], "answer": messages[last]["content"],
            "task": task}


def convert(row: Mapping, format: str) -> dict:
    """One raw row of a data set in `format` -> the course's row (see the module docstring)."""
    if format == "alpaca":
        messages = alpaca_to_messages(row)
    elif format == "messages":
        messages = row["messages"]
    elif format == "sharegpt":
        messages = sharegpt_to_messages(row)
    else:
        raise ValueError(f"format should be one of {FORMATS}, got {format!r}")
    task = row.get("category") or format  # no_robots labels each row with a category
    return to_chat_row(messages, str(task))


def _load_raw(source: str | Path, split: str):
    from datasets import load_dataset

    path = Path(source)
    if path.suffix in LOCAL_SUFFIXES:
        if not path.exists():
            raise FileNotFoundError(f"no data file at {path}")
        # a local file is one split; `split` names the Hub split only
        return load_dataset(LOCAL_SUFFIXES[path.suffix], data_files=str(path), split="train")
    return load_dataset(str(source), split=split)


def load_chat_dataset(source: str | Path, split: str = "train", n: int | None = None, format: str | None = None,
                      seed: int = 0, drop_invalid: bool = True):
    """Load an instruction data set (Hub id or local file) as chats with the course's columns.

    Args:
        source: a Hub id ("HuggingFaceH4/no_robots", "tatsu-lab/alpaca") or a local .json/.jsonl/.parquet
            file in that data set's format.
        split: the Hub split ("train", "test"); ignored for a local file, which is one split.
        n: keep a random sample of n rows (shuffled with `seed`); None keeps every row.
        format: "alpaca", "messages" or "sharegpt"; None detects it from the columns.
        seed: shuffle seed for the sample.
        drop_invalid: skip rows that are not a usable chat (no assistant reply, an unknown role); with
            False such a row raises a ValueError that names it.
    Returns:
        datasets.Dataset with columns messages, prompt_messages, answer, task.
    """
    from datasets import Dataset

    raw = _load_raw(source, split)
    format = format or detect_format(raw.column_names)
    if format not in FORMATS:
        raise ValueError(f"format should be one of {FORMATS}, got {format!r}")
    if n is not None:
        if n < 1:
            raise ValueError(f"n should be a positive number of rows, got {n}")
        raw = raw.shuffle(seed=seed).select(range(min(n, len(raw))))
    rows = []
    for i, row in enumerate(raw):
        try:
            rows.append(convert(row, format))
        except (ValueError, KeyError, TypeError) as err:
            if not drop_invalid:
                raise ValueError(f"row {i} of {source} is not a usable {format} chat: {err}") from err
    if not rows:
        raise ValueError(f"no usable {format} chat in {source}")
    return Dataset.from_list(rows)
