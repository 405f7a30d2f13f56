"""The learning rates of lab 08's comparison, picked on validation chats: each method at 3 to 5 rates, seed 0.

    python benchmarks/peft_lr_sweep.py                       # every method of the notebook's METHODS
    python benchmarks/peft_lr_sweep.py --methods IA3 "full fine-tuning"

The setting is the notebook's full mode: its set-up cells and solution cells run as written (tiny-sft, the "swap"
task, 2000 training chats, 100 steps of batch 8), then every method trains once per rate of `GRID` with seed 0
and is scored on 200 validation chats: "swap" chats of the training split whose word none of the 2000
training chats uses (the notebook's test chats are never read here, so the rates it reports results at were
not chosen on them). A method's rate is the one with the highest validation accuracy, ties to the lower
final training loss.

Prints one line per run and the pick per method beside the notebook's rate, then, as its last line,
`LR_SWEEP {json}`: {"picked": {method: lr}, "notebook": {method: lr}, "runs": [{"method", "lr",
"val_accuracy", "final_loss", "seconds"}, ...]}.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

from common import ROOT, commit

NOTEBOOK = ROOT / "solutions" / "08_peft_methods" / "08_peft_methods.ipynb"
N_VALIDATION = 200
GRID = {  # every rate tried for each method of the notebook's METHODS
    "prompt tuning (n=20)": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    "prefix tuning (n=10)": [3e-3, 1e-2, 3e-2, 1e-1],
    "prefix + MLP (n=10, h=256)": [3e-4, 1e-3, 3e-3],
    "adapters (m=16)": [1e-3, 3e-3, 1e-2],
    "IA3": [1e-2, 3e-2, 1e-1],
    "BitFit (zero biases)": [3e-3, 1e-2, 3e-2, 1e-1],
    "BitFit (biases + norms)": [3e-3, 1e-2, 3e-2],
    "LoRA r=4 (all linear)": [2e-3, 5e-3, 1e-2],
    "full fine-tuning": [1e-4, 3e-4, 1e-3],
}


def notebook_namespace() -> dict:
    """The notebook's code cells up to the comparison's set-up (its `METHODS` cell), tests left out, in full mode."""
    os.environ["PTLAB_FAST"] = "0"
    ns: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] != "code" or cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            continue
        source = "\n".join(line for line in "".join(cell["source"]).splitlines() if "%pip" not in line)
        exec(compile(source, f"<{NOTEBOOK.name}>", "exec"), ns)
        if "METHODS = {" in source:
            return ns
    raise RuntimeError(f"no cell defines METHODS in {NOTEBOOK}")


def validation_rows(ns: dict):
    """N_VALIDATION chats of the task from the training split, none with a word of the training chats."""
    train_words = set(ns["train_rows"]["word"])
    pool = ns["tinyworld"].chat_dataset("train", n=len(ns["train_rows"]) + 4 * N_VALIDATION, tasks=[ns["TASK"]])
    keep = [i for i in range(len(ns["train_rows"]), len(pool)) if pool[i]["word"] not in train_words]
    if len(keep) < N_VALIDATION:
        raise RuntimeError(f"only {len(keep)} validation chats with unseen words; expected {N_VALIDATION}")
    return pool.select(keep[:N_VALIDATION])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=list(GRID), default=list(GRID))
    args = parser.parse_args()
    ns = notebook_namespace()
    lab, model, tokenizer = ns["lab"], ns["model"], ns["tokenizer"]
    val_rows = validation_rows(ns)
    print(f"commit {commit()}; {ns['TASK']}: {len(ns['train_rows'])} training chats, {len(val_rows)} validation chats, "
          f"{ns['STEPS']} steps of batch {ns['BATCH']}, seed 0")
    runs = []
    for name in args.methods:
        build = ns["METHODS"][name][0]
        for lr in GRID[name]:
            start = time.perf_counter()
            ns["torch"].manual_seed(0)  # as the notebook's comparison: seed 0 also draws the initial prompt, prefix, adapters
            result = lab.run_method(name, build(copy.deepcopy(model)), tokenizer, ns["train_rows"], val_rows,
                                    steps=ns["STEPS"], lr=lr, batch_size=ns["BATCH"], seed=0, progress=False)
            runs.append({"method": name, "lr": lr, "val_accuracy": result.accuracy, "final_loss": result.losses[-1],
                         "seconds": time.perf_counter() - start})
            print(f"{name:28} lr {lr:<7g} validation accuracy {result.accuracy:6.1%}  final loss {result.losses[-1]:.3f}",
                  flush=True)
    picked, notebook = {}, {}
    for name in args.methods:
        best = max((r for r in runs if r["method"] == name), key=lambda r: (r["val_accuracy"], -r["final_loss"]))
        picked[name], notebook[name] = best["lr"], ns["METHODS"][name][1]
        print(f"{name:28} picked {best['lr']:<7g} ({best['val_accuracy']:.1%}); notebook {notebook[name]:g}")
    print("LR_SWEEP " + json.dumps({"picked": picked, "notebook": notebook, "runs": runs}))


if __name__ == "__main__":
    main()
