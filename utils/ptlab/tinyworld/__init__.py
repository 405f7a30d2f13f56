"""The tiny course world: generated tasks and data, a character tokenizer, and the shipped tiny models.

Quick tour (all seeded, all offline):

    from ptlab import tinyworld as tw
    tw.TASKS["upper"].answer("kes")                  # 'KES'
    tw.icl_dataset("test", n=200, k=4)               # few-shot prompts, no task name
    tw.arithmetic_dataset("test", n=200)             # direct_prompt / cot_prompt / answer
    tw.chat_dataset("train", tasks=tw.SFT_TASKS)     # messages for instruction tuning
    tw.preference_dataset("train")                   # prompt / chosen / rejected, labelled with a flaw
    tw.oracle_score(prompt_messages, "KES")          # the hidden oracle's score of a reply

Checkpoints: `ptlab.models.load("tiny-base" | "tiny-sft" | "tiny-rm")`; rebuild them with
`python -m ptlab.tinyworld.train base|sft|rm`; measure them with `python -m ptlab.tinyworld.evaluate`.
"""

from ptlab.tinyworld.tokenizer import CHAT_TEMPLATE, CHAT_TOKENS, SPECIAL_TOKENS, hf_tokenizer, save_tokenizer
from ptlab.tinyworld.world import (
    ELABORATE_LEVEL,
    FILLERS,
    LABELLER_LENGTH_BIAS,
    SFT_FILLER_SHARES,
    SFT_HELDOUT_TASKS,
    SFT_TASKS,
    STEP_CUE,
    TASKS,
    Task,
    arithmetic_answer,
    arithmetic_dataset,
    chat_dataset,
    corpus_dataset,
    corpus_document,
    cot_prompt,
    cot_solution,
    direct_prompt,
    filler_level,
    icl_dataset,
    icl_prompt,
    labeller_prefers_first,
    oracle_score,
    parse_arithmetic_answer,
    parse_instruction,
    preference_dataset,
    reply_core,
    sft_reply,
    split_of,
)

__all__ = [
    "CHAT_TEMPLATE", "CHAT_TOKENS", "SPECIAL_TOKENS", "hf_tokenizer", "save_tokenizer",
    "ELABORATE_LEVEL", "FILLERS", "LABELLER_LENGTH_BIAS", "SFT_FILLER_SHARES", "SFT_HELDOUT_TASKS", "SFT_TASKS",
    "STEP_CUE",
    "TASKS", "Task", "arithmetic_answer", "arithmetic_dataset", "chat_dataset", "corpus_dataset",
    "corpus_document", "cot_prompt", "cot_solution", "direct_prompt", "filler_level", "icl_dataset", "icl_prompt",
    "labeller_prefers_first", "oracle_score", "parse_arithmetic_answer", "parse_instruction", "preference_dataset",
    "reply_core", "sft_reply", "split_of",
]
