"""A character-level tokenizer in Hugging Face format, with chat special tokens and a chat template.

Every printable character of the world is one token, so a student can read token ids as text and the
model never has to learn sub-word boundaries. The tokenizer is saved as `tokenizer.json` +
`tokenizer_config.json`, so `AutoTokenizer.from_pretrained(path)` and `apply_chat_template` work exactly
as they do for a Hub model.

Layout of one chat (what `apply_chat_template` renders):

    <|bos|><|user|>Write "cat" in capital letters.<|end|><|assistant|>CAT<|end|>

The base model's corpus contains `<|bos|>` (start of every document) but never the chat tokens
`<|system|>`, `<|user|>`, `<|assistant|>`, `<|end|>`: like a real base model, tiny-base has never seen a
chat and does not follow one.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

PAD, BOS, UNK = "<|pad|>", "<|bos|>", "<|unk|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, UNK, SYSTEM, USER, ASSISTANT, END)
CHAT_TOKENS: tuple[str, ...] = (SYSTEM, USER, ASSISTANT, END)

# Ids 0..6 are the special tokens, then one id per character. Changing this string changes every id:
# the shipped checkpoints were trained with exactly this order.
CHARS: str = string.ascii_lowercase + string.ascii_uppercase + string.digits + " \n" + "!\"'(),-.:;<=>?+*/_"

# Jinja template, the same one in every checkpoint. Roles are written as their own special token, so a
# model can never confuse a role marker with text a user typed.
CHAT_TEMPLATE: str = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def vocab() -> dict[str, int]:
    """Token string -> id: the special tokens first, then one id per character of `CHARS`."""
    tokens = list(SPECIAL_TOKENS) + list(CHARS)
    return {tok: i for i, tok in enumerate(tokens)}


def build_tokenizer() -> Tokenizer:
    """The raw `tokenizers.Tokenizer`: split into single characters, look each up, glue back on decode.

    `<|bos|>` is prepended to every encoded text (as Llama does), so `tokenizer(prompt)` gives what the
    model saw at the start of each pretraining document.
    """
    tok = Tokenizer(models.WordLevel(vocab=vocab(), unk_token=UNK))
    # "isolated" keeps every single character (spaces and newlines included) as its own piece.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # join pieces with no separator (the default joins with spaces)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    bos_id = vocab()[BOS]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return tok


def hf_tokenizer():
    """The tokenizer wrapped for transformers (`PreTrainedTokenizerFast`), chat template included."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(),
        bos_token=BOS,
        eos_token=END,  # a chat turn ends with <|end|>: generation stops there, as with Llama-3's <|eot_id|>
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(CHAT_TOKENS[:3]),
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    return tokenizer


def save_tokenizer(path: str | Path) -> None:
    """Write tokenizer.json, tokenizer_config.json (with the chat template) and special_tokens_map.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = hf_tokenizer()
    tokenizer.save_pretrained(str(path))
    # transformers 5 writes the template to chat_template.jinja and names its own tokenizer class;
    # transformers 4 (still on Colab) reads the template from tokenizer_config.json and knows only
    # PreTrainedTokenizerFast. Write both so either version loads the same tokenizer.
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(chat_template=CHAT_TEMPLATE, tokenizer_class="PreTrainedTokenizerFast")
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    special = {"bos_token": BOS, "eos_token": END, "pad_token": PAD, "unk_token": UNK,
               "additional_special_tokens": list(CHAT_TOKENS[:3])}
    # transformers 5 no longer writes this file; older versions still read it.
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")


class CharCodec:
    """Fast text <-> ids for training loops, identical to the tokenizer on text without special tokens.

    The tokenizer is exact but slow per call; generating millions of characters of corpus goes through
    this dictionary instead (a test checks both agree).
    """

    def __init__(self) -> None:
        self.stoi = vocab()
        self.itos = {i: s for s, i in self.stoi.items()}
        self.bos_id, self.pad_id, self.end_id = self.stoi[BOS], self.stoi[PAD], self.stoi[END]

    def encode(self, text: str) -> list[int]:
        """Characters -> ids, no `<|bos|>` added; unknown characters raise (the world never makes them)."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the tiny vocabulary CHARS") from err

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)
