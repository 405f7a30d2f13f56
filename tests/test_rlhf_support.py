"""Unit tests of ptlab.rlhf, the read-only PPO/DPO infrastructure of lab 04 (tiny models, CPU, seconds).

The loops take the exercise functions as arguments; these tests pass the solution notebook's own cells
(read from `solutions/04_rlhf/04_rlhf.ipynb`, so no second copy of them exists), or deliberately broken
ones to show that the loops follow what they are given.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from ptlab import data, models, rlhf, tinyworld

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "04_rlhf" / "04_rlhf.ipynb"


def solution_namespace() -> dict:
    """The helpers cell and every solution cell of lab 04, executed in one namespace."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    ns: dict = {"torch": torch, "math": math}
    for cell in cells:
        source = "".join(cell["source"])
        is_solution = cell.get("metadata", {}).get("nbgrader", {}).get("solution", False)
        if cell["cell_type"] == "code" and (is_solution or source.startswith("def check_per_token")):
            exec(compile(source, f"<{NOTEBOOK.name}>", "exec"), ns)
    return ns


@pytest.fixture(scope="module")
def ns():
    return solution_namespace()


@pytest.fixture(scope="module")
def ppo_fns(ns):
    return rlhf.PPOFunctions(ns["response_logprobs"], ns["kl_estimate"], ns["shaped_rewards"], ns["gae"],
                             ns["ppo_losses"])


@pytest.fixture(scope="module")
def rm():
    return models.load("tiny-rm")


@pytest.fixture(scope="module")
def prompts():
    return list(tinyworld.chat_dataset("test", n=8, tasks=tinyworld.SFT_TASKS)["prompt_messages"])


def test_pad_puts_tokens_on_the_requested_side():
    ids, mask = rlhf.pad([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = rlhf.pad([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match="side"):
        rlhf.pad([[1]], 0, "middle")


@pytest.mark.parametrize("side", ["left", "right"])
def test_pair_batch_marks_exactly_the_reply_and_its_end_token(sft, side):
    _, tok = sft
    prompts = [[{"role": "user", "content": 'Write "kes" in capital letters.'}], [{"role": "user", "content": "Hi"}]]
    batch = rlhf.pair_batch(tok, prompts, ["KES", "Sure! hello"], side=side)
    for b, reply in enumerate(["KES", "Sure! hello"]):
        ids = batch["input_ids"][b][batch["response_mask"][b].bool()].tolist()
        assert ids == tok.encode(reply, add_special_tokens=False) + [tok.eos_token_id]
        assert bool((batch["attention_mask"][b] >= batch["response_mask"][b]).all())


def test_rollout_reply_stops_at_the_first_end_token(sft, prompts):
    model, tok = sft
    torch.manual_seed(0)
    out = rlhf.rollout(model, tok, prompts, max_new_tokens=40)
    for b in range(len(prompts)):
        reply = out.input_ids[b][out.response_mask[b].bool()].tolist()
        assert len(reply) >= 1
        assert tok.eos_token_id not in reply[:-1]  # nothing after the first end-of-turn token
        cols = out.response_mask[b].nonzero().flatten()
        assert cols.tolist() == list(range(int(cols[0]), int(cols[-1]) + 1))  # one contiguous run
        assert tok.decode(reply, skip_special_tokens=True) == out.replies[b]
    assert bool((out.attention_mask >= out.response_mask).all())


def test_reward_scorer_batched_equals_one_by_one(rm, prompts):
    scorer = rlhf.reward_scorer(*rm, batch_size=3)
    replies = ["A", "Sure! KES", "Great question! I went through it letter by letter, and the answer is: x"] * 3
    batched = scorer(prompts[:8], replies[:8])
    single = torch.cat([scorer(prompts[i:i + 1], replies[i:i + 1]) for i in range(8)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)  # padding changes float rounding only


def test_value_model_reads_the_reward_model_at_the_last_token_and_leaves_it_frozen(rm, prompts):
    reward_model, tok = rm
    before = {k: v.clone() for k, v in reward_model.state_dict().items()}
    value_model = rlhf.ValueModel(reward_model)
    batch = rlhf.pair_batch(tok, prompts[:3], ["KES", "b", "Sure! x"], side="right")
    values = value_model(batch["input_ids"], batch["attention_mask"])  # (B, T)
    last = batch["attention_mask"].sum(1) - 1
    with torch.no_grad():
        scores = reward_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    torch.testing.assert_close(values[torch.arange(3), last], scores, atol=1e-4, rtol=1e-4)
    values.sum().backward()
    torch.optim.SGD(value_model.parameters(), lr=1.0).step()
    for k, v in reward_model.state_dict().items():
        assert torch.equal(v, before[k]), f"training the value model changed the reward model's {k}"


def test_train_ppo_follows_the_functions_it_is_given(ppo_fns, sft, rm, prompts):
    """Zero advantages from a broken `gae` give a zero policy gradient: the policy must not move."""
    model, tok = sft
    broken = copy.copy(ppo_fns)
    broken.gae = lambda rewards, values, mask, gamma, lam: (torch.zeros_like(rewards), ppo_fns.gae(
        rewards, values, mask, gamma, lam)[1])
    policy = copy.deepcopy(model).requires_grad_(True)
    cfg = rlhf.PPOConfig(steps=1, batch_size=4, minibatch_size=4, ppo_epochs=1, lr=1e-2, max_new_tokens=16)
    history = rlhf.train_ppo(broken, policy, model, rlhf.ValueModel(rm[0]), tok, prompts, rlhf.reward_scorer(*rm),
                             cfg, progress=False)
    for p, q in zip(policy.parameters(), model.parameters()):
        assert torch.equal(p, q)
    assert set(history[0]) >= {"proxy", "oracle", "correct", "filler", "kl", "policy_loss", "value_loss"}
    # the working functions move it
    history = rlhf.train_ppo(ppo_fns, policy, model, rlhf.ValueModel(rm[0]), tok, prompts, rlhf.reward_scorer(*rm),
                             cfg, progress=False)
    assert any(not torch.equal(p, q) for p, q in zip(policy.parameters(), model.parameters()))
    assert all(math.isfinite(v) for v in history[0].values())


def test_train_dpo_learns_fixed_pairs(ns, sft):
    model, tok = sft
    pairs = list(tinyworld.preference_dataset("train", n=8, tasks=tinyworld.SFT_TASKS))
    policy = copy.deepcopy(model).requires_grad_(True)
    cfg = rlhf.DPOConfig(steps=12, batch_size=8, lr=1e-3, beta=0.5)
    history = rlhf.train_dpo(rlhf.DPOFunctions(ns["response_logprobs"], ns["dpo_loss"]), policy, model, tok, pairs, cfg,
                             progress=False)
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the start
    assert history[-1]["loss"] < 0.5 * history[0]["loss"] and history[-1]["reward_accuracy"] == 1.0


def test_best_of_n_kl_closed_form():
    assert rlhf.best_of_n_kl(1) == 0.0
    assert rlhf.best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)


def test_oracle_metrics_count_fillers_and_correct_replies():
    prompt = [{"role": "user", "content": 'Write "kes" in capital letters.'}]
    out = rlhf.oracle_metrics([prompt] * 3, ["KES", "Sure! KES", "KAS"])
    assert out["correct"] == pytest.approx(2 / 3) and out["filler"] == pytest.approx(1 / 3)


def test_library_guards_catch_a_function_that_uses_trl():
    import trl

    def honest(x):
        return torch.sigmoid(x)

    def leaning(x):
        return trl.__version__

    def importing(x):
        import trl as t

        return t

    assert not rlhf.uses_module(honest, "trl") and rlhf.uses_module(leaning, "trl")
    assert rlhf.uses_module(importing, "trl"), "an import inside the body escapes the static check"
    with rlhf.blocked_imports("trl"), pytest.raises(ImportError):
        importing(1)
    importing(1)  # the guard is lifted afterwards


def bpe_model(tmp_path: Path):
    """A random tiny Llama with a byte-level BPE tokenizer trained here (ChatML specials), saved in HF format."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    raw = Tokenizer(tok_models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    text = [r["messages"][0]["content"] + " " + r["answer"] for r in tinyworld.chat_dataset("train", n=300)]
    raw.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<|pad|>", eos_token="<|im_end|>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_colab_track_dpo_and_rollout_run_with_a_bpe_model_on_a_local_preference_file(ns, ppo_fns, rm, tmp_path):
    """The Hub track's code path, offline: a BPE tokenizer without a chat template, UltraFeedback's format."""
    model, tok = models.load(str(bpe_model(tmp_path)))
    rlhf.prepare_chat_tokenizer(tok)  # ChatML, <|im_end|> ends a reply
    assert tok.eos_token == "<|im_end|>"
    pairs = list(data.load_preference_dataset(ROOT / "tests" / "data" / "ultrafeedback_sample.jsonl"))
    policy = copy.deepcopy(model).requires_grad_(True)
    cfg = rlhf.DPOConfig(steps=2, batch_size=2, lr=1e-3, beta=0.1)
    history = rlhf.train_dpo(rlhf.DPOFunctions(ns["response_logprobs"], ns["dpo_loss"]), policy,
                             model.requires_grad_(False), tok, pairs, cfg, progress=False)
    assert len(history) == 2 and math.isfinite(history[-1]["loss"])
    prompts = [p["prompt"] for p in pairs[:2]]
    out = rlhf.evaluate_policy(ppo_fns, policy, model, tok, prompts, rlhf.reward_scorer(*rm), max_new_tokens=8)
    assert math.isfinite(out["kl"]) and 0 <= out["filler"] <= 1
    # PPO: tiny-rm scores the text with its own tokenizer; the value model reads the policy's tokens
    cfg = rlhf.PPOConfig(steps=1, batch_size=2, minibatch_size=2, ppo_epochs=1, max_new_tokens=8)
    history = rlhf.train_ppo(ppo_fns, policy, model, rlhf.ValueModel(model), tok, prompts, rlhf.reward_scorer(*rm), cfg,
                             progress=False)
    assert all(math.isfinite(v) for v in history[0].values())


def test_adaptive_beta_follows_ziegler_et_al_controller():
    # e = clip((KL - target) / target, -0.2, 0.2); beta <- beta * (1 + e / horizon)
    assert rlhf.adaptive_beta(0.1, kl=3.0, kl_target=1.0, horizon=10) == pytest.approx(0.1 * 1.02)  # e clipped at 0.2
    assert rlhf.adaptive_beta(0.1, kl=0.9, kl_target=1.0, horizon=10) == pytest.approx(0.1 * 0.99)
    assert rlhf.adaptive_beta(0.1, kl=1.0, kl_target=1.0, horizon=10) == pytest.approx(0.1)


def test_whiten_scores_gives_zero_mean_unit_spread_and_zeros_for_equal_scores():
    out = rlhf.whiten_scores(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-6) and float(out.std()) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(rlhf.whiten_scores(torch.full((4,), 0.7)), torch.zeros(4))
