"""Measure what the tiny checkpoints show, on held-out data, with greedy decoding.

    python -m ptlab.tinyworld.evaluate                  # the full table, 500 items per measure
    python -m ptlab.tinyworld.evaluate --fast           # 40 items per measure, about a minute
    python -m ptlab.tinyworld.evaluate --update-cards   # also write the numbers into each model card

| phenomenon          | measure                                                       | bar                         |
| in-context learning | tiny-base accuracy with k demonstrations, no task name        | k=0 <= 30%, k=8 >= 80%, rising |
| chain-of-thought    | tiny-base on three-digit sums mod 10, "Steps:" vs "A:" prompt | steps >= 70%, >= 30 points above |
| instruction tuning  | exact match of the reply on held-out chat instructions        | base <= 15%, sft >= 85%     |
| reward model        | tiny-rm pairwise accuracy against the oracle, held-out pairs  | >= 90%                      |
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ptlab.tinyworld.world import (
    SFT_HELDOUT_TASKS,
    SFT_TASKS,
    arithmetic_dataset,
    chat_dataset,
    icl_dataset,
    parse_arithmetic_answer,
    preference_dataset,
)

KS = (0, 1, 2, 4, 8)
BARS = {
    "icl_k0_max": 0.30, "icl_k8_min": 0.80,
    "cot_min": 0.70, "cot_gap_min": 0.30,
    "chat_base_max": 0.15, "chat_sft_min": 0.85,
    "rm_min": 0.90,
}


# ----------------------------------------------------------------------------------------------------
# Batched greedy generation


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int,
                    stop_ids: Sequence[int] = (), batch_size: int = 64) -> list[list[int]]:
    """Greedy continuations of tokenised prompts, left-padded in batches.

    Args:
        prompts: token ids of each prompt (special tokens already in place).
        max_new_tokens: length limit of each continuation.
        stop_ids: a row is finished once it emits one of these (the stop token is kept).
    Returns:
        The new token ids of each prompt, cut after the first stop token.
    """
    outputs: list[list[int]] = []
    pad = tokenizer.pad_token_id
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(p) for p in chunk)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])  # (B, T) left-padded
        attention_mask = (torch.arange(width) >= torch.tensor([width - len(p) for p in chunk])[:, None]).long()
        new = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad, eos_token_id=list(stop_ids) or None)
        for row in new[:, width:].tolist():  # (B, new)
            cut = next((i + 1 for i, t in enumerate(row) if t in stop_ids), len(row))
            outputs.append([t for t in row[:cut] if t != pad])
    return outputs


def _encode(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return [tokenizer(t)["input_ids"] for t in texts]  # tokenizer adds <|bos|>, as in pretraining


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


# ----------------------------------------------------------------------------------------------------
# The four measures


def icl_accuracy(model, tokenizer, k: int, n: int, split: str = "test") -> float:
    """Exact match of the first generated line with the answer, over n prompts balanced over TASKS."""
    data = icl_dataset(split, n=n, k=k)
    newline = tokenizer.convert_tokens_to_ids("\n")
    longest = max(len(a) for a in data["answer"]) + 2
    outs = greedy_generate(model, tokenizer, _encode(tokenizer, data["prompt"]), longest, stop_ids=[newline])
    hits = [_decode(tokenizer, o).split("\n")[0] == a for o, a in zip(outs, data["answer"])]
    return sum(hits) / len(hits)


def arithmetic_accuracy(model, tokenizer, n: int, split: str = "test") -> dict[str, float]:
    """Accuracy with the direct prompt ("A:") and with the step-by-step prompt ("Steps:")."""
    data = arithmetic_dataset(split, n=n)
    newline = tokenizer.convert_tokens_to_ids("\n")
    direct = greedy_generate(model, tokenizer, _encode(tokenizer, data["direct_prompt"]), 2, stop_ids=[newline])
    steps_len = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in data["solution"]) + 4
    worked = greedy_generate(model, tokenizer, _encode(tokenizer, data["cot_prompt"]), steps_len)
    direct_hits = [_decode(tokenizer, o)[:1] == a for o, a in zip(direct, data["answer"])]
    worked_hits = [parse_arithmetic_answer(_decode(tokenizer, o)) == a for o, a in zip(worked, data["answer"])]
    return {"direct": sum(direct_hits) / n, "steps": sum(worked_hits) / n}


def chat_replies(model, tokenizer, prompts: Sequence[list[dict]], max_new_tokens: int = 24) -> list[str]:
    """The reply to each chat prompt: generated text up to <|end|> (excluded), stripped."""
    ids = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ids]
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    outs = greedy_generate(model, tokenizer, ids, max_new_tokens, stop_ids=[end])
    return [_decode(tokenizer, [t for t in o if t != end]).strip() for o in outs]


def chat_exact_match(model, tokenizer, n: int, tasks: Sequence[str], split: str = "test") -> float:
    """Share of replies equal to the answer (a reply that runs on past the answer is wrong)."""
    data = chat_dataset(split, n=n, tasks=tasks)
    replies = chat_replies(model, tokenizer, data["prompt_messages"])
    return sum(r == a for r, a in zip(replies, data["answer"])) / n


@torch.no_grad()
def rewards(reward_model, tokenizer, prompts: Sequence[list[dict]], replies: Sequence[str],
            batch_size: int = 64) -> torch.Tensor:
    """Scalar reward of each (prompt, reply) chat: shape (N,)."""
    texts = [tokenizer.apply_chat_template(list(p) + [{"role": "assistant", "content": r}], tokenize=False)
             for p, r in zip(prompts, replies)]
    scores = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], add_special_tokens=False, padding=True,
                          return_tensors="pt")
        scores.append(reward_model(**batch).logits[:, 0])  # (B,)
    return torch.cat(scores)


def reward_accuracy(reward_model, tokenizer, n: int, split: str = "test") -> dict[str, float]:
    """Pairwise accuracy against the oracle (and against the flawed labels), overall and per pair kind."""
    data = preference_dataset(split, n=n)
    r_chosen = rewards(reward_model, tokenizer, data["prompt"], data["chosen"])
    r_rejected = rewards(reward_model, tokenizer, data["prompt"], data["rejected"])
    agrees_label = (r_chosen > r_rejected).tolist()
    agrees_oracle = [a == ok for a, ok in zip(agrees_label, data["label_agrees_with_oracle"])]
    out = {"oracle": sum(agrees_oracle) / n, "labels": sum(agrees_label) / n}
    for kind in ("correctness", "style", "elaborate"):
        idx = [i for i, k in enumerate(data["kind"]) if k == kind]
        if idx:
            out[f"oracle_{kind}"] = sum(agrees_oracle[i] for i in idx) / len(idx)
            out[f"n_{kind}"] = len(idx)
    return out


# ----------------------------------------------------------------------------------------------------
# The table


def evaluate_all(n: int, checkpoints: dict[str, Path] | None = None, ks: Sequence[int] = KS,
                 threads: int = 1) -> dict:
    """Every number of the table, as a dict (fractions in [0, 1])."""
    from ptlab.models import load

    def _load(name, kind):
        if checkpoints and name in checkpoints:
            return load(str(checkpoints[name]), kind=kind)
        return load(name)

    torch.set_num_threads(threads)  # one thread: see TrainConfig.threads for why on a shared machine
    results: dict = {"n": n}
    base, tok = _load("tiny-base", "causal")
    results["icl"] = {k: icl_accuracy(base, tok, k, n) for k in ks}
    results["arithmetic"] = arithmetic_accuracy(base, tok, n)
    results["chat_base"] = chat_exact_match(base, tok, n, SFT_TASKS)
    sft, tok = _load("tiny-sft", "causal")
    results["chat_sft"] = chat_exact_match(sft, tok, n, SFT_TASKS)
    results["chat_sft_heldout_tasks"] = chat_exact_match(sft, tok, n, SFT_HELDOUT_TASKS)
    results["icl_sft_k4"] = icl_accuracy(sft, tok, 4, n)
    rm, tok = _load("tiny-rm", "reward")
    results["rm"] = reward_accuracy(rm, tok, n)
    return results


def verdicts(r: dict) -> dict[str, bool]:
    """Pass/fail of each bar."""
    icl = [r["icl"][k] for k in sorted(r["icl"])]
    a = r["arithmetic"]
    return {
        "icl": icl[0] <= BARS["icl_k0_max"] and r["icl"][max(r["icl"])] >= BARS["icl_k8_min"]
        and all(x <= y for x, y in zip(icl, icl[1:])),
        "cot": a["steps"] >= BARS["cot_min"] and a["steps"] - a["direct"] >= BARS["cot_gap_min"],
        "chat": r["chat_base"] <= BARS["chat_base_max"] and r["chat_sft"] >= BARS["chat_sft_min"],
        "rm": r["rm"]["oracle"] >= BARS["rm_min"],
    }


def format_table(r: dict) -> str:
    """A markdown table of the measures, their bars and pass/fail."""
    v = verdicts(r)
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    icl = ", ".join(f"k={k}: {pct(x)}" for k, x in sorted(r["icl"].items()))
    a = r["arithmetic"]
    rows = [
        ("in-context learning", f"tiny-base, {icl}", "k=0 <= 30%, k=8 >= 80%, rising", v["icl"]),
        ("chain-of-thought", f"tiny-base, steps {pct(a['steps'])} vs direct {pct(a['direct'])}",
         "steps >= 70%, >= 30 points above direct", v["cot"]),
        ("instruction tuning", f"tiny-base {pct(r['chat_base'])}, tiny-sft {pct(r['chat_sft'])}",
         "base <= 15%, sft >= 85%", v["chat"]),
        ("reward model", f"tiny-rm vs oracle {pct(r['rm']['oracle'])} (vs labels {pct(r['rm']['labels'])})",
         ">= 90%", v["rm"]),
    ]
    lines = [f"held-out items per measure: {r['n']}, greedy decoding", "",
             "| phenomenon | measured | bar | pass |", "| --- | --- | --- | --- |"]
    lines += [f"| {p} | {m} | {b} | {'yes' if ok else 'NO'} |" for p, m, b, ok in rows]
    rm = r["rm"]
    lines += ["", "Also measured:",
              f"- tiny-sft exact match on the task families held out of SFT {list(SFT_HELDOUT_TASKS)}: "
              f"{pct(r['chat_sft_heldout_tasks'])}",
              f"- tiny-sft few-shot (k=4, plain prompt) accuracy: {pct(r['icl_sft_k4'])}",
              "- tiny-rm vs oracle by pair kind: " + ", ".join(
                  f"{k} {pct(rm['oracle_' + k])} (n={rm['n_' + k]})" for k in ("correctness", "style", "elaborate")
                  if "oracle_" + k in rm)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Model cards

CARD_TEXT = {
    "tiny-base": "A Llama-architecture completion model pretrained from scratch on the tiny world's corpus: "
                 "few-shot word-task episodes (demonstrations only, no task name), sums of three digits modulo 10 "
                 "written with a direct answer (`A:`) or worked step by step (`Steps:`), and plain sentences "
                 "about the tasks. The corpus never contains a chat token, so this model does not follow chats.",
    "tiny-sft": "tiny-base after supervised instruction tuning on the world's single-turn chats, with the loss on "
                "the assistant reply only. Tuned on the task families "
                f"{list(SFT_TASKS)}; the families {list(SFT_HELDOUT_TASKS)} were held out.",
    "tiny-rm": "A reward model (`LlamaForSequenceClassification`, one label) initialised from tiny-sft and trained "
               "with the pairwise (Bradley-Terry) loss on the world's labelled preference pairs. The labels carry a "
               "deliberate flaw: when both replies are correct, labellers prefer an elaborate, long-winded reply "
               "85% of the time, although the hidden oracle prefers the concise one.",
}


def write_card(name: str, path: Path, results: dict) -> None:
    """README.md of a checkpoint: what it is, how it was built (train_facts.json), what it measured."""
    facts = json.loads((path / "train_facts.json").read_text()) if (path / "train_facts.json").exists() else {}
    stage = name.removeprefix("tiny-")
    threads = facts.get("config", {}).get("threads", 1)
    command = f"python -m ptlab.tinyworld.train {stage}" + (f" --threads {threads}" if threads != 1 else "")
    size_mb = (path / "model.safetensors").stat().st_size / 1e6
    card = [
        "---", "license: mit", "library_name: transformers", "tags: [ptlab, tiny, course]", "---", "",
        f"# {name}", "", CARD_TEXT[name], "",
        "## Rebuild", "", "```bash", command, "```", "",
        f"Deterministic given the seed ({facts.get('config', {}).get('seed', 0)}). Built in "
        f"{facts.get('minutes', '?')} minutes on 2 CPU cores with {threads} torch thread(s): {facts.get('steps', '?')} steps, "
        f"{facts.get('tokens', '?')} tokens, final training loss {facts.get('final_loss', '?')}. "
        f"Size {size_mb:.1f} MB (fp32 safetensors).", "",
        "## Measured (held-out data, greedy decoding)", "",
        "Measured with `python -m ptlab.tinyworld.evaluate` on all three checkpoints:", "",
        format_table(results), "",
        "## Use", "", "```python", "from ptlab.models import load", f'model, tokenizer = load("{name}")', "```", "",
    ]
    (path / "README.md").write_text("\n".join(card))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="held-out items per measure (default 500)")
    parser.add_argument("--fast", action="store_true", help="40 items per measure")
    parser.add_argument("--update-cards", action="store_true", help="write the numbers into the model cards")
    parser.add_argument("--json", type=Path, help="also save the numbers as JSON here")
    parser.add_argument("--threads", type=int, default=1)
    for name in ("base", "sft", "rm"):
        parser.add_argument(f"--{name}", type=Path, help=f"evaluate this folder instead of the shipped tiny-{name}")
    args = parser.parse_args(argv)
    n = 40 if args.fast else args.n
    overrides = {f"tiny-{s}": getattr(args, s) for s in ("base", "sft", "rm") if getattr(args, s)}
    start = time.time()
    results = evaluate_all(n, overrides, threads=args.threads)
    print(format_table(results))
    print(f"\n(evaluated in {time.time() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.update_cards:
        from ptlab.models import checkpoint_path

        for name in ("tiny-base", "tiny-sft", "tiny-rm"):
            write_card(name, overrides.get(name, checkpoint_path(name)), results)


if __name__ == "__main__":
    main()
