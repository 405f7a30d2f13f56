"""Plausible wrong implementations lose points in their own exercise, and in no other.

Each row of MUTANTS names a lab, a solution cell (its grade_id), the wrong code (one or more exact
replacements in that cell's source) and, optionally, the graded cells it must lose points in. By default
an exercise's graded cells are those between its solution cell and the next solution cell of the notebook.
The harness copies the solution notebook once per mutant, swaps the wrong code in, and autogrades all
mutants of a lab as one class (the real pipeline: nbgrader in fast mode, hidden tests, 2 workers), with
the unchanged solution as a control. A mutant passes when it loses points in at least one of its own
graded cells and in none of the others.

To add mutants for another lab, append rows: the table is the only thing to edit. Slow: measured on 2
shared cores (niced, 2026-12-04), lab 00 with 4 mutants 171 s, labs 05 + 06 with 7 mutants 232 s, lab 02
with 9 mutants 332 s (about 12 minutes in all); run it under the heavy lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from autograder import SOLUTIONS
from autograder.grade_class import grade_class

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Mutant:
    lab: str
    cell: str  # grade_id of the solution cell the wrong code goes into
    name: str  # a student id: letters, digits, "_"
    edits: tuple[tuple[str, str], ...]  # (exact text in the solution, what the mistaken student wrote)
    own: tuple[str, ...] = ()  # graded cells it may lose points in; () = all of its exercise's cells
    why: str = ""


def m(lab: str, cell: str, name: str, *edits: tuple[str, str], own: tuple[str, ...] = (), why: str = "") -> Mutant:
    return Mutant(lab, cell, name, tuple(edits), own, why)


MUTANTS = [
    # ---- lab 00
    m("00_orientation", "ex_count_parameters", "llama_no_gqa",
      ("    attention = d * q + q * d + 2 * d * kv", "    attention = 4 * d * d"),
      own=("test_llama_param_count",), why="k_proj/v_proj as wide as q_proj (ignores grouped-query attention)"),
    m("00_orientation", "ex_count_parameters", "llama_always_untied",
      ("    head = 0 if config.tie_word_embeddings else V * d", "    head = V * d"),
      own=("test_llama_param_count",), why="counts the output head even when it is tied"),
    m("00_orientation", "ex_count_parameters", "count_shared_twice",
      ("    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)",
       "    return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)\n"
       "               if p.requires_grad or not trainable_only)"),
      own=("test_count_parameters",), why="a tied matrix counted twice"),
    m("00_orientation", "ex_sequence_logprob", "logprob_ignores_mask",
      ("    return (token_logps * attention_mask[:, 1:].float()).sum(-1)  # padding predicts nothing that counts",
       "    return token_logps.sum(-1)"), why="sums over padding too"),
    # ---- lab 02
    m("02_instruction_tuning", "ex_build_sft_example", "truncate_lt",
      ("if len(input_ids) - reply_start <= max_length:", "if len(input_ids) - reply_start < max_length:"),
      why="a reply of exactly max_length tokens is treated as too long"),
    m("02_instruction_tuning", "ex_collate", "collate_int32",
      ("torch.as_tensor(example[k], dtype=torch.long)", "torch.as_tensor(example[k], dtype=torch.int32)"),
      ("torch.full((B, T), fill[k], dtype=torch.long)", "torch.full((B, T), fill[k], dtype=torch.int32)"),
      why="one dtype slip must cost collate's points only"),
    m("02_instruction_tuning", "ex_sft_loss", "loss_no_shift",
      ("shift_labels = labels[:, 1:].long()", "shift_labels = labels[:, :-1].long()"),
      why="logits at t scored against the label at t"),
    m("02_instruction_tuning", "ex_sft_loss", "loss_ignores_mask",
      ("keep = shift_labels != IGNORE_INDEX  # (B, T-1)", "keep = torch.ones_like(shift_labels, dtype=torch.bool)"),
      ("F.cross_entropy(shift_logits[keep].float(), shift_labels[keep])",
       "F.cross_entropy(shift_logits[keep].float(), shift_labels[keep].clamp(min=0))"),
      why="every position counts, -100 read as token 0"),
    m("02_instruction_tuning", "ex_sft_loss", "loss_mean_of_row_means",
      ("    return F.cross_entropy(shift_logits[keep].float(), shift_labels[keep])  # (N, V), (N,) -> ()",
       "    per_token = F.cross_entropy(shift_logits.float().transpose(1, 2), shift_labels, reduction=\"none\")\n"
       "    rows = keep.any(-1)\n"
       "    return ((per_token * keep).sum(-1)[rows] / keep.sum(-1)[rows]).mean()"),
      why="a mean per row, then over rows"),
    m("02_instruction_tuning", "ex_train_sft", "no_zero_grad",
      ("        optimizer.zero_grad(set_to_none=True)\n", ""), why="gradients accumulate across steps"),
    m("02_instruction_tuning", "ex_train_sft", "no_clipping",
      ("clip_grad_norm_(params, max_grad_norm)", "clip_grad_norm_(params, float(\"inf\"))"),
      why="the norm is measured but never clipped"),
    m("02_instruction_tuning", "ex_train_sft", "no_weight_decay",
      ("torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)", "torch.optim.AdamW(params, lr=lr)"),
      why="weight_decay ignored"),
    m("02_instruction_tuning", "ex_instruction_accuracy", "no_stop_at_end",
      ("do_sample=False, eos_token_id=end_id, pad_token_id=pad_id)", "do_sample=False, pad_token_id=pad_id)"),
      ("            if end_id in row:\n                row = row[: row.index(end_id)]\n", ""),
      why="generation not told to stop at <|end|>, and the text after it kept"),
    # ---- lab 05
    m("05_lora", "ex_lora_linear", "unmerge_unguarded",
      ("        if self.merged:\n            self.base.weight -= self.delta_weight()\n            self.merged = False",
       "        self.base.weight -= self.delta_weight()\n        self.merged = False"),
      why="a second unmerge subtracts the update again"),
    m("05_lora", "ex_add_lora", "add_lora_substring",
      ('matches = lambda name, t: name == t or name.endswith("." + t)', "matches = lambda name, t: t in name"),
      why="'proj' matches q_proj"),
    # ---- lab 06
    m("06_qlora", "ex_int8", "int8_strict_threshold",
      ("outlier = (x.abs() >= threshold).any(dim=0)", "outlier = (x.abs() > threshold).any(dim=0)"),
      why="> where the spec says >="),
    m("06_qlora", "ex_nf4_codebook", "codebook_from_bitsandbytes",
      ("    return levels / levels.max()  # normalised in float32, as bitsandbytes' table was",
       "    return bnbF.get_4bit_type(\"nf4\", device=\"cpu\")"),
      why="returns the reference library's table"),
    m("06_qlora", "ex_nf4", "quantize_with_bitsandbytes",
      ("    scaled, absmax = scale_blocks(x.reshape(-1).float(), blocksize)  # (n,), (N,)",
       "    packed, state = bnbF.quantize_4bit(x, blocksize=blocksize, quant_type=\"nf4\")\n"
       "    return packed, state.absmax"),
      own=("test_nf4_quantize",), why="calls the reference library's quantize_4bit"),
    m("06_qlora", "ex_nf4", "quantize_with_imported_name",
      ("def scale_blocks(flat, blocksize):", "from bitsandbytes.functional import quantize_4bit\n\n\n"
                                             "def scale_blocks(flat, blocksize):"),
      ("    scaled, absmax = scale_blocks(x.reshape(-1).float(), blocksize)  # (n,), (N,)",
       "    packed, state = quantize_4bit(x, blocksize=blocksize, quant_type=\"nf4\")\n"
       "    return packed, state.absmax"),
      own=("test_nf4_quantize",), why="the same, through a name imported before the tests run"),
    m("06_qlora", "ex_nf4", "nearest_ties_up",
      ("return torch.bucketize(scaled, midpoints)", "return torch.bucketize(scaled, midpoints, right=True)"),
      own=("test_nearest_level",), why="a value halfway between two levels takes the upper one"),
]


def _notebook(lab: str):
    return nbformat.read(SOLUTIONS / lab / f"{lab}.ipynb", as_version=4)


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def exercise_cells(nb, solution_id: str) -> tuple[str, ...]:
    """The graded cells between solution cell `solution_id` and the next solution cell."""
    cells, inside = [], False
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            inside = meta.get("grade_id") == solution_id
        elif inside and meta.get("grade"):
            cells.append(meta["grade_id"])
    return tuple(cells)


def apply(mutant: Mutant):
    """The solution notebook with the mutant's wrong code in its solution cell."""
    nb = _notebook(mutant.lab)
    cell = next(c for c in nb.cells if _grade_id(c) == mutant.cell)
    for old, new in mutant.edits:
        # exactly once: a mutant whose text no longer matches the solution must fail, not test the solution
        assert cell.source.count(old) == 1, f"{mutant.name}: {old!r} occurs {cell.source.count(old)} times in {mutant.cell}"
        cell.source = cell.source.replace(old, new)
    return nb


LABS = sorted({mut.lab for mut in MUTANTS})


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """lab -> {student: Result}, grading each lab's mutants (and the solution) once, as one class."""
    cache = {}

    def grade(lab: str):
        if lab not in cache:
            klass = tmp_path_factory.mktemp(f"class_{lab}")
            students = {"solution": _notebook(lab)} | {mut.name: apply(mut) for mut in MUTANTS if mut.lab == lab}
            for name, nb in students.items():
                (klass / name).mkdir()
                nbformat.write(nb, klass / name / f"{lab}.ipynb")
            results = grade_class(Path(klass), lab, tmp_path_factory.mktemp(f"out_{lab}"), workers=2,
                                  cell_timeout=180, timeout=1200)
            cache[lab] = {r.student: r for r in results}
        return cache[lab]

    return grade


def test_every_mutant_applies_to_the_current_solution():
    """Cheap guard, run first: each mutant's text is still in its solution cell, and the names are unique."""
    assert len({mut.name for mut in MUTANTS}) == len(MUTANTS)
    for mut in MUTANTS:
        apply(mut)
        assert set(mut.own) <= set(exercise_cells(_notebook(mut.lab), mut.cell)), f"{mut.name}: own cells not in its exercise"


@pytest.mark.parametrize("lab", LABS)
def test_the_unchanged_solution_gets_full_marks(graded, lab):
    result = graded(lab)["solution"]
    assert result.status == "graded" and result.total == result.max_total, (result.status, result.scores)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mut: f"{mut.lab[:2]}-{mut.name}")
def test_mutant_loses_points_in_its_own_exercise_only(graded, mutant):
    result = graded(mutant.lab)[mutant.name]
    assert result.status == "graded", f"{mutant.name}: {result.status}"
    lost = {cell for cell, score in result.scores.items() if score < result.max_scores[cell]}
    own = set(mutant.own or exercise_cells(_notebook(mutant.lab), mutant.cell))
    assert lost, f"{mutant.name} ({mutant.why}) earned full marks: no test of {sorted(own)} catches it"
    assert lost <= own, f"{mutant.name} ({mutant.why}) also lost points in {sorted(lost - own)}, outside its exercise"
