"""Plausible wrong implementations lose points in their own exercise, and in no other.

One table per lab: each row is a mistake a student would plausibly make (a missing `zero_grad`, an
off-by-one, a missing guard, a call to the reference library), as exact edits of one solution cell.
`tests/mutation.py` runs a lab's exercise part once in a kernel, then each mutant with the cells after it,
and scores the graded cells (hidden tests included) as nbgrader does. To cover a new mistake, add a row.
Correct variants (`variant`) must keep full marks. Slow: each lab's rows run in kernels of at most
ROWS_PER_KERNEL rows, which tests/conftest.py spreads over the xdist workers.
"""

from __future__ import annotations

import pytest
from mutation import Mutant, apply, check, lost_points, mutant, notebook, own_cells, rerun_cost, variant

pytestmark = pytest.mark.slow

MUTANTS: dict[str, list[Mutant]] = {
    "00_orientation": [
        mutant(
            "ex_next_token_probs",
            "the probabilities of every position, not the last",
            ("last = logits[:, -1, :] / temperature", "last = logits / temperature"),
        ),
        mutant("ex_next_token_probs", "temperature multiplies the logits", ("logits[:, -1, :] / temperature", "logits[:, -1, :] * temperature")),
        mutant("ex_next_token_probs", "the first position, not the last", ("logits[:, -1, :] / temperature", "logits[:, 0, :] / temperature")),
        mutant(
            "ex_top_next_tokens",
            "probabilities left as tensors",
            ("(tokenizer.decode([int(i)]), float(p))", "(tokenizer.decode([int(i)]), p)"),
        ),
        mutant("ex_top_next_tokens", "the k least likely tokens", ("top = torch.topk(probs, k)", "top = torch.topk(probs, k, largest=False)")),
        mutant(
            "ex_count_parameters",
            "k_proj/v_proj as wide as q_proj (ignores grouped-query attention)",
            ("    attention = d * q + q * d + 2 * d * kv", "    attention = 4 * d * d"),
            own=("test_llama_param_count",),
        ),
        mutant(
            "ex_count_parameters",
            "counts the output head even when it is tied",
            ("    head = 0 if config.tie_word_embeddings else V * d", "    head = V * d"),
            own=("test_llama_param_count",),
        ),
        mutant(
            "ex_count_parameters",
            "a tied matrix counted twice",
            (
                "    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)",
                "    return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)\n               if p.requires_grad or not trainable_only)",
            ),
            own=("test_count_parameters",),
        ),
        mutant(
            "ex_sequence_logprob",
            "sums over padding too",
            (
                "    return (token_logps * attention_mask[:, 1:].float()).sum(-1)  # padding predicts nothing that counts",
                "    return token_logps.sum(-1)",
            ),
        ),
    ],
    "01_prompting": [
        mutant(
            "ex_choice_logprobs",
            "logits not shifted (position t scores token t)",
            ("logp = logits[:, :-1].float()", "logp = logits[:, 1:].float()"),
            own=("test_choice_logprobs",),
        ),
        mutant(
            "ex_choice_logprobs",
            "the prompt's last token is summed too",
            ("(target >= torch.tensor(starts)[:, None])", "(target >= torch.tensor(starts)[:, None] - 1)"),
            own=("test_choice_logprobs",),
        ),
        mutant(
            "ex_choice_logprobs",
            "padding positions are scored",
            ("& (target < lengths[:, None])", "& (target < T)"),
            own=("test_choice_logprobs",),
        ),
        mutant(
            "ex_choice_logprobs",
            "the choice tokenized alone (BPE merge ignored)",
            (
                'ids = tokenizer(prompt + choice)["input_ids"]',
                'ids = prompt_ids + tokenizer(choice, add_special_tokens=False)["input_ids"]',
            ),
            own=("test_choice_logprobs",),
        ),
        mutant(
            "ex_choice_logprobs",
            "normalize divides by characters, not tokens",
            (
                "return total / scored.sum(-1) if normalize else total",
                "return total / torch.tensor([float(len(c)) for c in choices]) if normalize else total",
            ),
            own=("test_choice_logprobs",),
        ),
        mutant(
            "ex_choice_logprobs",
            "log-softmax in the model's dtype (bfloat16 on the GPU track)",
            ("logp = logits[:, :-1].float().log_softmax(-1).cpu()", "logp = logits[:, :-1].log_softmax(-1).float().cpu()"),
            own=("test_choice_logprobs",),
        ),
        variant(
            "ex_choice_logprobs",
            "per-token log p from cross_entropy",
            (
                "logp = logits[:, :-1].float().log_softmax(-1).cpu()  # (C, T-1, V): position t predicts token t+1\n"
                "    token_logp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (C, T-1)",
                'token_logp = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2).cpu(), input_ids[:, 1:], reduction="none")',
            ),
        ),
        variant(
            "ex_choice_logprobs",
            "float32 through log_softmax's dtype argument",
            ("logits[:, :-1].float().log_softmax(-1)", "F.log_softmax(logits[:, :-1], dim=-1, dtype=torch.float32)"),
        ),
        variant(
            "ex_choice_logprobs",
            "token counts from lengths and starts, other error wording",
            (
                "return total / scored.sum(-1) if normalize else total",
                "return total / (lengths - torch.tensor(starts)) if normalize else total",
            ),
            ('"choices is empty: give at least one continuation to score"', '"no choices to score"'),
        ),
        mutant(
            "ex_filters",
            "keeps exactly k indices, so ties with the k-th drop",
            (
                'return logits.masked_fill(logits < kth, float("-inf"))',
                'keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(k, dim=-1).indices, True)\n    return logits.masked_fill(~keep, float("-inf"))',
            ),
            own=("test_top_k_filter",),
        ),
        mutant(
            "ex_filters",
            "float16 comes back as float32",
            (
                'return logits.masked_fill(logits < kth, float("-inf"))',
                'return logits.float().masked_fill(logits < kth, float("-inf"))',
            ),
            own=("test_top_k_filter",),
        ),
        mutant(
            "ex_filters",
            "drops the token that crosses p",
            ("drop_sorted = mass_above >= p", "drop_sorted = probs.cumsum(-1) > p"),
            own=("test_top_p_filter",),
        ),
        mutant(
            "ex_filters",
            "calls transformers' TopPLogitsWarper",
            (
                "    check_probability(p)\n    if p == 1:",
                "    return TopPLogitsWarper(p)(None, logits.reshape(-1, logits.shape[-1]).clone()).reshape(logits.shape)\n    if p == 1:",
            ),
            own=("test_top_p_filter",),
        ),
        mutant(
            "ex_filters",
            "compares logits instead of probabilities",
            (
                "drop = probs < p * probs.max(dim=-1, keepdim=True).values",
                "drop = logits < p * logits.max(dim=-1, keepdim=True).values",
            ),
            own=("test_min_p_filter",),
        ),
        variant(
            "ex_filters",
            "top-k threshold by sorting",
            ("kth = logits.topk(k, dim=-1).values[..., -1:]", "kth = logits.sort(dim=-1, descending=True).values[..., k - 1 : k]"),
        ),
        variant(
            "ex_filters",
            "top-p mass above as an exclusive cumulative sum",
            (
                "mass_above = probs.cumsum(-1) - probs",
                "mass_above = torch.cat([torch.zeros_like(probs[..., :1]), probs.cumsum(-1)[..., :-1]], dim=-1)",
            ),
        ),
        variant(
            "ex_filters",
            "min-p compared in log space",
            (
                "probs = logits.float().softmax(-1)  # (..., V)\n    drop = probs < p * probs.max(dim=-1, keepdim=True).values",
                "logp = logits.float().log_softmax(-1)  # (..., V)\n"
                "    drop = logp < logp.max(dim=-1, keepdim=True).values + torch.tensor(float(p)).log()",
            ),
        ),
        mutant(
            "ex_sample_next_token",
            "temperature applied after the softmax",
            ("scaled = logits.float() / temperature", "scaled = logits.float()"),
            ("probs = scaled.softmax(dim=-1)", "probs = scaled.softmax(dim=-1) / temperature"),
            own=("test_sample_next_token",),
        ),
        mutant(
            "ex_sample_next_token",
            "truncation before the temperature",
            ("scaled = logits.float() / temperature", "scaled = logits.float()"),
            ("probs = scaled.softmax(dim=-1)", "probs = (scaled / temperature).softmax(dim=-1)"),
            own=("test_sample_next_token",),
        ),
        mutant(
            "ex_sample_next_token",
            "ignores the generator",
            ("torch.multinomial(probs, 1, generator=generator)", "torch.multinomial(probs, 1)"),
            own=("test_sample_next_token",),
        ),
        mutant(
            "ex_generate",
            "feeds the whole sequence while passing the cache",
            (
                "inputs, past = step, out.past_key_values",
                "inputs, past = torch.cat([inputs, step], dim=1), out.past_key_values",
            ),
            own=("test_generate",),
        ),
        mutant(
            "ex_generate",
            "never passes past_key_values",
            ("inputs, past = step, out.past_key_values", "inputs, past = step, None"),
            own=("test_generate",),
        ),
        mutant(
            "ex_generate",
            "calls model.generate",
            (
                "    inputs, past, new_ids = ids, None, []",
                "    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,\n                         do_sample=False, pad_token_id=tokenizer.pad_token_id)\n    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)\n    inputs, past, new_ids = ids, None, []",
            ),
            own=("test_generate",),
        ),
        mutant(
            "ex_self_consistency",
            "None counts as an answer",
            ("counts = Counter(a for a in answers if a is not None)", "counts = Counter(answers)"),
            (
                "winner = next(a for a in answers if a is not None and counts[a] == top)",
                "winner = next(a for a in answers if counts[a] == top)",
            ),
            own=("test_majority_vote",),
        ),
        mutant(
            "ex_self_consistency",
            "ties go to the last answer",
            ("winner = next(a for a in answers if", "winner = next(a for a in reversed(answers) if"),
            own=("test_majority_vote",),
        ),
        mutant(
            "ex_self_consistency",
            "samples greedily (temperature not passed on)",
            ("temperature=temperature, generator=generator)", "generator=generator)"),
            own=("test_self_consistency",),
        ),
    ],
    "02_instruction_tuning": [
        mutant(
            "ex_build_sft_example",
            "a reply of exactly max_length tokens is treated as too long",
            (
                "if len(input_ids) - reply_start <= max_length:",
                "if len(input_ids) - reply_start < max_length:",
            ),
        ),
        mutant(
            "ex_build_sft_example",
            "every token labelled (no loss masking)",
            ("labels = [IGNORE_INDEX] * len(input_ids)", "labels = list(input_ids)"),
        ),
        mutant(
            "ex_build_sft_example",
            "the assistant header labelled with the reply",
            ("reply_start = len(prefix)", "reply_start = len(render(messages[:i]))"),
        ),
        mutant(
            "ex_build_sft_example",
            "the end-of-turn token left unlabelled",
            ("labels[reply_start:end] = input_ids[reply_start:end]", "labels[reply_start:end - 1] = input_ids[reply_start:end - 1]"),
        ),
        mutant(
            "ex_build_sft_example",
            "only the last reply labelled",
            ('        if message["role"] != "assistant":\n            continue',
             '        if message["role"] != "assistant" or i != len(messages) - 1:\n            continue'),
        ),
        mutant(
            "ex_build_sft_example",
            "a long context cut at the end (the reply is lost)",
            ("input_ids, labels = input_ids[-max_length:], labels[-max_length:]",
             "input_ids, labels = input_ids[:max_length], labels[:max_length]"),
        ),
        mutant(
            "ex_collate",
            "one dtype slip must cost collate's points only",
            (
                "torch.as_tensor(example[k], dtype=torch.long)",
                "torch.as_tensor(example[k], dtype=torch.int32)",
            ),
            (
                "torch.full((B, T), fill[k], dtype=torch.long)",
                "torch.full((B, T), fill[k], dtype=torch.int32)",
            ),
        ),
        mutant(
            "ex_collate",
            "padded on the left",
            ("batch[k][b, : len(row[k])] = row[k]", "batch[k][b, T - len(row[k]) :] = row[k]"),
        ),
        mutant(
            "ex_collate",
            "labels padded with the pad id, not -100",
            ('"labels": IGNORE_INDEX}', '"labels": pad_token_id}'),
        ),
        mutant(
            "ex_sft_loss",
            "logits at t scored against the label at t",
            ("shift_labels = labels[:, 1:].long()", "shift_labels = labels[:, :-1].long()"),
        ),
        mutant(
            "ex_sft_loss",
            "every position counts, -100 read as token 0",
            (
                "keep = shift_labels != IGNORE_INDEX  # (B, T-1)",
                "keep = torch.ones_like(shift_labels, dtype=torch.bool)",
            ),
            (
                "F.cross_entropy(shift_logits[keep].float(), shift_labels[keep])",
                "F.cross_entropy(shift_logits[keep].float(), shift_labels[keep].clamp(min=0))",
            ),
        ),
        mutant(
            "ex_sft_loss",
            "a mean per row, then over rows",
            (
                "    return F.cross_entropy(shift_logits[keep].float(), shift_labels[keep])  # (N, V), (N,) -> ()",
                '    per_token = F.cross_entropy(shift_logits.float().transpose(1, 2), shift_labels, reduction="none")\n    rows = keep.any(-1)\n    return ((per_token * keep).sum(-1)[rows] / keep.sum(-1)[rows]).mean()',
            ),
        ),
        mutant(
            "ex_train_sft",
            "gradients accumulate across steps",
            ("        optimizer.zero_grad(set_to_none=True)\n", ""),
        ),
        mutant(
            "ex_train_sft",
            "the norm is measured but never clipped",
            ("clip_grad_norm_(params, max_grad_norm)", 'clip_grad_norm_(params, float("inf"))'),
        ),
        mutant(
            "ex_train_sft",
            "weight_decay ignored",
            (
                "torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)",
                "torch.optim.AdamW(params, lr=lr)",
            ),
        ),
        mutant(
            "ex_instruction_accuracy",
            "generation not told to stop at <|end|>, and the text after it kept",
            (
                "do_sample=False, eos_token_id=end_id, pad_token_id=pad_id)",
                "do_sample=False, pad_token_id=pad_id)",
            ),
            ("            if end_id in row:\n                row = row[: row.index(end_id)]\n", ""),
        ),
        mutant(
            "ex_instruction_accuracy",
            "prompts padded on the right for generation",
            ("[pad_id] * (T - len(ids)) + ids for ids in chunk]", "ids + [pad_id] * (T - len(ids)) for ids in chunk]"),
            ("[[0] * (T - len(ids)) + [1] * len(ids) for ids in chunk]", "[[1] * len(ids) + [0] * (T - len(ids)) for ids in chunk]"),
        ),
        mutant(
            "ex_instruction_accuracy",
            "the prompt decoded with the reply",
            ("for row in out[:, T:].tolist():", "for row in out.tolist():"),
        ),
    ],
    "03_reward_model": [
        mutant(
            "ex_pairwise_loss",
            "log(sigmoid) underflows for large differences",
            ("-F.logsigmoid(difference).mean()", "-torch.log(torch.sigmoid(difference)).mean()"),
            own=("test_pairwise_loss",),
        ),
        mutant(
            "ex_pairwise_loss",
            "sum instead of mean",
            ("-F.logsigmoid(difference).mean()", "-F.logsigmoid(difference).sum()"),
            own=("test_pairwise_loss",),
        ),
        mutant(
            "ex_pairwise_loss",
            "margin added with the wrong sign",
            ("difference = difference - margin", "difference = difference + margin"),
            own=("test_pairwise_loss",),
        ),
        mutant(
            "ex_pairwise_loss",
            "rejected minus chosen",
            ("difference = chosen_rewards - rejected_rewards", "difference = rejected_rewards - chosen_rewards"),
            own=("test_pairwise_loss",),
        ),
        mutant(
            "ex_pairwise_loss",
            "no shape check: (B, 1) broadcasts against (B,)",
            (
                "    if chosen_rewards.dim() != 1 or chosen_rewards.shape != rejected_rewards.shape:\n"
                "        raise ValueError(f\"chosen_rewards and rejected_rewards should both be (B,), got {tuple(chosen_rewards.shape)} \"\n"
                "                         f\"and {tuple(rejected_rewards.shape)}; pass one score per pair\")\n",
                "",
            ),
            own=("test_pairwise_loss",),
        ),
        variant(
            "ex_pairwise_loss",
            "pairwise_loss: other wording of the errors (correct)",
            (
                "    if chosen_rewards.dim() != 1 or chosen_rewards.shape != rejected_rewards.shape:\n"
                "        raise ValueError(f\"chosen_rewards and rejected_rewards should both be (B,), got {tuple(chosen_rewards.shape)} \"\n"
                "                         f\"and {tuple(rejected_rewards.shape)}; pass one score per pair\")\n"
                "    if chosen_rewards.numel() == 0:\n"
                "        raise ValueError(\"the batch is empty (B = 0): there is no comparison to learn from\")\n",
                "    if chosen_rewards.dim() != 1:\n"
                "        raise ValueError(f\"chosen_rewards must be 1-D, got shape {chosen_rewards.shape}\")\n"
                "    if rejected_rewards.shape != chosen_rewards.shape:\n"
                "        raise ValueError(f\"rejected_rewards has shape {rejected_rewards.shape}, chosen_rewards {chosen_rewards.shape}\")\n"
                "    if len(chosen_rewards) == 0:\n"
                "        raise ValueError(\"no pairs to compare\")\n",
            ),
        ),
        mutant(
            "ex_ranking_loss",
            "all K^2 ordered pairs",
            (
                "better, worse = torch.triu_indices(K, K, offset=1, device=rewards.device)",
                "better, worse = torch.cartesian_prod(torch.arange(K), torch.arange(K)).T",
            ),
            own=("test_ranking_loss",),
        ),
        mutant(
            "ex_ranking_loss",
            "adjacent pairs only",
            (
                "better, worse = torch.triu_indices(K, K, offset=1, device=rewards.device)",
                "better, worse = torch.arange(K - 1), torch.arange(1, K)",
            ),
            own=("test_ranking_loss",),
        ),
        mutant("ex_ranking_loss", "no K < 2 guard", ("if K < 2:", "if K < 0:"), own=("test_ranking_loss",)),
        mutant(
            "ex_ranking_loss",
            "sum over a prompt's pairs (no 1/C(K,2))",
            (
                "return pairwise_loss(rewards[:, better].reshape(-1), rewards[:, worse].reshape(-1))",
                "return -F.logsigmoid(rewards[:, better] - rewards[:, worse]).sum(dim=1).mean()",
            ),
            own=("test_ranking_loss",),
        ),
        variant(
            "ex_ranking_loss",
            "other wording, pairs from torch.combinations (correct)",
            (
                'raise ValueError(f"rewards should be (B, K) with the replies of a prompt best first, got {tuple(rewards.shape)}")',
                'raise ValueError(f"rewards must be 2-D, got a {rewards.dim()}-D tensor of shape {rewards.shape}")',
            ),
            ('raise ValueError("the batch is empty (B = 0): there is no ranking to learn from")',
             'raise ValueError("no prompts in the batch")'),
            ('raise ValueError(f"a ranking needs K >= 2 replies per prompt to form a pair, got K = {K}")',
             'raise ValueError("need at least two replies per prompt")'),
            (
                "better, worse = torch.triu_indices(K, K, offset=1, device=rewards.device)",
                "better, worse = torch.combinations(torch.arange(K, device=rewards.device), r=2).T",
            ),
        ),
        mutant(
            "ex_last_token_rewards",
            "mask.sum() - 1: right padding only",
            ("last = torch.where(real, positions, -1).amax(dim=1)", "last = real.sum(dim=1) - 1"),
            own=("test_last_token_rewards",),
        ),
        mutant(
            "ex_last_token_rewards",
            "the last position: left padding only",
            (
                "last = torch.where(real, positions, -1).amax(dim=1)",
                "last = torch.full((B,), T - 1, device=hidden_states.device)",
            ),
            own=("test_last_token_rewards",),
        ),
        mutant(
            "ex_last_token_rewards",
            "mask.sum(): one past the last token",
            (
                "last = torch.where(real, positions, -1).amax(dim=1)",
                "last = real.sum(dim=1).clamp(max=T - 1)",
            ),
            own=("test_last_token_rewards",),
        ),
        mutant(
            "ex_last_token_rewards",
            "positions made on the CPU (torch.arange(T) without device=)",
            ("positions = torch.arange(T, device=hidden_states.device)", "positions = torch.arange(T)"),
            own=("test_last_token_rewards",),
        ),
        mutant(
            "ex_last_token_rewards",
            "the first real token (argmax of the mask)",
            ("last = torch.where(real, positions, -1).amax(dim=1)", "last = real.int().argmax(dim=1)"),
            own=("test_last_token_rewards",),
        ),
        variant(
            "ex_last_token_rewards",
            "last_token_rewards: other wording of the errors (correct)",
            (
                'raise ValueError(f"hidden_states should be (B, T, H) and attention_mask (B, T), got "\n'
                '                         f"{tuple(hidden_states.shape)} and {tuple(attention_mask.shape)}")',
                'raise ValueError(f"attention_mask {attention_mask.shape} does not fit hidden_states {hidden_states.shape}")',
            ),
            ('raise ValueError("the batch is empty (B = 0): there is no sequence to score")',
             'raise ValueError("B must be at least 1")'),
            ('raise ValueError("a row of attention_mask has no 1: that sequence has no token to read a reward from")',
             'raise ValueError("all-padding row")'),
        ),
        variant(
            "ex_last_token_rewards",
            "flipped argmax and a CPU index tensor, fine on CUDA (correct)",
            (
                "    positions = torch.arange(T, device=hidden_states.device)  # (T,)\n"
                "    last = torch.where(real, positions, -1).amax(dim=1)  # (B,) rightmost real position: any padding side\n"
                "    last_hidden = hidden_states[torch.arange(B, device=hidden_states.device), last]  # (B, H)\n",
                "    last = T - 1 - real.flip(1).int().argmax(dim=1)\n"
                "    last_hidden = hidden_states[torch.arange(B), last]  # a CPU index tensor may index a GPU tensor\n",
            ),
        ),
        variant(
            "ex_last_token_rewards",
            "positions made on the CPU, then moved with .to (correct)",
            ("positions = torch.arange(T, device=hidden_states.device)",
             "positions = torch.arange(T).to(hidden_states.device)"),
        ),
        mutant(
            "ex_preference_accuracy",
            "a tie counts as right",
            ("(chosen_rewards > rejected_rewards)", "(chosen_rewards >= rejected_rewards)"),
            own=("test_preference_accuracy",),
        ),
        mutant(
            "ex_preference_accuracy",
            "a tensor, not a float",
            (".float().mean().item()", ".float().mean()"),
            own=("test_preference_accuracy",),
        ),
        mutant(
            "ex_preference_accuracy",
            "mean probability instead of accuracy",
            (
                "(chosen_rewards > rejected_rewards).float().mean().item()",
                "torch.sigmoid(chosen_rewards - rejected_rewards).mean().item()",
            ),
            own=("test_preference_accuracy",),
        ),
        variant(
            "ex_preference_accuracy",
            "other wording, a Python division (correct)",
            (
                "    if chosen_rewards.dim() != 1 or chosen_rewards.shape != rejected_rewards.shape:\n"
                "        raise ValueError(f\"chosen_rewards and rejected_rewards should both be (B,), got {tuple(chosen_rewards.shape)} \"\n"
                "                         f\"and {tuple(rejected_rewards.shape)}\")\n"
                "    if chosen_rewards.numel() == 0:\n"
                "        raise ValueError(\"the batch is empty (B = 0): accuracy is undefined\")\n"
                "    return (chosen_rewards > rejected_rewards).float().mean().item()\n",
                "    if chosen_rewards.ndim != 1 or chosen_rewards.shape != rejected_rewards.shape:\n"
                "        raise ValueError(f\"need two 1-D tensors of one length, got {list(chosen_rewards.shape)} vs \"\n"
                "                         f\"{list(rejected_rewards.shape)}\")\n"
                "    if len(chosen_rewards) == 0:\n"
                "        raise ValueError(\"no pairs\")\n"
                "    return int((chosen_rewards > rejected_rewards).sum()) / len(chosen_rewards)\n",
            ),
        ),
        mutant(
            "ex_train_reward_model",
            "no zero_grad",
            ("        optimizer.zero_grad()\n", ""),
            own=("test_train_reward_model",),
        ),
        mutant(
            "ex_train_reward_model",
            "chosen and rejected swapped",
            ("chosen, rejected = rewards.chunk(2)", "rejected, chosen = rewards.chunk(2)"),
            own=("test_train_reward_model",),
        ),
        mutant(
            "ex_train_reward_model",
            "evaluated on the training pairs",
            ("score_pairs(model, tokenizer, eval_pairs)", "score_pairs(model, tokenizer, train_pairs)"),
            own=("test_train_reward_model",),
        ),
        mutant(
            "ex_train_reward_model",
            "no gradient clipping",
            ("        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)\n", ""),
            own=("test_train_reward_model",),
        ),
        mutant(
            "ex_best_of_n",
            "argmin",
            ("best = rewards.argmax(dim=1)", "best = rewards.argmin(dim=1)"),
            own=("test_best_of_n",),
        ),
        mutant(
            "ex_best_of_n",
            "always the first sample",
            ("best = rewards.argmax(dim=1)", "best = torch.zeros(len(prompts), dtype=torch.long)"),
            own=("test_best_of_n",),
        ),
        mutant(
            "ex_best_of_n",
            "rewards reshaped sample-major",
            (".reshape(len(prompts), n)", ".reshape(n, len(prompts)).T"),
            own=("test_best_of_n",),
        ),
        variant(
            "ex_best_of_n",
            "other wording, plain lists and max (correct)",
            ('raise ValueError("prompts is empty: there is nothing to sample for")', 'raise ValueError("no prompts")'),
            ('raise ValueError(f"n should be an int >= 1 samples per prompt, got {n!r}")',
             'raise ValueError("n must be positive")'),
            (
                "    rewards = torch.as_tensor(reward_fn(flat_prompts, flat_replies), dtype=torch.float32).reshape(len(prompts), n)\n"
                "    best = rewards.argmax(dim=1)  # (P,) the first maximum on a tie\n"
                "    return [replies[i] for replies, i in zip(samples, best.tolist())]\n",
                "    rewards = [float(x) for x in reward_fn(flat_prompts, flat_replies)]\n"
                "    return [replies[max(range(n), key=lambda j: rewards[p * n + j])] for p, replies in enumerate(samples)]\n",
            ),
        ),
    ],
    "04_rlhf": [
        mutant(
            "ex_response_logprobs",
            "not shifted: scores token t with the logits at t",
            ("input_ids[:, 1:].unsqueeze(-1)", "input_ids[:, :-1].unsqueeze(-1)"),
            own=("test_response_logprobs",),
        ),
        mutant(
            "ex_response_logprobs",
            "prompt tokens not masked (attention mask instead of the reply mask)",
            ("response_mask[:, 1:].to(token_logp.dtype)", "attention_mask[:, 1:].to(token_logp.dtype)"),
            own=("test_response_logprobs",),
        ),
        mutant(
            "ex_response_logprobs",
            "reply mask not shifted with the logits",
            ("response_mask[:, 1:].to(token_logp.dtype)", "response_mask[:, :-1].to(token_logp.dtype)"),
            own=("test_response_logprobs",),
        ),
        mutant(
            "ex_response_logprobs",
            "log-softmax in the model's dtype (bfloat16 on the GPU track)",
            ("torch.log_softmax(logits[:, :-1].float(), dim=-1)", "torch.log_softmax(logits[:, :-1], dim=-1)"),
            own=("test_response_logprobs",),
        ),
        mutant(
            "ex_response_logprobs",
            "log-softmax in the model's dtype, cast to float32 afterwards",
            ("torch.log_softmax(logits[:, :-1].float(), dim=-1)", "torch.log_softmax(logits[:, :-1], dim=-1).float()"),
            own=("test_response_logprobs",),
        ),
        variant(
            "ex_response_logprobs",
            "log-softmax written as logits.float() - logsumexp",
            (
                "    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)",
                "    logits = logits[:, :-1].float()\n    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)",
            ),
        ),
        mutant(
            "ex_kl_estimate",
            "k3 with r = pi / pi_ref",
            ("log_r = -log_ratio", "log_r = log_ratio"),
            own=("test_kl_estimate",),
        ),
        mutant(
            "ex_kl_estimate",
            "k2 without the half",
            ("kl = 0.5 * log_ratio ** 2", "kl = log_ratio ** 2"),
            own=("test_kl_estimate",),
        ),
        mutant(
            "ex_kl_estimate",
            "k1 with the sign flipped",
            ("kl = log_ratio\n", "kl = -log_ratio\n"),
            own=("test_kl_estimate",),
        ),
        mutant(
            "ex_shaped_rewards",
            "KL penalty on every token, padding and prompt included",
            ("-beta * (logp - ref_logp) * mask", "-beta * (logp - ref_logp)"),
            own=("test_shaped_rewards",),
        ),
        mutant(
            "ex_shaped_rewards",
            "score added at the first reply token",
            (
                "torch.where(mask > 0, positions, -1).max(dim=1).values",
                "torch.where(mask > 0, positions, T).min(dim=1).values",
            ),
            own=("test_shaped_rewards",),
        ),
        mutant(
            "ex_shaped_rewards",
            "score added in the last column, not at the last reply token",
            ("rewards[rows, last] +=", "rewards[rows, -1] +="),
            own=("test_shaped_rewards",),
        ),
        mutant(
            "ex_gae",
            "does not stop at the reply's end (padding values leak in)",
            ("values = values * mask  #", "values = values  #"),
            own=("test_gae",),
        ),
        mutant(
            "ex_gae",
            "lambda and gamma swapped in the TD error",
            ("rewards[:, t] + gamma * next_value", "rewards[:, t] + lam * next_value"),
            own=("test_gae",),
        ),
        mutant(
            "ex_gae",
            "returns without the values",
            ("return advantages, (advantages + values) * mask", "return advantages, advantages"),
            own=("test_gae",),
        ),
        mutant(
            "ex_ppo_losses",
            "min instead of max of the losses (optimistic clipping)",
            ("torch.maximum(unclipped, clipped)", "torch.minimum(unclipped, clipped)"),
            own=("test_ppo_losses",),
        ),
        mutant(
            "ex_ppo_losses",
            "unmasked mean of the policy loss",
            (
                "masked_mean(torch.maximum(unclipped, clipped), mask)",
                "torch.maximum(unclipped, clipped).mean()",
            ),
            own=("test_ppo_losses",),
        ),
        mutant(
            "ex_ppo_losses",
            "advantages not whitened",
            ("advantages = whiten(advantages, mask)", "advantages = advantages"),
            own=("test_ppo_losses",),
        ),
        mutant(
            "ex_ppo_losses",
            "clipped policy branch from ratio.detach() (same loss, half the in-range gradient)",
            ("torch.clamp(ratio, 1 - clip_range", "torch.clamp(ratio.detach(), 1 - clip_range"),
            own=("test_ppo_losses",),
        ),
        mutant(
            "ex_ppo_losses",
            "clipped value branch from values.detach() (same loss, half the in-range gradient)",
            ("torch.clamp(values - old_values", "torch.clamp(values.detach() - old_values"),
            own=("test_ppo_losses",),
        ),
        variant(
            "ex_ppo_losses",
            "the min of the two objectives, negated",
            (
                "policy_loss = masked_mean(torch.maximum(unclipped, clipped), mask)",
                "objective = torch.minimum(advantages * ratio, advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range))\n"
                "    policy_loss = -masked_mean(objective, mask)",
            ),
        ),
        mutant(
            "ex_dpo_loss",
            "reference terms with the sign flipped",
            (
                "chosen_logratios = policy_chosen_logps - ref_chosen_logps",
                "chosen_logratios = policy_chosen_logps + ref_chosen_logps",
            ),
            own=("test_dpo_loss",),
        ),
        mutant(
            "ex_dpo_loss",
            "beta missing from the implicit rewards",
            (
                "return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()",
                "return losses, chosen_logratios.detach(), rejected_logratios.detach()",
            ),
            own=("test_dpo_loss",),
        ),
        mutant(
            "ex_dpo_loss",
            "leans on TRL (imports it inside the loss)",
            ("    ### BEGIN SOLUTION\n", "    ### BEGIN SOLUTION\n    import trl  # noqa: F401\n"),
            own=("test_dpo_loss",),
        ),
        mutant(
            "ex_dpo_loss",
            "rejected log-ratio detached (same values, no gradient to the rejected reply)",
            (
                "rejected_logratios = policy_rejected_logps - ref_rejected_logps",
                "rejected_logratios = (policy_rejected_logps - ref_rejected_logps).detach()",
            ),
            own=("test_dpo_loss",),
        ),
        mutant(
            "ex_dpo_loss",
            "-log(sigmoid(x)): an infinite loss and NaN gradients below x = -88.7",
            ("-torch.nn.functional.logsigmoid(beta * h)", "-torch.log(torch.sigmoid(beta * h))"),
            own=("test_dpo_loss",),
        ),
        variant(
            "ex_dpo_loss",
            "-logsigmoid(x) written as softplus(-x)",
            ("-torch.nn.functional.logsigmoid(beta * h)", "torch.nn.functional.softplus(-beta * h)"),
        ),
    ],
    "05_lora": [
        mutant(
            "ex_lora_param_count",
            "B counted as (r, d_in) too (right only for square weights)",
            ("return r * d_in + d_out * r", "return 2 * r * d_in"),
        ),
        mutant(
            "ex_lora_param_count",
            "no guard: r = 0 counts 0 parameters",
            ('        if type(value) is not int or value < 1:\n            raise ValueError(f"{name} should be a positive int, got {value!r}")\n    return r',
             '        pass\n    return r'),
        ),
        mutant(
            "ex_lora_param_count",
            "the share kept, not the share saved",
            ("return 1.0 - lora_param_count(d_out, d_in, r) / (d_out * d_in)", "return lora_param_count(d_out, d_in, r) / (d_out * d_in)"),
        ),
        variant("ex_lora_param_count", "r (d_in + d_out)", ("return r * d_in + d_out * r", "return r * (d_in + d_out)")),
        mutant(
            "ex_transformer_param_counts",
            "feed-forward without biases",
            ('"feed_forward": L * (d * d_ff + d_ff + d_ff * d + d),', '"feed_forward": L * (d * d_ff + d_ff * d),'),
        ),
        mutant(
            "ex_transformer_param_counts",
            "layer norms with a shift as well as a gain",
            ('"layer_norms": (2 * L + 1) * d,', '"layer_norms": 2 * (2 * L + 1) * d,'),
        ),
        mutant(
            "ex_transformer_param_counts",
            "the tied head counted",
            ('"lm_head": 0 if tied else vocab * d,', '"lm_head": vocab * d,'),
        ),
        mutant(
            "ex_transformer_param_counts",
            "a given d_ff ignored (always 4 d)",
            ("d_ff = 4 * d_model if d_ff is None else d_ff", "d_ff = 4 * d_model"),
        ),
        mutant(
            "ex_lora_linear",
            "a second unmerge subtracts the update again",
            (
                "        if self.merged:\n            self.base.weight -= self.delta_weight()\n            self.merged = False",
                "        self.base.weight -= self.delta_weight()\n        self.merged = False",
            ),
        ),
        mutant(
            "ex_lora_linear",
            "a second merge adds the update again",
            (
                "        if not self.merged:\n            self.base.weight += self.delta_weight()\n            self.merged = True",
                "        self.base.weight += self.delta_weight()\n        self.merged = True",
            ),
        ),
        mutant(
            "ex_lora_linear",
            "B random too (the update is not zero at the start)",
            ("nn.init.zeros_(self.lora_B.weight)", "nn.init.kaiming_uniform_(self.lora_B.weight, a=math.sqrt(5))"),
        ),
        mutant("ex_lora_linear", "scaling = alpha, not alpha / r", ("self.scaling = alpha / r", "self.scaling = alpha")),
        mutant(
            "ex_lora_linear",
            "the update not scaled in forward",
            ("return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling",
             "return self.base(x) + self.lora_B(self.lora_A(self.dropout(x)))"),
        ),
        mutant(
            "ex_lora_linear",
            "the base left trainable",
            ("        for p in base.parameters():\n            p.requires_grad_(False)\n        factory", "        factory"),
        ),
        mutant(
            "ex_lora_linear",
            "A and B made in float32 on the CPU",
            ('factory = {"device": base.weight.device, "dtype": base.weight.dtype}', "factory = {}"),
        ),
        mutant(
            "ex_lora_linear",
            "A and B made on the CPU (dtype given, device not)",
            ('factory = {"device": base.weight.device, "dtype": base.weight.dtype}', 'factory = {"dtype": base.weight.dtype}'),
        ),
        mutant(
            "ex_lora_linear",
            "dropout on the update, not on x",
            ("self.lora_B(self.lora_A(self.dropout(x)))", "self.dropout(self.lora_B(self.lora_A(x)))"),
        ),
        mutant(
            "ex_lora_linear",
            "after a merge, forward adds the update a second time",
            ("        if self.merged:  # the update already lives in base.weight\n            return self.base(x)\n", ""),
        ),
        mutant(
            "ex_add_lora",
            "'proj' matches q_proj",
            (
                'matches = lambda name, t: name == t or name.endswith("." + t)',
                "matches = lambda name, t: t in name",
            ),
        ),
        mutant(
            "ex_add_lora",
            "the rest of the model left trainable",
            ("    for p in model.parameters():\n        p.requires_grad_(False)\n    for name in targets:", "    for name in targets:"),
        ),
        mutant(
            "ex_add_lora",
            "a target that matches nothing passes silently",
            ("        if not any(matches(name, t) for name in names):\n            raise ValueError(",
             "        if False:\n            raise ValueError("),
        ),
        mutant(
            "ex_add_lora",
            "types checked only while replacing (a bad target leaves the model half changed)",
            ("        if not isinstance(module, nn.Linear):\n            raise TypeError(", "        if False:\n            raise TypeError("),
        ),
        mutant(
            "ex_low_rank_approx",
            "keeps r + 1 singular values",
            ("W_r = (U[:, :r] * S[:r]) @ Vh[:r]", "W_r = (U[:, :r + 1] * S[:r + 1]) @ Vh[:r + 1]"),
        ),
        mutant(
            "ex_low_rank_approx",
            "error from the kept singular values",
            ("error = float(S[r:].square().sum().sqrt())", "error = float(S[:r].square().sum().sqrt())"),
        ),
        mutant(
            "ex_low_rank_approx",
            "error squared (no square root)",
            ("error = float(S[r:].square().sum().sqrt())", "error = float(S[r:].square().sum())"),
        ),
        mutant("ex_low_rank_approx", "W_r returned in float64", ("return W_r.to(W.dtype), error", "return W_r, error")),
        variant(
            "ex_low_rank_approx",
            "U diag(S) V^T, error as the norm of the residual",
            ("W_r = (U[:, :r] * S[:r]) @ Vh[:r]", "W_r = U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]"),
            ("error = float(S[r:].square().sum().sqrt())", "error = float(torch.linalg.norm(W.double() - W_r))"),
        ),
    ],
    "06_qlora": [
        mutant("ex_absmax", "scale from the mean |x|, not the max", ("scale = qmax / x.abs().max()", "scale = qmax / x.abs().mean()")),
        mutant(
            "ex_absmax",
            "truncated toward zero, not rounded",
            ("q = torch.round(x * scale).clamp(-qmax, qmax).to(torch.int8)", "q = (x * scale).clamp(-qmax, qmax).to(torch.int8)"),
        ),
        mutant("ex_absmax", "dequantized by multiplying with the scale", ("return q.float() / scale", "return q.float() * scale")),
        mutant(
            "ex_zeropoint",
            "zero point not rounded",
            ("zero_point = torch.round(qmin - scale * x.min())", "zero_point = qmin - scale * x.min()"),
        ),
        mutant("ex_zeropoint", "dequantize adds the zero point", ("(q.float() - zero_point) / scale", "(q.float() + zero_point) / scale")),
        mutant("ex_zeropoint", "2^bits steps, not 2^bits - 1", ("scale = (qmax - qmin) /", "scale = (qmax - qmin + 1) /")),
        mutant(
            "ex_blockwise",
            "one absmax for the whole tensor",
            ("absmax = blocks.abs().amax(dim=1)  # (N,)", "absmax = blocks.abs().amax().expand(n_blocks)  # (N,)"),
        ),
        mutant("ex_blockwise", "an extra block when n is a multiple of B", ("n_blocks = -(-n // blocksize)", "n_blocks = n // blocksize + 1")),
        mutant("ex_blockwise", "dequantize divides by the absmax", ("(blocks * (absmax / 127.0)[:, None])", "(blocks * (127.0 / absmax)[:, None])")),
        mutant(
            "ex_double_quant",
            "the mean not subtracted",
            ("scale_blocks(absmax.float().reshape(-1) - offset, blocksize)", "scale_blocks(absmax.float().reshape(-1), blocksize)"),
        ),
        mutant(
            "ex_double_quant",
            "dequantized without the offset",
            ("DYNAMIC_CODE[q.long()] * absmax2.repeat_interleave(blocksize)[:n] + offset",
             "DYNAMIC_CODE[q.long()] * absmax2.repeat_interleave(blocksize)[:n]"),
        ),
        mutant(
            "ex_double_quant",
            "bits per parameter without the second-level constants",
            ("return 8 / blocksize + 32 / (blocksize * blocksize2)", "return 8 / blocksize"),
        ),
        mutant("ex_memory", "NF4 without its constants", ('"nf4": 4 + bits_per_parameter(64, double_quant=False),', '"nf4": 4.0,')),
        mutant("ex_memory", "bits, not bytes", ("return float(n_params * bits[dtype] / 8)", "return float(n_params * bits[dtype])")),
        mutant(
            "ex_int8",
            "outlier columns quantized too (no float path)",
            ("outlier = (x.abs() >= threshold).any(dim=0)", "outlier = torch.zeros(x.shape[1], dtype=torch.bool, device=x.device)"),
        ),
        mutant(
            "ex_int8",
            "one scale for all tokens",
            ("scale_x = x_int.abs().amax(dim=1).clamp(min=1e-12)", "scale_x = x_int.abs().amax().clamp(min=1e-12).expand(x_int.shape[0])"),
        ),
        mutant(
            "ex_int8",
            "> where the spec says >=",
            ("outlier = (x.abs() >= threshold).any(dim=0)", "outlier = (x.abs() > threshold).any(dim=0)"),
        ),
        mutant(
            "ex_nf4_codebook",
            "returns the reference library's table",
            (
                "    return levels / levels.max()  # normalised in float32, as bitsandbytes' table was",
                '    return bnbF.get_4bit_type("nf4", device="cpu")',
            ),
        ),
        mutant(
            "ex_nf4_codebook",
            "imports the reference library's table inside the function",
            (
                "    return levels / levels.max()  # normalised in float32, as bitsandbytes' table was",
                '    from bitsandbytes.functional import get_4bit_type\n\n    return get_4bit_type("nf4", device="cpu")',
            ),
        ),
        variant(
            "ex_nf4_codebook",
            "the quantile function imported from torch inside the function",
            ("    delta = 0.9677083", "    from torch.special import ndtri\n\n    delta = 0.9677083"),
            ("torch.special.ndtri(torch.linspace(delta, 0.5, 9)", "ndtri(torch.linspace(delta, 0.5, 9)"),
            ("-torch.special.ndtri(torch.linspace(delta, 0.5, 8)", "-ndtri(torch.linspace(delta, 0.5, 8)"),
        ),
        mutant(
            "ex_nf4",
            "calls the reference library's quantize_4bit",
            (
                "    scaled, absmax = scale_blocks(x.reshape(-1).float(), blocksize)  # (n,), (N,)",
                '    packed, state = bnbF.quantize_4bit(x, blocksize=blocksize, quant_type="nf4")\n    return packed, state.absmax',
            ),
            own=("test_nf4_quantize",),
        ),
        mutant(
            "ex_nf4",
            "the same, through a name imported before the tests run",
            (
                "def scale_blocks(flat, blocksize):",
                "from bitsandbytes.functional import quantize_4bit\n\n\ndef scale_blocks(flat, blocksize):",
            ),
            (
                "    scaled, absmax = scale_blocks(x.reshape(-1).float(), blocksize)  # (n,), (N,)",
                '    packed, state = quantize_4bit(x, blocksize=blocksize, quant_type="nf4")\n    return packed, state.absmax',
            ),
            own=("test_nf4_quantize",),
        ),
        mutant(
            "ex_nf4",
            "a value halfway between two levels takes the upper one",
            (
                "return torch.bucketize(scaled, midpoints)",
                "return torch.bucketize(scaled, midpoints, right=True)",
            ),
            own=("test_nearest_level",),
        ),
    ],
    "07_rlvr": [
        mutant(
            "ex_verifiable_reward",
            "reads the last run of letters, as the lenient oracle does",
            ("return 1.0 if body == task.answer(word) else 0.0",
             "return 1.0 if tinyworld.reply_core(reply) == task.answer(word) else 0.0"),
        ),
        mutant(
            "ex_verifiable_reward",
            "compares without case",
            ("return 1.0 if body == task.answer(word) else 0.0",
             "return 1.0 if body.lower() == task.answer(word).lower() else 0.0"),
        ),
        mutant(
            "ex_verifiable_reward",
            "accepts the answer anywhere in the reply",
            ("return 1.0 if body == task.answer(word) else 0.0", "return 1.0 if task.answer(word) in body else 0.0"),
        ),
        mutant(
            "ex_verifiable_reward",
            "strips every filler it finds (no break)",
            ("            body = body[len(filler):]\n            break\n", "            body = body[len(filler):]\n"),
        ),
        mutant(
            "ex_verifiable_reward",
            "no filler allowed",
            ("fillers = sorted(tinyworld.FILLERS[1] + tinyworld.FILLERS[2], key=len, reverse=True)", "fillers = []"),
        ),
        mutant(
            "ex_verifiable_reward",
            "surrounding whitespace not stripped",
            ("body = reply.strip()", "body = reply"),
        ),
        variant(
            "ex_verifiable_reward",
            "one regular expression: an optional filler, then the answer, nothing else",
            (
                "    body = reply.strip()\n",
                "    import re\n    options = '|'.join(re.escape(f) for f in tinyworld.FILLERS[1] + tinyworld.FILLERS[2])\n"
                "    return 1.0 if re.fullmatch(f'(?:{options})?{re.escape(task.answer(word))}', reply.strip()) else 0.0\n"
                "    body = reply.strip()\n",
            ),
        ),
        mutant(
            "ex_group_advantages",
            "std over the whole batch for 'group'",
            ("advantages / (groups.std(dim=1, keepdim=True) + 1e-4)", "advantages / (rewards.std() + 1e-4)"),
        ),
        mutant(
            "ex_group_advantages",
            "population std (divides by G, not G - 1)",
            ("groups.std(dim=1, keepdim=True)", "groups.std(dim=1, keepdim=True, correction=0)"),
        ),
        mutant(
            "ex_group_advantages",
            "groups read column-wise (view(G, -1))",
            ("groups = rewards.view(-1, group_size)", "groups = rewards.view(group_size, -1)"),
        ),
        mutant(
            "ex_group_advantages",
            "epsilon 1e-8 instead of TRL's 1e-4",
            ("advantages / (groups.std(dim=1, keepdim=True) + 1e-4)", "advantages / (groups.std(dim=1, keepdim=True) + 1e-8)"),
        ),
        mutant(
            "ex_group_advantages",
            "'none' divides by the group std too",
            ("    if scale == \"group\":\n", "    if scale in (\"group\", \"none\"):\n"),
        ),
        variant(
            "ex_group_advantages",
            "std as the square root of the unbiased variance, mean as a sum over G",
            (
                "advantages = groups - groups.mean(dim=1, keepdim=True)",
                "advantages = groups - groups.sum(dim=1, keepdim=True) / group_size",
            ),
            ("groups.std(dim=1, keepdim=True)", "groups.var(dim=1, keepdim=True).sqrt()"),
        ),
        mutant(
            "ex_dynamic_sampling_mask",
            "drops only the all-wrong groups",
            ("informative = (groups != groups[:, :1]).any(dim=1)", "informative = groups.sum(dim=1) > 0"),
        ),
        mutant(
            "ex_dynamic_sampling_mask",
            "one flag per group, not per row",
            ("return informative.repeat_interleave(group_size)", "return informative"),
        ),
        mutant(
            "ex_dynamic_sampling_mask",
            "filter reads groups column-wise (view(G, -1))",
            ("groups = rewards.view(-1, group_size)", "groups = rewards.view(group_size, -1)"),
        ),
        mutant(
            "ex_dynamic_sampling_mask",
            "keeps the flat groups instead",
            ("informative = (groups != groups[:, :1]).any(dim=1)", "informative = (groups == groups[:, :1]).all(dim=1)"),
        ),
        variant(
            "ex_dynamic_sampling_mask",
            "a group is informative when its std is above 0",
            ("informative = (groups != groups[:, :1]).any(dim=1)", "informative = groups.std(dim=1) > 0"),
        ),
        mutant(
            "ex_grpo_loss",
            "sequence mean and token mean mixed up",
            ("    if loss_type == \"grpo\":  # mean", "    if loss_type in (\"bnpo\", \"dapo\"):  # mean"),
        ),
        mutant(
            "ex_grpo_loss",
            "epsilon_high ignored (symmetric clip)",
            ("1 + epsilon_high)", "1 + epsilon_low)"),
        ),
        mutant(
            "ex_grpo_loss",
            "detached ratio in the clipped branch",
            ("torch.clamp(ratio, 1 - epsilon_low", "torch.clamp(ratio.detach(), 1 - epsilon_low"),
        ),
        mutant(
            "ex_grpo_loss",
            "token mean over every position, padding included",
            ("return (per_token * mask).sum() / mask.sum()  #", "return (per_token * mask).sum() / mask.numel()  #"),
        ),
        mutant(
            "ex_grpo_loss",
            "k3 with the log-ratio upside down",
            ("log_r = ref_logp - logp", "log_r = logp - ref_logp"),
        ),
        mutant(
            "ex_grpo_loss",
            "the larger objective (max instead of min)",
            ("per_token = -torch.min(ratio * A, clipped * A)", "per_token = -torch.max(ratio * A, clipped * A)"),
        ),
        mutant(
            "ex_grpo_loss",
            "dr_grpo divides by the number of reply tokens",
            ("(mask.shape[0] * max_completion_length)", "mask.sum()"),
        ),
        variant(
            "ex_grpo_loss",
            "torch.minimum, and 'grpo' as per-token weights 1 / |o_i| summed",
            ("-torch.min(ratio * A, clipped * A)", "-torch.minimum(ratio * A, clipped * A)"),
            ("return ((per_token * mask).sum(1) / mask.sum(1)).mean()",
             "return (per_token * mask / mask.sum(1, keepdim=True)).sum() / mask.shape[0]"),
        ),
        mutant(
            "ex_pass_at_k",
            "1 - (1 - c/n)^k (draws with replacement)",
            (
                "    miss = 1.0\n    for i in range(n - c + 1, n + 1):\n",
                "    return 1.0 - (1.0 - c / n) ** k\n    miss = 1.0\n    for i in range(n - c + 1, n + 1):\n",
            ),
        ),
        mutant(
            "ex_pass_at_k",
            "one factor too many in the product",
            ("range(n - c + 1, n + 1)", "range(n - c, n + 1)"),
        ),
        mutant(
            "ex_pass_at_k",
            "no check of k > n",
            ("if not 1 <= k <= n:", "if not 1 <= k:"),
        ),
        mutant(
            "ex_pass_at_k",
            "c / n whatever k",
            ("    return 1.0 - miss\n", "    return c / n\n"),
        ),
        variant(
            "ex_pass_at_k",
            "exact binomials with Python integers",
            ("    return 1.0 - miss\n", "    return 1.0 - math.comb(n - c, k) / math.comb(n, k)\n"),
        ),
    ],
    "08_peft_methods": [
        mutant(
            "ex_prompt_tuning",
            "virtual tokens appended after the input",
            ("torch.cat([self.prompt.unsqueeze(0).expand(B, -1, -1), embeds], dim=1)",
             "torch.cat([embeds, self.prompt.unsqueeze(0).expand(B, -1, -1)], dim=1)"),
            ("torch.cat([attention_mask.new_ones(B, n), attention_mask], dim=1)",
             "torch.cat([attention_mask, attention_mask.new_ones(B, n)], dim=1)"),
            ("return logits[:, n:]", "return logits[:, :T]"),
        ),
        mutant(
            "ex_prompt_tuning",
            "attention mask not extended for the virtual tokens",
            ("mask = torch.cat([attention_mask.new_ones(B, n), attention_mask], dim=1)  # (B, n + T)",
             "mask = attention_mask"),
        ),
        mutant(
            "ex_prompt_tuning",
            "virtual tokens masked out (zeros in the mask)",
            ("attention_mask.new_ones(B, n)", "attention_mask.new_zeros(B, n)"),
        ),
        mutant(
            "ex_prompt_tuning",
            "the mask's ones made on the CPU",
            ("attention_mask.new_ones(B, n)", "torch.ones(B, n, dtype=attention_mask.dtype)"),
        ),
        mutant(
            "ex_prompt_tuning",
            "random init instead of vocabulary embeddings",
            ("nn.Parameter(embeddings[token_ids].detach().clone())",
             "nn.Parameter(torch.randn(num_virtual_tokens, embeddings.shape[1]))"),
        ),
        variant(
            "ex_prompt_tuning",
            "the mask's ones from torch.ones on the input's device",
            ("attention_mask.new_ones(B, n)", "torch.ones(B, n, dtype=attention_mask.dtype, device=input_ids.device)"),
        ),
        mutant(
            "ex_prefix_tuning",
            "attention mask not extended for the prefix",
            ("mask = torch.cat([attention_mask.new_ones(B, self.n), attention_mask], dim=1)  # (B, n + T)",
             "mask = attention_mask"),
        ),
        mutant(
            "ex_prefix_tuning",
            "positions restarted at 0 after the prefix",
            ("past_key_values=cache, use_cache=True)",
             "past_key_values=cache, use_cache=True,\n                          position_ids=torch.arange(T, device=input_ids.device).expand(B, -1))"),
        ),
        mutant(
            "ex_prefix_tuning",
            "key and value swapped",
            ("return [(kv[layer, 0], kv[layer, 1])", "return [(kv[layer, 1], kv[layer, 0])"),
        ),
        mutant(
            "ex_prefix_tuning",
            "columns read as key/value first, then layers",
            ("kv = flat.view(self.n, self.n_layers, 2, self.n_kv_heads, self.head_dim)\n        kv = kv.permute(1, 2, 3, 0, 4)",
             "kv = flat.view(self.n, 2, self.n_layers, self.n_kv_heads, self.head_dim)\n        kv = kv.permute(2, 1, 3, 0, 4)"),
        ),
        mutant(
            "ex_prefix_tuning",
            "query heads for key/value heads (ignores grouped-query attention)",
            ("cfg.num_hidden_layers, cfg.num_key_value_heads", "cfg.num_hidden_layers, cfg.num_attention_heads"),
        ),
        mutant(
            "ex_prefix_tuning",
            "the MLP's input as wide as the model, not the key/value width",
            ("width = d_kv if encoder_hidden_size", "width = cfg.hidden_size if encoder_hidden_size"),
            ("nn.Sequential(nn.Linear(d_kv, encoder_hidden_size)", "nn.Sequential(nn.Linear(cfg.hidden_size, encoder_hidden_size)"),
        ),
        mutant(
            "ex_prefix_tuning",
            "prefix made in float32 on the CPU (no dtype=, no device=)",
            ("torch.randn(self.n, width, dtype=weight.dtype, device=weight.device)", "torch.randn(self.n, width)"),
            own=("test_prefix_tuning",),
        ),
        mutant(
            "ex_prefix_tuning",
            "the MLP left on the CPU in float32",
            ("nn.Linear(encoder_hidden_size, self.n_layers * 2 * d_kv)).to(weight.device, weight.dtype)",
             "nn.Linear(encoder_hidden_size, self.n_layers * 2 * d_kv))"),
            own=("test_prefix_tuning",),
        ),
        mutant(
            "ex_adapters",
            "up-projection not zero-initialised",
            ("        nn.init.zeros_(self.up.weight)  # identity at init: the model starts as it was\n        nn.init.zeros_(self.up.bias)\n", ""),
        ),
        mutant(
            "ex_adapters",
            "no skip connection inside the adapter",
            ("return h + self.up(F.relu(self.down(h)))", "return self.up(F.relu(self.down(h)))"),
        ),
        mutant(
            "ex_adapters",
            "down-projection zero-initialised too",
            ("        nn.init.zeros_(self.up.bias)\n", "        nn.init.zeros_(self.up.bias)\n        nn.init.zeros_(self.down.weight)\n"),
        ),
        mutant(
            "ex_adapters",
            "adapter before o_proj (on its input)",
            ("attn.o_proj = nn.Sequential(attn.o_proj, Adapter(d, bottleneck).to(weight.device, weight.dtype))",
             "attn.o_proj = nn.Sequential(Adapter(d, bottleneck).to(weight.device, weight.dtype), attn.o_proj)"),
        ),
        mutant(
            "ex_adapters",
            "the model is not frozen",
            ("    for p in model.parameters():\n        p.requires_grad_(False)\n    weight =", "    weight ="),
        ),
        mutant(
            "ex_ia3",
            "down_proj's output scaled, not its input",
            ("mlp.down_proj = IA3Linear(mlp.down_proj, feedforward=True)", "mlp.down_proj = IA3Linear(mlp.down_proj, feedforward=False)"),
        ),
        mutant(
            "ex_ia3",
            "queries scaled instead of keys",
            ("attn.k_proj = IA3Linear(attn.k_proj, feedforward=False)", "attn.q_proj = IA3Linear(attn.q_proj, feedforward=False)"),
        ),
        mutant(
            "ex_ia3",
            "scales start at zero",
            ("torch.ones(size,", "torch.zeros(size,"),
        ),
        mutant(
            "ex_ia3",
            "scales made on the CPU",
            ("torch.ones(size, dtype=base.weight.dtype, device=base.weight.device)", "torch.ones(size)"),
        ),
        mutant(
            "ex_bitfit",
            "biases initialised randomly",
            ("torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)", "0.02 * torch.randn(w.shape[0], dtype=w.dtype, device=w.device)"),
        ),
        mutant(
            "ex_bitfit",
            "the tied output head gets a bias too",
            ("for _, module in model.model.layers.named_modules():", "for _, module in model.named_modules():"),
        ),
        mutant(
            "ex_bitfit",
            "biases made on the CPU",
            ("torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)", "torch.zeros(w.shape[0])"),
        ),
        mutant(
            "ex_bitfit",
            "norms=True leaves out the final norm",
            ("        for _, module in model.named_modules():\n            if type(module)", "        for _, module in model.model.layers.named_modules():\n            if type(module)"),
        ),
        mutant(
            "ex_bitdelta",
            "scale = max |delta|",
            ("scale = flat.float().abs().mean()", "scale = flat.float().abs().max()"),
            own=("test_bitdelta_compress",),
        ),
        mutant(
            "ex_bitdelta",
            "bits packed highest first (NumPy's default order)",
            ("weights = 2 ** torch.arange(8, device=delta.device, dtype=torch.int32)",
             "weights = 2 ** torch.arange(7, -1, -1, device=delta.device, dtype=torch.int32)"),
            own=("test_bitdelta_compress",),
        ),
        mutant(
            "ex_bitdelta",
            "a zero delta gets bit 0 (sign -1)",
            ("positive = (flat >= 0)", "positive = (flat > 0)"),
            own=("test_bitdelta_compress",),
        ),
        mutant(
            "ex_bitdelta",
            "bits unpacked highest first",
            ("shifts = torch.arange(8, device=bits.device, dtype=torch.int32)",
             "shifts = torch.arange(7, -1, -1, device=bits.device, dtype=torch.int32)"),
            own=("test_bitdelta_decompress",),
        ),
        mutant(
            "ex_bitdelta",
            "bit 0 decompressed as 0, not -1",
            ("sign = unpacked.reshape(-1)[:N].to(scale.dtype) * 2 - 1", "sign = unpacked.reshape(-1)[:N].to(scale.dtype)"),
            own=("test_bitdelta_decompress",),
        ),
        mutant(
            "ex_bitdelta",
            "unpacking shifts made on the CPU",
            ("shifts = torch.arange(8, device=bits.device, dtype=torch.int32)", "shifts = torch.arange(8, dtype=torch.int32)"),
            own=("test_bitdelta_decompress",),
        ),
        variant(
            "ex_bitdelta",
            "scale as a sum over N, packing by shifts",
            ("scale = flat.float().abs().mean()", "scale = flat.float().abs().sum() / N"),
            ("bits = (padded.view(-1, 8).to(torch.int32) * weights).sum(dim=1).to(torch.uint8)",
             "bits = (padded.view(-1, 8).to(torch.int32) << torch.arange(8, device=delta.device)).sum(dim=1).to(torch.uint8)"),
        ),
    ],
}


def test_every_mutant_applies_to_the_current_solution():
    """Cheap guard, run first: each mutant's text is in its solution cell once, its own cells are tests of
    its exercise, and names are unique within a lab."""
    for lab, mutants in MUTANTS.items():
        assert len({m.name for m in mutants}) == len(mutants), lab
        nb = notebook(lab)
        for m in mutants:
            cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == m.cell)
            apply(cell.source, m)
            own_cells(nb, m)


# Not a mistake: a comment added to a solution. It must lose no points, and `check` must reject it, or the
# harness could not tell a caught mutant from a harmless edit.
HARMLESS = mutant("ex_sequence_logprob", "a comment added (harmless)", ("    ### BEGIN SOLUTION\n",
                                                                      "    ### BEGIN SOLUTION\n    # harmless\n"))


# A lab's rows run in several kernels when it has more than ROWS_PER_KERNEL (each kernel runs the exercise
# part once, then its rows), so the two xdist workers can share a long lab; rows go to the kernel with the
# least re-run work so far (longest first), and the first kernel also re-runs every graded cell after the
# whole notebook. Every kernel pays its start, the lab's imports and the exercise part again (10-25 s), and
# the suite is CPU-bound on its 2 cores, so a second kernel only pays off once one lab's rows outlast the
# other worker's units: today every lab fits in one (lab 01's, the longest, about 5 minutes).
ROWS_PER_KERNEL = 40


def _kernels(lab: str) -> list[list[Mutant]]:
    rows = MUTANTS[lab] + [HARMLESS] * (lab == "00_orientation")
    kernels: list[list[Mutant]] = [[] for _ in range(-(-len(rows) // ROWS_PER_KERNEL))]
    load = [0] * len(kernels)
    for m in sorted(rows, key=lambda m: -rerun_cost(lab, m)):
        i = load.index(min(load))
        kernels[i].append(m)
        load[i] += rerun_cost(lab, m)
    return kernels


KERNELS = {lab: _kernels(lab) for lab in sorted(MUTANTS)}
KERNEL_OF = {(lab, m.name): i for lab, ks in KERNELS.items() for i, k in enumerate(ks) for m in k}


def _in_kernel(*values, lab: str, kernel: int = 0, name: str = ""):
    """A test parameter set whose id names `lab`'s kernel (`01_prompting-k1-...`): tests/conftest.py runs the
    tests of one kernel on one xdist worker."""
    return pytest.param(*values, id="-".join(filter(None, (lab, f"k{kernel}", name))))


@pytest.fixture(scope="session")  # a worker may run other modules between two kernels of this one
def results():
    """(lab, kernel) -> lost_points of that kernel's rows, each run once, on first use."""
    cache: dict[tuple[str, int], dict[str, set[str]]] = {}

    def get(lab: str, kernel: int = 0) -> dict[str, set[str]]:
        if (lab, kernel) not in cache:
            cache[lab, kernel] = lost_points(lab, KERNELS[lab][kernel], rerun=kernel == 0)
        return cache[lab, kernel]

    return get


@pytest.mark.parametrize("lab", [_in_kernel(lab, lab=lab) for lab in sorted(MUTANTS)])
def test_the_unchanged_solution_passes_every_graded_cell(results, lab):
    assert results(lab)["solution"] == set()


@pytest.mark.parametrize(
    "lab, m",
    [_in_kernel(lab, m, lab=lab, kernel=KERNEL_OF[lab, m.name], name=m.name)
     for lab, ms in sorted(MUTANTS.items()) for m in ms],
)
def test_mutant_loses_points_in_its_own_exercise_only(results, lab, m: Mutant):
    """A wrong implementation loses points in its own exercise only; a correct variant keeps full marks."""
    check(lab, results(lab, KERNEL_OF[lab, m.name]), m)


@pytest.mark.parametrize("lab", [_in_kernel(lab, lab=lab) for lab in sorted(MUTANTS)])
def test_every_graded_cell_passes_again_after_the_whole_notebook(results, lab):
    """A student who runs the whole notebook, experiments included, then re-runs a test cell sees it pass."""
    assert results(lab)["rerun"] == set(), f"re-run after the whole notebook fails: {sorted(results(lab)['rerun'])}"


@pytest.mark.parametrize("kernel", [_in_kernel(KERNEL_OF["00_orientation", HARMLESS.name], lab="00_orientation",
                                                kernel=KERNEL_OF["00_orientation", HARMLESS.name])])
def test_a_harmless_edit_loses_no_points_and_fails_the_check(results, kernel):
    assert results("00_orientation", kernel)[HARMLESS.name] == set()
    with pytest.raises(AssertionError, match="earned full marks"):
        check("00_orientation", results("00_orientation", kernel), HARMLESS)
