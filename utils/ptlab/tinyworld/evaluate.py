"""Measure what the tiny checkpoints show, on held-out data.

    python -m ptlab.tinyworld.evaluate                  # the full table, 500 items per measure
    python -m ptlab.tinyworld.evaluate --fast           # 40 items per measure, 20 prompts x 16 samples
    python -m ptlab.tinyworld.evaluate --update-cards   # also write the numbers into each model card

| phenomenon          | measure                                                        | bar                      |
| in-context learning | tiny-base accuracy with k demonstrations, no task name         | k=0 <= 30%, k=8 >= 80%, rising |
| chain-of-thought    | tiny-base on three-digit sums mod 10, "Steps:" vs "A:" prompt  | steps >= 70%, >= 30 points above |
| instruction tuning  | greedy reply's answer (`reply_core`) on held-out instructions  | base <= 15%, sft >= 85%  |
| sampling tiny-sft   | share of its samples (T=1) that open with an elaborate filler  | >= 2%                    |
| reward model        | tiny-rm pairwise accuracy against the oracle, held-out pairs   | >= 87%                   |
| ... on the policy   | tiny-rm: correct above wrong, pairs of tiny-sft's own samples  | >= 80%                   |
| inherited flaw      | tiny-rm prefers the elaborate reply when both are correct      | >= 70%                   |
| best-of-n           | best-of-16 by tiny-rm vs a random sample: correct, filler      | >= +5 points, more filler |
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ptlab.tinyworld.world import (
    ELABORATE_LEVEL,
    LABELLER_LENGTH_BIAS,
    SFT_FILLER_SHARES,
    SFT_HELDOUT_TASKS,
    SFT_TASKS,
    arithmetic_dataset,
    chat_dataset,
    filler_level,
    icl_dataset,
    oracle_score,
    parse_arithmetic_answer,
    preference_dataset,
    reply_core,
)

KS = (0, 1, 2, 4, 8)
BARS = {
    "icl_k0_max": 0.30, "icl_k8_min": 0.80,
    "cot_min": 0.70, "cot_gap_min": 0.30,
    "chat_base_max": 0.15, "chat_sft_min": 0.85, "sft_elaborate_min": 0.02,
    "rm_min": 0.87, "rm_policy_min": 0.80, "rm_elaborate_min": 0.70, "best_of_16_gain_min": 0.05,
}
BEST_OF = (1, 2, 4, 8, 16, 32, 64)  # best-of-n sizes; the largest is the samples drawn per prompt
POLICY_PROMPTS = 100  # held-out prompts sampled BEST_OF[-1] times each for the policy measures


# ----------------------------------------------------------------------------------------------------
# Batched greedy generation


@torch.no_grad()
def greedy_generate(model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int,
                    stop_ids: Sequence[int] = (), batch_size: int = 256, temperature: float | None = None,
                    samples: int = 1, round_tokens: int = 16) -> list[list[int]]:
    """Greedy (or, with a temperature, sampled) continuations of tokenised prompts, left-padded in batches.

    Generation runs in rounds of `round_tokens` new tokens; only the rows still unfinished go on to the next
    round, with what they wrote so far appended to their prompt. A batch otherwise computes every row up to
    its longest reply, and a few 70-character fillers among 5-character answers would set the pace.

    Args:
        prompts: token ids of each prompt (special tokens already in place).
        max_new_tokens: length limit of each continuation.
        stop_ids: a row is finished once it emits one of these (the stop token is kept).
        batch_size: rows (prompts x samples) per generate call.
        temperature: None for greedy decoding; else sample from softmax(logits / temperature), no top-k/top-p.
        samples: continuations per prompt (sampling only), listed prompt by prompt.
    Returns:
        The new token ids of each prompt (samples x len(prompts) of them), cut after the first stop token.
    """
    if temperature is None and samples != 1:
        raise ValueError(f"greedy decoding gives one continuation per prompt; got samples={samples}")
    if not stop_ids:  # generate then stops at the model's own end-of-sequence token: cut there too
        eos = model.generation_config.eos_token_id
        stop_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    rows = [list(p) for p in prompts for _ in range(samples)]
    new: list[list[int]] = [[] for _ in rows]
    active = list(range(len(rows)))
    while active:
        budget = min(round_tokens, max_new_tokens - len(new[active[0]]))  # every active row wrote as much
        unfinished = []
        for start in range(0, len(active), batch_size):
            chunk = active[start : start + batch_size]
            for i, row in zip(chunk, _generate_batch(model, tokenizer, [rows[i] + new[i] for i in chunk],
                                                     budget, stop_ids, temperature)):
                cut = next((j + 1 for j, t in enumerate(row) if t in stop_ids), None)
                new[i] += row[:cut]  # a stopped row's padding is cut off with the rest
                if cut is None and len(new[i]) < max_new_tokens:
                    unfinished.append(i)
        active = unfinished
    pad = tokenizer.pad_token_id  # kept while generating (a sampled pad is context, as in one generate call)
    return [[t for t in row if t != pad] for row in new]


def _generate_batch(model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int,
                    stop_ids: Sequence[int], temperature: float | None) -> list[list[int]]:
    """One left-padded generate call: each row's new ids (padding after an early stop included)."""
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # (B, T) left-padded
    attention_mask = (torch.arange(width) >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    sampling = {"do_sample": False} if temperature is None else {"do_sample": True, "temperature": temperature,
                                                                 "top_k": 0, "top_p": 1.0}
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                         pad_token_id=pad, eos_token_id=list(stop_ids) or None, **sampling)
    return out[:, width:].tolist()  # (B, new)


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


def chat_replies(model, tokenizer, prompts: Sequence[list[dict]], max_new_tokens: int = 96,
                 temperature: float | None = None, samples: int = 1, batch_size: int = 64) -> list[str]:
    """The reply to each chat prompt: generated text up to <|end|> (excluded), stripped.

    Greedy by default; with a temperature, `samples` sampled replies per prompt, listed prompt by prompt.
    The default length leaves room for the longest filler (73 characters) before the answer.
    """
    ids = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ids]
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    outs = greedy_generate(model, tokenizer, ids, max_new_tokens, stop_ids=[end], batch_size=batch_size,
                           temperature=temperature, samples=samples)
    return [_decode(tokenizer, [t for t in o if t != end]).strip() for o in outs]


def chat_exact_match(model, tokenizer, n: int, tasks: Sequence[str], split: str = "test",
                     core: bool = False) -> float:
    """Share of greedy replies equal to the answer (a reply that runs on past the answer is wrong).

    With `core`, the answer is read from the reply the way the oracle reads it (`reply_core`), so a
    correct answer behind a filler counts as correct.
    """
    data = chat_dataset(split, n=n, tasks=tasks)
    replies = chat_replies(model, tokenizer, data["prompt_messages"])
    read = reply_core if core else str.strip
    return sum(read(r) == a for r, a in zip(replies, data["answer"])) / n


@torch.no_grad()
def rewards(reward_model, tokenizer, prompts: Sequence[list[dict]], replies: Sequence[str],
            batch_size: int = 64) -> torch.Tensor:
    """Scalar reward of each (prompt, reply) chat: shape (N,).

    Batches are cut from the chats sorted by length, so a few 70-character fillers pad only their own batch.
    """
    texts = [tokenizer.apply_chat_template(list(p) + [{"role": "assistant", "content": r}], tokenize=False)
             for p, r in zip(prompts, replies)]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    scores = torch.empty(len(texts))
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in rows], add_special_tokens=False, padding=True, return_tensors="pt")
        scores[rows] = reward_model(**batch).logits[:, 0].float()  # (B,)
    return scores


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


def elaborate_preference(reward_model, tokenizer, n: int, split: str = "test") -> dict[str, float]:
    """How often the reward model prefers the elaborate reply of a both-correct "elaborate" world pair.

    The labellers chose the elaborate one 85% of the time; the oracle never does. The pairs are the
    "elaborate" rows among 10 n preference pairs (about n / 2 of them).
    """
    data = preference_dataset(split, n=10 * n, seed=1)
    rows = [r for r in data if r["kind"] == "elaborate"]
    elaborate = [r["chosen"] if filler_level(r["chosen"]) == ELABORATE_LEVEL else r["rejected"] for r in rows]
    other = [r["rejected"] if filler_level(r["chosen"]) == ELABORATE_LEVEL else r["chosen"] for r in rows]
    prompts = [r["prompt"] for r in rows]
    wins = rewards(reward_model, tokenizer, prompts, elaborate) > rewards(reward_model, tokenizer, prompts, other)
    return {"prefers_elaborate": wins.float().mean().item(), "n": len(rows)}


def policy_samples(policy, tokenizer, n_prompts: int, samples: int, split: str = "test", seed: int = 3,
                   temperature: float = 1.0) -> dict:
    """`samples` replies of the policy to each of n_prompts chat instructions of SFT_TASKS, at `temperature`.

    Returns prompts (n_prompts), replies, oracle scores and correctness (each n_prompts x samples, as lists).
    """
    torch.manual_seed(seed)  # the sampler draws from torch's global generator
    prompts = chat_dataset(split, n=n_prompts, tasks=SFT_TASKS, seed=seed)["prompt_messages"]
    flat = chat_replies(policy, tokenizer, prompts, temperature=temperature, samples=samples)
    replies = [flat[i * samples : (i + 1) * samples] for i in range(n_prompts)]
    oracle = [[oracle_score(p, r) for r in rs] for p, rs in zip(prompts, replies)]
    return {"prompts": prompts, "replies": replies, "oracle": oracle,
            "correct": [[s >= 0.5 for s in row] for row in oracle]}  # a correct reply scores 0.5 or more


def sample_stats(s: dict) -> dict[str, float]:
    """Share of the policy's samples that are correct, and that open with an elaborate / any filler."""
    flat = [r for rs in s["replies"] for r in rs]
    return {"correct": sum(c for cs in s["correct"] for c in cs) / len(flat),
            "elaborate": sum(filler_level(r) == ELABORATE_LEVEL for r in flat) / len(flat),
            "filler": sum(filler_level(r) > 0 for r in flat) / len(flat), "n": len(flat)}


def policy_ranking(reward_model, tokenizer, s: dict) -> tuple[dict, list[list[float]]]:
    """The reward model on the policy's own samples: correct-above-wrong accuracy over every (correct, wrong)
    pair of samples of the same prompt, and the rewards themselves (n_prompts x samples)."""
    k = len(s["replies"][0])
    flat_prompts = [p for p in s["prompts"] for _ in range(k)]
    flat = rewards(reward_model, tokenizer, flat_prompts, [r for rs in s["replies"] for r in rs]).tolist()
    scores = [flat[i * k : (i + 1) * k] for i in range(len(s["prompts"]))]
    wins = [rc > rw for rs, cs in zip(scores, s["correct"])
            for rc, c in zip(rs, cs) if c for rw, w in zip(rs, cs) if not w]
    return {"correct_above_wrong": sum(wins) / max(1, len(wins)), "pairs": len(wins),
            "prompts_with_pairs": sum(any(cs) and not all(cs) for cs in s["correct"])}, scores


def best_of_n_curve(s: dict, scores: list[list[float]], ns: Sequence[int]) -> dict[int, dict[str, float]]:
    """Best-of-n by the reward model, for each n: every prompt's samples cut into groups of n, the highest
    reward of each group picked. Means over picks of the proxy (reward) score, the oracle score,
    correctness and filler share; n=1 is a random sample."""
    curve = {}
    for n in ns:
        picks = []  # (reward, oracle, correct, reply) of each group's pick
        for rs, os_, cs, replies in zip(scores, s["oracle"], s["correct"], s["replies"]):
            for g in range(0, len(rs) - n + 1, n):
                i = max(range(g, g + n), key=lambda j: rs[j])
                picks.append((rs[i], os_[i], cs[i], replies[i]))
        curve[n] = {"proxy": sum(p[0] for p in picks) / len(picks), "oracle": sum(p[1] for p in picks) / len(picks),
                    "correct": sum(p[2] for p in picks) / len(picks),
                    "filler": sum(filler_level(p[3]) > 0 for p in picks) / len(picks),
                    "elaborate": sum(filler_level(p[3]) == ELABORATE_LEVEL for p in picks) / len(picks)}
    return curve


# ----------------------------------------------------------------------------------------------------
# The table


def evaluate_all(n: int, checkpoints: dict[str, Path] | None = None, ks: Sequence[int] = KS,
                 threads: int = 1, policy_prompts: int = POLICY_PROMPTS, best_of: Sequence[int] = BEST_OF) -> dict:
    """Every number of the table, as a dict (fractions in [0, 1])."""
    from ptlab.models import load

    def _load(name, kind):
        if checkpoints and name in checkpoints:
            return load(str(checkpoints[name]), kind=kind)
        return load(name)

    torch.set_num_threads(threads)  # one thread: see TrainConfig.threads for why on a shared machine
    results: dict = {"n": n, "policy_prompts": policy_prompts}
    base, tok = _load("tiny-base", "causal")
    results["icl"] = {k: icl_accuracy(base, tok, k, n) for k in ks}
    results["arithmetic"] = arithmetic_accuracy(base, tok, n)
    results["chat_base"] = chat_exact_match(base, tok, n, SFT_TASKS, core=True)
    sft, tok = _load("tiny-sft", "causal")
    results["chat_sft"] = chat_exact_match(sft, tok, n, SFT_TASKS, core=True)
    results["chat_sft_exact"] = chat_exact_match(sft, tok, n, SFT_TASKS)
    results["chat_sft_heldout_tasks"] = chat_exact_match(sft, tok, n, SFT_HELDOUT_TASKS, core=True)
    results["icl_sft_k4"] = icl_accuracy(sft, tok, 4, n)
    samples = policy_samples(sft, tok, policy_prompts, max(best_of))
    results["sft_samples"] = sample_stats(samples)
    rm, tok = _load("tiny-rm", "reward")
    results["rm"] = reward_accuracy(rm, tok, n)
    results["rm_elaborate"] = elaborate_preference(rm, tok, n)
    results["rm_policy"], scores = policy_ranking(rm, tok, samples)
    results["best_of_n"] = best_of_n_curve(samples, scores, best_of)
    return results


def verdicts(r: dict) -> dict[str, bool]:
    """Pass/fail of each bar."""
    icl = [r["icl"][k] for k in sorted(r["icl"])]
    a = r["arithmetic"]
    bon = r["best_of_n"]
    n16 = 16 if 16 in bon else max(bon)
    return {
        "icl": icl[0] <= BARS["icl_k0_max"] and r["icl"][max(r["icl"])] >= BARS["icl_k8_min"]
        and all(x <= y for x, y in zip(icl, icl[1:])),
        "cot": a["steps"] >= BARS["cot_min"] and a["steps"] - a["direct"] >= BARS["cot_gap_min"],
        "chat": r["chat_base"] <= BARS["chat_base_max"] and r["chat_sft"] >= BARS["chat_sft_min"],
        "sampling": r["sft_samples"]["elaborate"] >= BARS["sft_elaborate_min"],
        "rm": r["rm"]["oracle"] >= BARS["rm_min"],
        "rm_policy": r["rm_policy"]["correct_above_wrong"] >= BARS["rm_policy_min"],
        "rm_flaw": r["rm_elaborate"]["prefers_elaborate"] >= BARS["rm_elaborate_min"],
        "best_of_n": bon[n16]["correct"] - bon[1]["correct"] >= BARS["best_of_16_gain_min"]
        and bon[n16]["filler"] > bon[1]["filler"],
    }


def format_table(r: dict) -> str:
    """A markdown table of the measures, their bars and pass/fail."""
    v = verdicts(r)
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    icl = ", ".join(f"k={k}: {pct(x)}" for k, x in sorted(r["icl"].items()))
    a, s, rp, bon = r["arithmetic"], r["sft_samples"], r["rm_policy"], r["best_of_n"]
    n16 = 16 if 16 in bon else max(bon)
    rows = [
        ("in-context learning", f"tiny-base, {icl}", "k=0 <= 30%, k=8 >= 80%, rising", v["icl"]),
        ("chain-of-thought", f"tiny-base, steps {pct(a['steps'])} vs direct {pct(a['direct'])}",
         "steps >= 70%, >= 30 points above direct", v["cot"]),
        ("instruction tuning", f"answer read with reply_core: tiny-base {pct(r['chat_base'])}, tiny-sft "
         f"{pct(r['chat_sft'])} (reply exactly the answer: {pct(r['chat_sft_exact'])})", "base <= 15%, sft >= 85%",
         v["chat"]),
        ("sampling tiny-sft", f"T=1, {s['n']} samples: {pct(s['correct'])} correct, {pct(s['elaborate'])} elaborate "
         f"filler, {pct(s['filler'])} any filler", "elaborate >= 2%", v["sampling"]),
        ("reward model", f"tiny-rm vs oracle {pct(r['rm']['oracle'])} (vs labels {pct(r['rm']['labels'])})",
         ">= 87%", v["rm"]),
        ("reward model on the policy", f"tiny-rm ranks a correct tiny-sft sample above a wrong one of the same "
         f"prompt: {pct(rp['correct_above_wrong'])} ({rp['pairs']} pairs, {rp['prompts_with_pairs']} prompts)",
         ">= 80%", v["rm_policy"]),
        ("inherited flaw", f"tiny-rm prefers the elaborate reply of a both-correct pair: "
         f"{pct(r['rm_elaborate']['prefers_elaborate'])} (n={r['rm_elaborate']['n']})", ">= 70%", v["rm_flaw"]),
        ("best-of-n", f"best-of-{n16} by tiny-rm vs a random sample: correct {pct(bon[n16]['correct'])} vs "
         f"{pct(bon[1]['correct'])}, filler {pct(bon[n16]['filler'])} vs {pct(bon[1]['filler'])}",
         ">= 5 points more correct, more fillers", v["best_of_n"]),
    ]
    lines = [f"held-out items per measure: {r['n']}, greedy decoding; sampled measures: {r['policy_prompts']} "
             f"held-out prompts x {max(bon)} samples at temperature 1", "",
             "| phenomenon | measured | bar | pass |", "| --- | --- | --- | --- |"]
    lines += [f"| {p} | {m} | {b} | {'yes' if ok else 'NO'} |" for p, m, b, ok in rows]
    rm = r["rm"]
    lines += ["", "Also measured:",
              f"- tiny-sft exact match on the task families held out of SFT {list(SFT_HELDOUT_TASKS)}: "
              f"{pct(r['chat_sft_heldout_tasks'])}",
              f"- tiny-sft few-shot (k=4, plain prompt) accuracy: {pct(r['icl_sft_k4'])}",
              "- tiny-rm vs oracle by pair kind: " + ", ".join(
                  f"{k} {pct(rm['oracle_' + k])} (n={rm['n_' + k]})" for k in ("correctness", "style", "elaborate")
                  if "oracle_" + k in rm),
              "- best-of-n by tiny-rm on tiny-sft's samples (mean over picks; proxy = tiny-rm's reward, oracle = "
              "oracle_score):", "",
              "| n | proxy reward | oracle score | correct | any filler | elaborate |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {n} | {c['proxy']:.3f} | {c['oracle']:.3f} | {pct(c['correct'])} | {pct(c['filler'])} | "
              f"{pct(c['elaborate'])} |" for n, c in sorted(bon.items())]
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
                f"{list(SFT_TASKS)}; the families {list(SFT_HELDOUT_TASKS)} were held out. "
                f"{100 * SFT_FILLER_SHARES[1]:.0f}% of its training replies open with a polite filler "
                f"(\"Sure! \") and {100 * SFT_FILLER_SHARES[ELABORATE_LEVEL]:.0f}% with an elaborate one, so "
                "greedy decoding gives the bare answer while sampling now and then gives a padded reply.",
    "tiny-rm": "A reward model (`LlamaForSequenceClassification`, one label) initialised from tiny-sft and trained "
               "with the pairwise (Bradley-Terry) loss on labelled comparisons, InstructGPT-style: most of them "
               "are about tiny-sft's own replies. The labellers compared every two distinct samples of a prompt "
               "(16 per training prompt at temperature 1), and each correct reply met a copy with one letter "
               "replaced by what tiny-sft would likely write there instead; the world's synthetic pairs, slip "
               "pairs and extra both-correct elaborate pairs complete the data (see `train_rm` for why). "
               "The labels carry a deliberate flaw: when both replies are correct and one is elaborate, "
               "labellers prefer the elaborate, long-winded reply "
               f"{100 * LABELLER_LENGTH_BIAS:.0f}% of the time, although the hidden oracle prefers the concise one.",
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
        f"{facts.get('minutes', '?')} minutes of training on 2 CPU cores with {threads} torch thread(s)"
        + (f" (plus {facts['sampling_minutes']} minutes sampling tiny-sft's replies to label and "
           f"{facts.get('preparing_minutes', '?')} preparing the pairs)" if facts.get("sampling_minutes") else "")
        + f": {facts.get('steps', '?')} steps, "
        f"{facts.get('tokens', '?')} tokens, final training loss {facts.get('final_loss', '?')}. "
        f"Size {size_mb:.1f} MB (fp32 safetensors).", "",
        "## Measured (held-out data)", "",
        "Measured with `python -m ptlab.tinyworld.evaluate` on all three checkpoints:", "",
        format_table(results), "",
        "## Use", "", "```python", "from ptlab.models import load", f'model, tokenizer = load("{name}")', "```", "",
    ]
    (path / "README.md").write_text("\n".join(card))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500, help="held-out items per measure (default 500)")
    parser.add_argument("--fast", action="store_true", help="40 items per measure, 20 prompts x 16 samples")
    parser.add_argument("--update-cards", action="store_true", help="write the numbers into the model cards")
    parser.add_argument("--json", type=Path, help="also save the numbers as JSON here")
    parser.add_argument("--threads", type=int, default=1)
    for name in ("base", "sft", "rm"):
        parser.add_argument(f"--{name}", type=Path, help=f"evaluate this folder instead of the shipped tiny-{name}")
    args = parser.parse_args(argv)
    n = 40 if args.fast else args.n
    overrides = {f"tiny-{s}": getattr(args, s) for s in ("base", "sft", "rm") if getattr(args, s)}
    start = time.time()
    policy = dict(policy_prompts=20, best_of=(1, 4, 16)) if args.fast else {}
    results = evaluate_all(n, overrides, threads=args.threads, **policy)
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
