"""The `ptlab` command line: `ptlab check` (preflight) and `ptlab run LAB` (execute a lab headless)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ptlab", description="Post-training labs: helper commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="print versions, device, bf16 support and free memory; list what is missing")
    run = sub.add_parser("run", help="execute one lab notebook headless and report each test cell")
    run.add_argument("lab", help="lab folder name or unique prefix (e.g. 00_orientation or 00), or a notebook path")
    run.add_argument("--solutions", action="store_true", help="run the instructor's source notebook instead")
    run.add_argument("--full", action="store_true", help="full mode (the real experiments) instead of fast mode")
    run.add_argument("--timeout", type=int, default=600, help="seconds one cell may run (default 600)")
    run.add_argument("--model", metavar="PATH_OR_ID",
                     help="run with the set-up cell's MODEL set to this folder or Hub id (the Hub track)")
    args = parser.parse_args(argv)

    if args.command == "check":
        from ptlab.env import preflight

        return 1 if preflight()["missing"] else 0
    from ptlab.runner import run as run_lab

    try:
        results = run_lab(args.lab, solutions=args.solutions, fast=not args.full, timeout=args.timeout,
                          model=args.model)
    except (FileNotFoundError, ValueError) as err:
        print(f"ptlab run: {err}", file=sys.stderr)
        return 2
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
