"""Time lab 06's reference `nf4_quantize` against bitsandbytes' `quantize_4bit(quant_type="nf4")` on a CPU.

    python benchmarks/bench_nf4.py                      # 4096 x 4096 float32, blocks of 64
    python benchmarks/bench_nf4.py --rows 1024 --repeats 20 --threads 2

The reference implementation is read from the instructor notebook `solutions/06_qlora/06_qlora.ipynb`
(its input-check helpers and the solution cells `ex_nf4_codebook` and `ex_nf4`), so the benchmark always
times the code the lab ships. Both functions run in the same process on the same tensor; the bytes are
checked equal before timing. Prints the median of N runs (after warm-up) and the ratio.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
from pathlib import Path

import torch
from common import commit, median_seconds

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "06_qlora" / "06_qlora.ipynb"
HELPERS = ("FLOAT_DTYPES", "check_weights", "check_blocksize")  # from the notebook's read-only cell
SOLUTIONS = ("ex_nf4_codebook", "ex_nf4")


def load_reference(path: Path = NOTEBOOK) -> dict:
    """Namespace with the notebook's nf4_codebook and nf4_quantize (and what they call)."""
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {"torch": torch, "math": __import__("math")}
    for cell in cells:
        source = "".join(cell["source"])
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in SOLUTIONS:
            exec(compile(source, f"<{grade_id}>", "exec"), namespace)
        elif cell["cell_type"] == "code" and "def check_weights" in source:
            # only the helper definitions: the rest of that cell loads the tiny model's weights
            tree = ast.parse(source)
            keep = [node for node in tree.body if getattr(node, "name", None) in HELPERS
                    or (isinstance(node, ast.Assign) and node.targets[0].id in HELPERS)]
            exec(compile(ast.Module(body=keep, type_ignores=[]), "<helpers>", "exec"), namespace)
    missing = [name for name in ("nf4_quantize", "check_weights") if name not in namespace]
    if missing:
        raise RuntimeError(f"{path} does not define {missing}; is it the instructor notebook?")
    return namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=4096)
    parser.add_argument("--blocksize", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with contextlib.redirect_stderr(io.StringIO()):  # bitsandbytes' CPU import notice
        import bitsandbytes
        import bitsandbytes.functional as bnbF
    reference = load_reference()
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.cols) * 0.02

    ours, _ = reference["nf4_quantize"](x, args.blocksize)
    theirs, _ = bnbF.quantize_4bit(x, blocksize=args.blocksize, quant_type="nf4")
    if not torch.equal(ours, theirs):
        raise SystemExit("the reference bytes differ from bitsandbytes'; fix the notebook before timing")

    t_ours = median_seconds(lambda: reference["nf4_quantize"](x, args.blocksize), args.repeats, warmup=2)
    t_bnb = median_seconds(lambda: bnbF.quantize_4bit(x, blocksize=args.blocksize, quant_type="nf4"), args.repeats, warmup=2)
    print(f"torch {torch.__version__}, bitsandbytes {bitsandbytes.__version__}, device cpu, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, commit {commit()}")
    print(f"nf4 quantize of a {args.rows} x {args.cols} float32 tensor, blocks of {args.blocksize}, "
          f"median of {args.repeats} runs (bytes equal)")
    print(f"  lab reference nf4_quantize        {t_ours * 1e3:9.1f} ms")
    print(f"  bitsandbytes quantize_4bit (cpu)  {t_bnb * 1e3:9.1f} ms")
    print(f"  ratio reference / bitsandbytes    {t_ours / t_bnb:9.2f}x")


if __name__ == "__main__":
    main()
