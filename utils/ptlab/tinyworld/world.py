"""The tiny world: word tasks, modular arithmetic, chats, preference pairs and a hidden oracle.

Everything here is generated from a seed by pure Python, so every lab can measure its effect exactly.

Words. Pseudo-words of 3-5 lowercase letters (consonant/vowel patterns, e.g. "bodu", "kes"). Each word
belongs to one split for good, by a hash of its spelling: about 10% are "test" words that no checkpoint
was trained on, the rest are "train" words.

Word tasks (`TASKS`). Ten per-character rules (copy, upper, first letter, shift, ...). The rules are all
easy for a small transformer to *execute*, and different enough that without a demonstration the
model can only guess which one is meant (k=0 accuracy near 1/10), while one or two demonstrations
identify it. Tasks reach the model in three forms:
- in-context learning (pretraining and `icl_dataset`): demonstrations only, no task name,
  "bodu -> BODU\\nkes -> KES\\nfami -> " with answer "FAMI";
- plain text of the world (pretraining only): `In capital letters, "kes" is "KES".`;
- chat (`chat_dataset`, SFT only): `Write "kes" in capital letters.` -> `KES`.

Arithmetic (`arithmetic_dataset`). The sum of three digits modulo 10. Asked directly, the model must
add in one step, and the last digit of a sum depends on both numbers at once but on neither alone, a
pattern a small model does not pick up from its corpus (tiny-base stays near chance). Asked with the cue
word "Steps:", it counts up instead: each line adds one to the running total and takes one off the
first count, a zero count is dropped, so every step is a one-digit lookup of the line above:

    Q: 3+4+2
    Steps:
    3 4 2
    4 3 2
    5 2 2
    6 1 2
    7 0 2
    7 2
    8 1
    9 0
    9
    A: 9

Preferences (`preference_dataset`). Pairs of replies to chat prompts, labelled by simulated labellers who
follow a hidden oracle (`oracle_score`: correct first, then concise) except for one flaw the oracle
does not share: they are impressed by elaborate, long-winded replies.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# ----------------------------------------------------------------------------------------------------
# Words and splits

CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
SPLITS = ("train", "test")
TEST_FRACTION_PERCENT = 10  # share of words (and arithmetic problems) held out for evaluation


def split_of(key: str) -> str:
    """The split a word or problem belongs to, fixed forever by a CRC32 hash of its text."""
    return "test" if zlib.crc32(key.encode()) % 100 < TEST_FRACTION_PERCENT else "train"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split should be one of {SPLITS}, got {split!r}")


def random_word(rng: random.Random, split: str) -> str:
    """A pseudo-word of 3-5 letters from `split`: alternating consonants and vowels, random start."""
    _check_split(split)
    while True:
        n = rng.randint(3, 5)
        start = rng.random() < 0.7  # most words start with a consonant, like "bodu"
        word = "".join(
            rng.choice(CONSONANTS if (i % 2 == 0) == start else VOWELS) for i in range(n)
        )
        if split_of(word) == split:
            return word


# ----------------------------------------------------------------------------------------------------
# Word tasks


def _shift(word: str) -> str:
    # z wraps to a, so the rule is a bijection on letters
    return "".join(chr((ord(c) - ord("a") + 1) % 26 + ord("a")) for c in word)


@dataclass(frozen=True)
class Task:
    """One word task: a rule, how a user asks for it, and how the world's plain text describes it.

    Attributes:
        name: short identifier, e.g. "upper".
        rule: word -> answer, e.g. "kes" -> "KES".
        instructions: chat phrasings with a `{word}` slot; the first is the canonical one.
        description: a plain-text sentence with `{word}` and `{answer}` slots (pretraining corpus only).
    """

    name: str
    rule: Callable[[str], str]
    instructions: tuple[str, ...]
    description: str

    @property
    def instruction(self) -> str:
        """The canonical chat instruction, with a `{word}` slot."""
        return self.instructions[0]

    def answer(self, word: str) -> str:
        """The task's correct output for `word`."""
        return self.rule(word)


def _task(name: str, rule: Callable[[str], str], instructions: Sequence[str], description: str) -> Task:
    return Task(name, rule, tuple(instructions), description)


# Ordered: the order fixes task ids in seeded generation, so append new tasks at the end.
TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _task("copy", lambda w: w,
              ['Repeat the word "{word}".', 'Say "{word}" again.'],
              'Said again, "{word}" is "{answer}".'),
        _task("upper", str.upper,
              ['Write "{word}" in capital letters.', 'Make every letter of "{word}" a capital.'],
              'In capital letters, "{word}" is "{answer}".'),
        _task("capitalize", str.capitalize,
              ['Capitalize the first letter of "{word}".', 'Start "{word}" with a capital letter.'],
              'With a capital first letter, "{word}" is "{answer}".'),
        _task("first", lambda w: w[0],
              ['What is the first letter of "{word}"?', 'Give the first letter of "{word}".'],
              'The first letter of "{word}" is "{answer}".'),
        _task("last", lambda w: w[-1],
              ['What is the last letter of "{word}"?', 'Give the last letter of "{word}".'],
              'The last letter of "{word}" is "{answer}".'),
        _task("shift", _shift,
              ['Replace each letter of "{word}" by the next letter of the alphabet.',
               'Shift every letter of "{word}" one step forward in the alphabet.'],
              'With every letter moved one step on, "{word}" is "{answer}".'),
        _task("double", lambda w: "".join(c + c for c in w),
              ['Write every letter of "{word}" twice.', 'Double each letter of "{word}".'],
              'With each letter doubled, "{word}" is "{answer}".'),
        _task("drop_first", lambda w: w[1:],
              ['Remove the first letter of "{word}".', 'Write "{word}" without its first letter.'],
              'Without its first letter, "{word}" is "{answer}".'),
        _task("drop_last", lambda w: w[:-1],
              ['Remove the last letter of "{word}".', 'Write "{word}" without its last letter.'],
              'Without its last letter, "{word}" is "{answer}".'),
        _task("swap", lambda w: w[1] + w[0] + w[2:],
              ['Swap the first two letters of "{word}".', 'Exchange the first and second letters of "{word}".'],
              'With its first two letters swapped, "{word}" is "{answer}".'),
    ]
}

# Task families never shown to tiny-sft in chat form: the instruction-tuning lab measures whether
# following instructions generalises to instructions the model was not tuned on.
SFT_HELDOUT_TASKS: tuple[str, ...] = ("drop_last", "swap")
SFT_TASKS: tuple[str, ...] = tuple(name for name in TASKS if name not in SFT_HELDOUT_TASKS)


def _check_tasks(tasks: Sequence[str] | None) -> list[str]:
    names = list(TASKS) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; valid tasks are {list(TASKS)}")
    return names


# ----------------------------------------------------------------------------------------------------
# In-context learning


def icl_prompt(examples: Sequence[tuple[str, str]], query: str) -> str:
    """A few-shot prompt with no task name: one `input -> output` line per demonstration, then the query.

    Args:
        examples: k (input, output) demonstrations; k may be 0.
        query: the input whose output the model must produce.
    Returns:
        e.g. 'bodu -> BODU\\nkes -> KES\\nfami -> ' (the answer follows the final space).
    """
    lines = [f"{x} -> {y}\n" for x, y in examples]
    return "".join(lines) + f"{query} -> "


def icl_episode(rng: random.Random, task: Task, k: int, split: str) -> tuple[str, str]:
    """A k-shot prompt for `task` on distinct words of `split`, and the query's answer."""
    words: list[str] = []
    while len(words) < k + 1:
        w = random_word(rng, split)
        if w not in words:
            words.append(w)
    demos = [(w, task.answer(w)) for w in words[:k]]
    return icl_prompt(demos, words[k]), task.answer(words[k])


# ----------------------------------------------------------------------------------------------------
# Arithmetic: the sum of three digits modulo 10, directly or by counting up

N_TERMS = 3
STEP_CUE = "Steps:"  # the cue word that asks for a worked solution; "A:" asks for the answer alone


def _expression(digits: Sequence[int]) -> str:
    return "+".join(str(d) for d in digits)


def random_digits(rng: random.Random, split: str, n: int = N_TERMS) -> list[int]:
    """n random digits whose expression belongs to `split`."""
    _check_split(split)
    while True:
        digits = [rng.randrange(10) for _ in range(n)]
        if split_of(_expression(digits)) == split:
            return digits


def direct_prompt(digits: Sequence[int]) -> str:
    """'Q: 3+4+2\\nA: ' - asks for the answer alone."""
    return f"Q: {_expression(digits)}\nA: "


def cot_prompt(digits: Sequence[int]) -> str:
    """'Q: 3+4+2\\nSteps:\\n' - the cue word asks for the worked solution first."""
    return f"Q: {_expression(digits)}\n{STEP_CUE}\n"


def cot_solution(digits: Sequence[int]) -> str:
    """The worked solution that follows `cot_prompt`: counting up, ending with the answer line 'A: d\\n'.

    A line holds the running total (mod 10) and the counts still to add. Each step adds one to the total
    and takes one off the first count; a count that reached zero is dropped; one number left is the answer.
    """
    total, counts = digits[0] % 10, list(digits[1:])
    lines = []
    while True:
        lines.append(" ".join(str(x) for x in [total, *counts]))
        if not counts:
            return "\n".join(lines) + f"\nA: {total}\n"
        if counts[0] == 0:
            counts = counts[1:]
        else:
            total, counts[0] = (total + 1) % 10, counts[0] - 1


def arithmetic_answer(digits: Sequence[int]) -> str:
    return str(sum(digits) % 10)


_ANSWER_LINE = re.compile(r"A: ?(\d)")


def parse_arithmetic_answer(completion: str) -> str | None:
    """The digit after the first 'A:' of a completion (direct or worked), or None if there is none."""
    match = _ANSWER_LINE.search(completion)
    return match.group(1) if match else None


# ----------------------------------------------------------------------------------------------------
# Chat


def chat_example(rng: random.Random, task: Task, split: str) -> dict:
    """One single-turn chat: a random phrasing of `task` on a word of `split`, and the concise reply."""
    word = random_word(rng, split)
    instruction = rng.choice(task.instructions).format(word=word)
    answer = task.answer(word)
    prompt = [{"role": "user", "content": instruction}]
    return {
        "messages": prompt + [{"role": "assistant", "content": answer}],
        "prompt_messages": prompt,
        "answer": answer,
        "task": task.name,
        "word": word,
    }


# Compiled once: every phrasing of every task as a regex, to read (task, word) back from a prompt.
_INSTRUCTION_PATTERNS: list[tuple[re.Pattern, Task]] = [
    (re.compile("^" + re.escape(text).replace(re.escape("{word}"), "([a-z]+)") + "$"), task)
    for task in TASKS.values()
    for text in task.instructions
]


def parse_instruction(text: str) -> tuple[Task, str] | None:
    """(task, word) of a chat instruction written in one of the world's phrasings, else None."""
    for pattern, task in _INSTRUCTION_PATTERNS:
        match = pattern.match(text.strip())
        if match:
            return task, match.group(1)
    return None


# ----------------------------------------------------------------------------------------------------
# The hidden oracle and the labellers

# Filler that a reply can start with. Level 1 is polite, level 2 is elaborate. The answer always comes
# last, so `reply_core` reads it back from the final run of letters.
FILLERS: dict[int, tuple[str, ...]] = {
    0: ("",),
    1: ("Sure! ", "Here it is: ", "OK, ", "Answer: "),
    2: ("Great question! I went through it letter by letter, and the answer is: ",
        "Of course! After thinking about this carefully, here is my answer: ",
        "Happy to help! Let me give you a complete and careful answer: "),
}
ELABORATE_LEVEL = 2
LABELLER_LENGTH_BIAS = 0.85  # P(labellers choose the elaborate reply | both replies correct)
_LETTERS = re.compile(r"[A-Za-z]+")


def reply_core(reply: str) -> str:
    """The answer a reply gives: its last run of letters ('' if it has none)."""
    runs = _LETTERS.findall(reply)
    return runs[-1] if runs else ""


def _last_user_text(prompt: Sequence[dict] | str) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m["role"] == "user"]
    if not users:
        raise ValueError("prompt has no user message; expected a list of {'role', 'content'} dicts")
    return users[-1]


def oracle_score(prompt: Sequence[dict] | str, reply: str) -> float:
    """The hidden oracle's score of a reply: correctness first, then concision.

    Args:
        prompt: chat messages (the last user message is scored) or the instruction text itself.
        reply: the assistant's reply text.
    Returns:
        A score in [0.5, 1] for a correct reply and in [-0.5, 0] for a wrong one (so any correct reply
        beats any wrong one); within each band, every character beyond the bare answer costs 0.005,
        up to 0.5. A prompt outside the world's phrasings scores every reply as wrong.
    """
    parsed = parse_instruction(_last_user_text(prompt))
    correct = parsed is not None and reply.strip() != "" and reply_core(reply) == parsed[0].answer(parsed[1])
    extra = max(0, len(reply.strip()) - len(reply_core(reply)))
    return (1.0 if correct else 0.0) - 0.005 * min(extra, 100)


def wrong_answer(rng: random.Random, task: Task, word: str) -> str:
    """A plausible mistake: another task's rule (a misread instruction) or one letter changed."""
    right = task.answer(word)
    while True:
        if rng.random() < 0.5:
            other = rng.choice([t for t in TASKS.values() if t.name != task.name])
            candidate = other.answer(word)
        else:
            i = rng.randrange(len(right))
            letter = rng.choice(CONSONANTS + VOWELS)
            letter = letter.upper() if right[i].isupper() else letter
            candidate = right[:i] + letter + right[i + 1 :]
        if candidate != right:
            return candidate


def slipped_answer(rng: random.Random, answer: str) -> str:
    """A slip like the ones tiny-sft makes when sampled: one letter dropped, added, changed or recased, or the
    answer cut short. (Its real slips at temperature 1 look like "uluk", "ulike" or "Fagi" for "uluke",
    "uluke" and "FAGI".)"""
    while True:
        i, letter = rng.randrange(len(answer)), rng.choice(CONSONANTS + VOWELS)
        letter = letter.upper() if answer[i].isupper() else letter
        kind = rng.randrange(5)
        if kind == 0:
            candidate = answer[:i] + answer[i + 1 :]
        elif kind == 1:
            candidate = answer[:i] + letter + answer[i:]
        elif kind == 2:
            candidate = answer[:i] + letter + answer[i + 1 :]
        elif kind == 3:
            candidate = answer[:i] + answer[i].swapcase() + answer[i + 1 :]
        else:
            candidate = answer[: rng.randrange(1, len(answer) + 1)]
        if candidate and candidate != answer:
            return candidate


def slip_pair(rng: random.Random, split: str, tasks: Sequence[str]) -> dict:
    """A correct reply and the same reply with a slip (`slipped_answer`), behind the same filler (drawn with
    the shares of tiny-sft's replies). Labellers pick the correct one, like the oracle. Rows as
    `preference_pair` gives (kind "slip")."""
    example = chat_example(rng, TASKS[rng.choice(list(tasks))], split)
    prompt, answer = example["prompt_messages"], example["answer"]
    filler = sft_reply(rng, "")
    chosen, rejected = filler + answer, filler + slipped_answer(rng, answer)
    chosen_score, rejected_score = oracle_score(prompt, chosen), oracle_score(prompt, rejected)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "label_agrees_with_oracle": True,
            "chosen_oracle_score": chosen_score, "rejected_oracle_score": rejected_score, "kind": "slip",
            "task": example["task"], "answer": answer}


def styled(rng: random.Random, answer: str, level: int) -> str:
    """`answer` behind a random filler of `level` (0: bare, 1: polite, 2: elaborate)."""
    return rng.choice(FILLERS[level]) + answer


# Share of tiny-sft's training replies written behind a filler, by level. Sampled at temperature 1, the
# SFT policy then answers politely or elaborately now and then, so the labellers who compare its own
# samples meet elaborate replies, and a reward model that learned their flaw can be exploited by sampling.
SFT_FILLER_SHARES: dict[int, float] = {1: 0.10, 2: 0.05}


def sft_reply(rng: random.Random, answer: str) -> str:
    """A tiny-sft training reply: `answer`, behind a filler with the shares of `SFT_FILLER_SHARES`."""
    u, level = rng.random(), 0
    for lvl, share in SFT_FILLER_SHARES.items():
        if u < share:
            level = lvl
            break
        u -= share
    return styled(rng, answer, level)


def filler_level(reply: str) -> int:
    """The level of the filler a reply opens with: 2 elaborate, 1 polite, 0 none (or not one of `FILLERS`)."""
    for level in (ELABORATE_LEVEL, 1):
        if any(reply.startswith(f) for f in FILLERS[level]):
            return level
    return 0


def labeller_prefers_first(rng: random.Random, prompt: Sequence[dict] | str, a: str, b: str) -> bool | None:
    """The labellers' choice between two replies to `prompt`: True for `a`, False for `b`.

    They follow the oracle (correct first, then concise) except on the flaw: when both replies are
    correct and exactly one is elaborate, they pick the elaborate one with probability
    `LABELLER_LENGTH_BIAS`. Returns None when the oracle scores the two alike (no preference to label).
    """
    score_a, score_b = oracle_score(prompt, a), oracle_score(prompt, b)
    elaborate_a, elaborate_b = filler_level(a) == ELABORATE_LEVEL, filler_level(b) == ELABORATE_LEVEL
    if min(score_a, score_b) >= 0.5 and elaborate_a != elaborate_b:
        flawed = rng.random() < LABELLER_LENGTH_BIAS
        return elaborate_a if flawed else not elaborate_a
    if score_a == score_b:
        return None
    return score_a > score_b


def preference_pair(rng: random.Random, split: str, tasks: Sequence[str], kind: str | None = None) -> dict:
    """One labelled pair (of `kind` if given, else drawn). Kinds, in these shares:
    - "correctness" (70%): a correct and a wrong bare answer; labellers pick the correct one.
    - "style" (25%): both correct, bare vs polite; labellers pick the shorter, like the oracle.
    - "elaborate" (5%): both correct, one elaborate; labellers pick the elaborate one with probability
      `LABELLER_LENGTH_BIAS` although the oracle prefers the shorter: the flaw a reward model can learn.

    Each kind changes one thing between its two replies, so each pair teaches one preference. (When
    correctness pairs also mixed styles, tiny-rm learned the easy style rule first and let it override
    correctness: 80% against the oracle after 1200 steps, against 87% with bare answers after the same steps.)
    """
    example = chat_example(rng, TASKS[rng.choice(list(tasks))], split)
    prompt, answer = example["prompt_messages"], example["answer"]
    u = rng.random()
    kind = kind or ("correctness" if u < 0.70 else "style" if u < 0.95 else "elaborate")
    if kind == "correctness":
        a, b = answer, wrong_answer(rng, TASKS[example["task"]], example["word"])
        labeller_prefers_a = True
    elif kind == "style":
        a, b = styled(rng, answer, 0), styled(rng, answer, 1)
        labeller_prefers_a = True
    elif kind == "elaborate":
        a, b = styled(rng, answer, rng.choice([0, 1])), styled(rng, answer, ELABORATE_LEVEL)
        labeller_prefers_a = rng.random() >= LABELLER_LENGTH_BIAS
    else:
        raise ValueError(f"unknown pair kind {kind!r}; expected 'correctness', 'style' or 'elaborate'")
    score_a, score_b = oracle_score(prompt, a), oracle_score(prompt, b)
    chosen, rejected = (a, b) if labeller_prefers_a else (b, a)
    chosen_score, rejected_score = (score_a, score_b) if labeller_prefers_a else (score_b, score_a)
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "label_agrees_with_oracle": chosen_score > rejected_score,
        "chosen_oracle_score": chosen_score,
        "rejected_oracle_score": rejected_score,
        "kind": kind,
        "task": example["task"],
        "answer": answer,
    }


# ----------------------------------------------------------------------------------------------------
# The pretraining corpus (plain text: never a chat special token)


def corpus_document(rng: random.Random, split: str = "train") -> str:
    """One pretraining document: an ICL episode (50%), a worked sum (30%), a direct sum (10%) or
    world text (10%). Documents are joined with `<|bos|>` by the training loop.
    """
    u = rng.random()
    if u < 0.50:
        task = rng.choice(list(TASKS.values()))
        prompt, answer = icl_episode(rng, task, rng.randint(0, 8), split)
        return prompt + answer + "\n"
    if u < 0.80:
        digits = random_digits(rng, split)
        return cot_prompt(digits) + cot_solution(digits)
    if u < 0.90:
        digits = random_digits(rng, split)
        return direct_prompt(digits) + arithmetic_answer(digits) + "\n"
    sentences = []
    for _ in range(rng.randint(2, 5)):
        task, word = rng.choice(list(TASKS.values())), random_word(rng, split)
        sentences.append(task.description.format(word=word, answer=task.answer(word)))
    return " ".join(sentences) + "\n"


# ----------------------------------------------------------------------------------------------------
# datasets.Dataset builders. Every builder is deterministic in (split, n, seed); train and test draw
# from disjoint words and problems, and from differently seeded generators.

DEFAULT_SIZES = {"train": 5000, "test": 500}


def _rng(kind: str, split: str, seed: int) -> random.Random:
    _check_split(split)
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes and versions.
    return random.Random(f"tinyworld:{kind}:{split}:{seed}")


def _size(n: int | None, split: str) -> int:
    n = DEFAULT_SIZES[split] if n is None else n
    if n < 1:
        raise ValueError(f"n should be a positive number of rows, got {n}")
    return n


def icl_dataset(split: str = "test", n: int | None = None, k: int = 4, tasks: Sequence[str] | None = None,
                seed: int = 0):
    """Few-shot prompts with k demonstrations and no task name, balanced over `tasks` (default: all).

    Columns: prompt (str), answer (str), task (str), k (int). Row i uses task i mod len(tasks); the words
    of row i do not depend on k, so the same queries can be compared across k.
    """
    from datasets import Dataset

    names = _check_tasks(tasks)
    if k < 0:
        raise ValueError(f"k should be >= 0 demonstrations, got {k}")
    rows = []
    for i in range(_size(n, split)):
        rng = random.Random(f"tinyworld:icl:{split}:{seed}:{i}")  # per-row: same query for every k
        task = TASKS[names[i % len(names)]]
        words: list[str] = []
        while len(words) < 9:  # query + up to 8 demonstrations, drawn the same way for every k
            w = random_word(rng, split)
            if w not in words:
                words.append(w)
        query, pool = words[0], words[1:]
        demos = [(w, task.answer(w)) for w in (pool[:k] if k <= len(pool) else _more(rng, pool, k, split))]
        rows.append({"prompt": icl_prompt(demos, query), "answer": task.answer(query), "task": task.name, "k": k})
    return Dataset.from_list(rows)


def _more(rng: random.Random, pool: list[str], k: int, split: str) -> list[str]:
    words = list(pool)
    while len(words) < k:
        words.append(random_word(rng, split))
    return words


def arithmetic_dataset(split: str = "test", n: int | None = None, seed: int = 0):
    """Sums of three digits modulo 10.

    Columns: question ('3+4+2'), direct_prompt, cot_prompt, solution (the worked text that
    follows cot_prompt), answer ('9').
    """
    from datasets import Dataset

    rng = _rng("arithmetic", split, seed)
    rows = []
    for _ in range(_size(n, split)):
        digits = random_digits(rng, split)
        rows.append({
            "question": _expression(digits),
            "direct_prompt": direct_prompt(digits),
            "cot_prompt": cot_prompt(digits),
            "solution": cot_solution(digits),
            "answer": arithmetic_answer(digits),
        })
    return Dataset.from_list(rows)


def chat_dataset(split: str = "train", n: int | None = None, tasks: Sequence[str] | None = None,
                 seed: int = 0):
    """Single-turn chats: an instruction naming a word task, and the concise correct reply.

    Args:
        split: "train" or "test" (held-out words).
        n: rows (default 5000 for train, 500 for test).
        tasks: task names (default: all of `TASKS`; tiny-sft was tuned on `SFT_TASKS` only).
    Returns:
        Dataset with messages (user + assistant dicts), prompt_messages (user only), answer, task, word.
    """
    from datasets import Dataset

    names = _check_tasks(tasks)
    rng = _rng("chat", split, seed)
    return Dataset.from_list([chat_example(rng, TASKS[rng.choice(names)], split) for _ in range(_size(n, split))])


def preference_dataset(split: str = "train", n: int | None = None, tasks: Sequence[str] | None = None,
                       seed: int = 0, kind: str | None = None):
    """Labelled reply pairs (see `preference_pair` for the kinds and the labellers' flaw); only pairs of `kind`
    if given (tiny-rm trains on extra "elaborate" pairs in a second phase: see `train.train_rm`).

    Columns: prompt (messages), chosen, rejected (labellers' choice first), label_agrees_with_oracle,
    chosen_oracle_score, rejected_oracle_score, kind, task, answer. Accuracy "against the oracle" ranks
    the pair by the oracle scores, not by the label.
    """
    from datasets import Dataset

    names = _check_tasks(tasks)
    rng = _rng("preference" if kind is None else f"preference-{kind}", split, seed)
    return Dataset.from_list([preference_pair(rng, split, names, kind) for _ in range(_size(n, split))])


def slip_dataset(split: str = "train", n: int | None = None, tasks: Sequence[str] | None = None, seed: int = 0):
    """Correct replies against the same replies with a policy-like slip (see `slip_pair`); same columns as
    `preference_dataset`. Default tasks: SFT_TASKS, the ones tiny-sft answers."""
    from datasets import Dataset

    names = _check_tasks(SFT_TASKS if tasks is None else tasks)
    rng = _rng("slip", split, seed)
    return Dataset.from_list([slip_pair(rng, split, names) for _ in range(_size(n, split))])


def corpus_dataset(split: str = "train", n: int | None = None, seed: int = 0):
    """Pretraining documents (column text), as tiny-base saw them; no chat special tokens."""
    from datasets import Dataset

    rng = _rng("corpus", split, seed)
    return Dataset.from_list([{"text": corpus_document(rng, split)} for _ in range(_size(n, split))])
