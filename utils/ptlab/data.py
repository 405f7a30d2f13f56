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

from collections.abc import Callable, Mapping, Sequence
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
    return Dataset.from_list(_convert_rows(raw, lambda row: convert(row, format), n, seed, drop_invalid,
                                           f"{format} chat", source))


def _convert_rows(raw, convert: Callable[[dict], dict], n: int | None, seed: int, drop_invalid: bool,
                  what: str, source: str) -> list[dict]:
    """`convert` applied to `n` shuffled rows of `raw` (all rows if None); a row it rejects is dropped or raises."""
    if n is not None:
        if n < 1:
            raise ValueError(f"n should be a positive number of rows, got {n}")
        raw = raw.shuffle(seed=seed).select(range(min(n, len(raw))))
    rows = []
    for i, row in enumerate(raw):
        try:
            rows.append(convert(row))
        except (ValueError, KeyError, TypeError) as err:
            if not drop_invalid:
                raise ValueError(f"row {i} of {source} is not a usable {what}: {err}") from err
    if not rows:
        raise ValueError(f"no usable {what} in {source}")
    return rows


# ----------------------------------------------------------------------------------------------------
# Preference data: (prompt, chosen, rejected) rows, as `ptlab.tinyworld.preference_dataset` gives them
#
#     prompt    list of {"role", "content"}: the conversation before the two replies
#     chosen    the preferred assistant reply (str)
#     rejected  the other assistant reply (str)
#
# Three Hub layouts are understood, detected from the first row:
#
#     ultrafeedback  prompt str; chosen/rejected = whole conversations ending with the assistant reply
#                    (HuggingFaceH4/ultrafeedback_binarized, split "train_prefs" / "test_prefs")
#     plain          prompt, chosen, rejected all strings (TRL's standard preference format)
#     conversational prompt = messages; chosen/rejected = [assistant message] (TRL's conversational format)
#
#     ds = load_preference_dataset("HuggingFaceH4/ultrafeedback_binarized", split="train_prefs", n=2000)
#     ds = load_preference_dataset("tests/data/ultrafeedback_sample.jsonl")      # offline
# ----------------------------------------------------------------------------------------------------

PREFERENCE_FORMATS = ("ultrafeedback", "plain", "conversational")
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


def detect_preference_format(row: Mapping) -> str:
    """The preference layout of a data set from its first row (see the section comment above)."""
    missing = [c for c in PREFERENCE_COLUMNS if c not in row]
    if missing:
        raise ValueError(f"a preference data set needs the columns {PREFERENCE_COLUMNS}; missing {missing} "
                         f"(columns: {sorted(row)})")
    prompt, chosen = row["prompt"], row["chosen"]
    if isinstance(chosen, str):
        return "plain"
    if isinstance(prompt, str):
        return "ultrafeedback"
    return "conversational"


def _assistant_reply(reply, what: str) -> tuple[list[dict], str]:
    """A reply given as a message list -> (the messages before it, its text). The last message must be
    the assistant's: that is the reply the labellers compared."""
    if not isinstance(reply, (list, tuple)) or not reply:
        raise ValueError(f"{what} should be a non-empty list of messages, got {reply!r}")
    messages = check_messages(reply)
    if messages[-1]["role"] != "assistant":
        raise ValueError(f"{what} should end with the assistant's reply, but ends with a {messages[-1]['role']!r} turn")
    return messages[:-1], messages[-1]["content"]


def _check_prompt(prompt) -> list[dict]:
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, (list, tuple)) or not prompt:
        raise ValueError(f"prompt should be a string or a non-empty list of messages, got {prompt!r}")
    messages = check_messages([*prompt, {"role": "assistant", "content": ""}])[:-1]  # roles and contents
    if messages[-1]["role"] == "assistant":
        raise ValueError("the prompt ends with an assistant turn; the compared replies should answer a user turn")
    return messages


def convert_preference(row: Mapping, format: str) -> dict:
    """One raw row in `format` -> {"prompt": messages, "chosen": str, "rejected": str}."""
    if format == "plain":
        chosen, rejected = row["chosen"], row["rejected"]
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            raise ValueError("the plain format has string chosen/rejected replies")
        return {"prompt": _check_prompt(row["prompt"]), "chosen": chosen, "rejected": rejected}
    if format in ("ultrafeedback", "conversational"):
        chosen_context, chosen = _assistant_reply(row["chosen"], "chosen")
        rejected_context, rejected = _assistant_reply(row["rejected"], "rejected")
        if chosen_context != rejected_context:
            raise ValueError("chosen and rejected answer different conversations")
        # UltraFeedback repeats the prompt inside each conversation; TRL's conversational rows do not
        prompt = chosen_context or row["prompt"]
        return {"prompt": _check_prompt(prompt), "chosen": chosen, "rejected": rejected}
    raise ValueError(f"format should be one of {PREFERENCE_FORMATS}, got {format!r}")


def load_preference_dataset(source: str | Path, split: str = "train", n: int | None = None,
                            format: str | None = None, seed: int = 0, drop_invalid: bool = True):
    """Load a preference data set (Hub id or local file) as (prompt, chosen, rejected) rows.

    Args:
        source: a Hub id ("HuggingFaceH4/ultrafeedback_binarized", "trl-lib/ultrafeedback_binarized") or a
            local .json/.jsonl/.parquet file in that data set's format.
        split: the Hub split (UltraFeedback's are "train_prefs"/"test_prefs"); ignored for a local file.
        n: keep a random sample of n rows (shuffled with `seed`); None keeps every row.
        format: "ultrafeedback", "plain" or "conversational"; None detects it from the first row.
        seed: shuffle seed for the sample.
        drop_invalid: skip rows that are not a usable pair (a tie, a reply that is not the assistant's);
            with False such a row raises a ValueError that names it.
    Returns:
        datasets.Dataset with columns prompt (messages), chosen (str), rejected (str): the columns of
        `ptlab.tinyworld.preference_dataset`, so a lab runs on either.
    """
    from datasets import Dataset

    raw = _load_raw(source, split)
    if len(raw) == 0:
        raise ValueError(f"{source} has no rows")
    format = format or detect_preference_format(raw[0])
    if format not in PREFERENCE_FORMATS:
        raise ValueError(f"format should be one of {PREFERENCE_FORMATS}, got {format!r}")
    def to_pair(row: dict) -> dict:
        pair = convert_preference(row, format)
        if pair["chosen"] == pair["rejected"]:
            raise ValueError("chosen and rejected are the same reply, so the pair teaches nothing")
        return pair

    return Dataset.from_list(_convert_rows(raw, to_pair, n, seed, drop_invalid, f"{format} pair", source))
