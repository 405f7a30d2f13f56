"""Model and tokenizer loading: one call for the shipped tiny models and for Hub models.

    model, tokenizer = load("tiny-sft")                        # shipped files, offline, CPU
    model, tokenizer = load("HuggingFaceTB/SmolLM2-135M-Instruct")   # float32 unless dtype= says otherwise
    reward_model, tokenizer = load("tiny-rm")                  # kind="reward" is implied

Tiny names resolve to folders inside the installed package (`checkpoint_path`), so they load with
`HF_HUB_OFFLINE=1` and no network. Anything else is passed to `from_pretrained` unchanged (a Hub id or
a local folder).
"""

from __future__ import annotations

from pathlib import Path

import torch

CHECKPOINTS_DIR = Path(__file__).resolve().parent / "checkpoints"

# name -> (kind, what it is)
TINY_MODELS: dict[str, tuple[str, str]] = {
    "tiny-base": ("causal", "Llama pretrained on the tiny world's corpus; a completion model"),
    "tiny-sft": ("causal", "tiny-base instruction-tuned on the world's chats"),
    "tiny-rm": ("reward", "reward model (one score) trained on the world's preference pairs"),
}
KINDS = ("causal", "reward")

# ChatML, the chat format of SmolLM2-Instruct and Qwen2.5-Instruct. `load` gives it to a tokenizer that has
# no chat template (a base model's, e.g. SmolLM2-135M), so `apply_chat_template` works on every model.
CHATML_TEMPLATE: str = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def is_course_model(name_or_id: str) -> bool:
    """True for a shipped tiny model's name; False for a folder or Hub id (the Hub track).

    A notebook reads it where a check holds only for the trained course models, e.g. an accuracy bar
    that a Hub model in fast mode, or the test suite's randomly initialised Hub twin, cannot meet:
    `if models.is_course_model(MODEL): checks.assert_true(accuracy > 0.8, ...)`. Such a check grades
    only when MODEL is a course model, so the set-up cell that sets MODEL should be read-only (nbgrader
    then restores it from the source before autograding).
    """
    return name_or_id in TINY_MODELS


def checkpoint_path(name: str) -> Path:
    """The folder of a shipped tiny checkpoint, e.g. checkpoint_path("tiny-base")."""
    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; valid names are {list(TINY_MODELS)}")
    path = CHECKPOINTS_DIR / name
    if not (path / "config.json").exists():
        step = name.removeprefix("tiny-")
        raise FileNotFoundError(
            f"{name} is missing at {path}; rebuild it with `python -m ptlab.tinyworld.train {step}`"
        )
    return path


def dtype_kwarg() -> str:
    """The name `from_pretrained` gives its dtype argument: `dtype` from transformers 4.56 on (the old
    `torch_dtype` warns there), `torch_dtype` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def load(name_or_id: str, kind: str | None = None, **kwargs):
    """Load (model, tokenizer) for a tiny name, a local folder or a Hub id, in eval mode.

    Args:
        name_or_id: "tiny-base", "tiny-sft", "tiny-rm", a folder, or a Hub id.
        kind: "causal" (AutoModelForCausalLM) or "reward" (AutoModelForSequenceClassification with one
            label). Default: the tiny model's own kind, else "causal".
        **kwargs: passed to the model's `from_pretrained` (dtype, device_map, quantization_config...).
            Without a dtype the weights load in float32, whatever dtype the checkpoint stores: transformers 4
            did so by default, transformers 5 loads the stored dtype (bf16 for SmolLM2 and Qwen2.5), which
            numpy refuses and CPU training handles poorly; the same call then gives the same model under
            both. Pass `dtype="auto"` (or torch.bfloat16) to keep a large checkpoint's own precision.
    Returns:
        (model, tokenizer); the tokenizer always has a pad token (the EOS token when the model has none,
        as is usual for Hub causal models) and the model's config knows its id; it always has a chat
        template (`CHATML_TEMPLATE` when the model ships none). Its eos_token is left as the model has it:
        for a base model that is the end of a document, not the end of a chat turn.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if kind is None:
        kind = TINY_MODELS[name_or_id][0] if name_or_id in TINY_MODELS else "causal"
    if kind not in KINDS:
        raise ValueError(f"kind should be one of {KINDS}, got {kind!r}")
    source = str(checkpoint_path(name_or_id)) if name_or_id in TINY_MODELS else name_or_id
    if "dtype" not in kwargs and "torch_dtype" not in kwargs:
        kwargs[dtype_kwarg()] = torch.float32
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if kind == "causal":
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    else:
        kwargs.setdefault("num_labels", 1)
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    if model.config.pad_token_id is None:
        # sequence classification reads the score at the last non-pad token, so it must know the pad id
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer
