"""Intact test helpers: check cells around every graded test cell prove the helpers are the originals.

Before a submission runs, the grader inserts (not visible to the student, never in the feedback):
- a setup cell, first, before any student code: it imports the modules the tests rely on
  (`ptlab.checks`, `torch`, `torch.testing`, `torch.nn.functional`, `math`, `builtins`) and records the
  identity of every function and class in them (and each function's code, defaults and the values of
  `ptlab.checks`' own dicts); it registers the checker under a random per-run name;
- a check cell just before and just after each graded test cell: it compares the modules with that
  record, and the notebook's names `checks`, `torch`, `F` and any name of a `ptlab.checks` function
  with the originals, and prints a random per-cell token only when everything is intact.
A changed function of torch, math or builtins passes only if its new code lives in an installed
library (a library wrapping its own function, as torch._dynamo does on import); nothing may change
in `ptlab.checks`. The grader then reads the outputs: a test cell whose check before or after did not print its token
scores 0, and the submission is flagged with what was replaced. The check runs in the student's
process, so code that rewrites the interpreter itself could fake it; such code needs the constructs
the static scan (autograder/scan.py) flags, which is why the two go together.
"""

from __future__ import annotations

import re
import secrets

import nbformat

MARK = "# ptlab-integrity"

SETUP = '''{mark} {key}
def _ptlab_guard():
    import builtins, math, sys, types
    import torch, torch.nn.functional, torch.testing
    try:  # torch._dynamo wraps a few torch functions when first imported (transformers imports it)
        import torch._dynamo
    except ImportError:
        pass
    import ptlab.checks
    only = {only!r}  # for these modules, only the names the tests and ptlab.checks use
    modules = {{m.__name__: m for m in (ptlab.checks, torch, torch.testing, torch.nn.functional, math, builtins)}}
    classes = {{"torch.Tensor": torch.Tensor}}
    watched = (types.FunctionType, types.BuiltinFunctionType, type, types.ModuleType)

    def fingerprint(value):
        return (id(value), id(getattr(value, "__code__", None)), id(getattr(value, "__defaults__", None)),
                id(getattr(value, "__kwdefaults__", None)))

    def snapshot(namespace, module_name):
        record = {{}}
        for name, value in list(namespace.items()):
            if isinstance(value, watched) or callable(value) and module_name != "builtins":
                record[name] = fingerprint(value)
            elif module_name == "ptlab.checks" and isinstance(value, (dict, tuple, float, int, str)):
                record[name] = ("value", repr(value))
        return record

    import os
    here = os.getcwd()
    libraries = tuple(os.path.join(p, "") for p in sys.path
                      if p and os.path.isabs(p) and not p.startswith(("/tmp", here)))

    def library_made(value):  # a library wrapped its own function (torch._dynamo does): not the student
        filename = getattr(getattr(value, "__code__", None), "co_filename", "")
        return bool(filename) and filename.startswith(libraries)

    def current(namespace, name, kind):
        value = namespace.get(name, snapshot)
        return ("value", repr(value)) if kind == "value" else fingerprint(value)

    record = {{n: {{k: v for k, v in snapshot(vars(m), n).items() if n not in only or k in only[n]}}
              for n, m in modules.items()}}
    record.update({{n: snapshot(dict(vars(c)), n) for n, c in classes.items()}})
    expected_names = {{"checks": ptlab.checks, "torch": torch, "F": torch.nn.functional}}
    expected_names.update({{n: getattr(ptlab.checks, n) for n in ("assert_close", "assert_equal", "assert_shape",
                           "assert_dtype", "assert_true", "assert_raises", "check_tensor")}})

    def verify(token, user_ns):
        changed = [f"sys.modules[{{n!r}}]" for n, m in modules.items() if sys.modules.get(n) is not m]
        spaces = {{**{{n: vars(m) for n, m in modules.items()}}, **{{n: dict(vars(c)) for n, c in classes.items()}}}}
        for owner, names in record.items():
            for name, before in names.items():
                if current(spaces[owner], name, before[0]) != before and (
                        owner == "ptlab.checks" or before[0] == "value" or not library_made(spaces[owner].get(name))):
                    changed.append(f"{{owner}}.{{name}}")
        changed += [f"the notebook's {{n!r}}" for n, v in expected_names.items() if n in user_ns and user_ns[n] is not v]
        if changed:
            raise AssertionError("test helpers were replaced: " + ", ".join(changed[:8]))
        print(token)

    module = types.ModuleType("{key}")
    module.verify = verify
    sys.modules["{key}"] = module


_ptlab_guard()
del _ptlab_guard
'''

CHECK = '{mark} {key}\n__import__("sys").modules["{key}"].verify("{token}", globals())\n'


def grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def test_ids(source) -> list[str]:
    """grade_ids of the graded test cells of the course's source notebook, in order."""
    return [grade_id(c) for c in source.cells if c.cell_type == "code"
            and c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]


def restore_tests(nb, source) -> nbformat.NotebookNode:
    """A copy of `nb` with every test cell of `source` present (a deleted one goes back after the
    cell that preceded it in `source`), so that each gets its checks; nbgrader restores its source."""
    nb = nbformat.from_dict(dict(nb))
    present = {grade_id(c) for c in nb.cells}
    previous = ""
    for cell in source.cells:
        gid = grade_id(cell)
        if gid in test_ids(source) and gid not in present:
            at = next((i + 1 for i, c in enumerate(nb.cells) if previous and grade_id(c) == previous), len(nb.cells))
            nb.cells.insert(at, nbformat.from_dict(dict(cell)))
            present.add(gid)
        previous = gid or previous
    return nb


def used_names(source) -> dict[str, list[str]]:
    """Attributes of `torch` and `torch.nn.functional` that the test cells and ptlab.checks call."""
    import ast
    import importlib.util
    from pathlib import Path

    aliases = {"torch": "torch", "F": "torch.nn.functional"}
    checks_file = Path(importlib.util.find_spec("ptlab.checks").origin)  # read, not imported: no torch here
    texts = [checks_file.read_text()] + [c.source for c in source.cells if grade_id(c) in test_ids(source)]
    used: dict[str, set[str]] = {name: set() for name in aliases.values()}
    for text in texts:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                used[aliases[node.value.id]].add(node.attr)
    return {name: sorted(attrs) for name, attrs in used.items()}


def inject(nb, tests: list[str], only: dict[str, list[str]]) -> tuple[nbformat.NotebookNode, dict[str, tuple[str, str]]]:
    """A copy of `nb` with the setup cell first and a check cell around each test cell in `tests`.

    Returns the notebook and {token: (grade_id, "before" | "after")} to read the verdicts with.
    """
    key = f"_ptlab_integrity_{secrets.token_hex(8)}"
    tokens: dict[str, tuple[str, str]] = {}
    cells = [nbformat.v4.new_code_cell(SETUP.format(mark=MARK, key=key, only=only))]
    for cell in nb.cells:
        gid = grade_id(cell)
        is_test = cell.cell_type == "code" and gid in tests
        if is_test:
            token = secrets.token_hex(12)
            tokens[token] = (gid, "before")
            cells.append(nbformat.v4.new_code_cell(CHECK.format(mark=MARK, key=key, token=token)))
        cells.append(cell)
        if is_test:
            token = secrets.token_hex(12)
            tokens[token] = (gid, "after")
            cells.append(nbformat.v4.new_code_cell(CHECK.format(mark=MARK, key=key, token=token)))
    out = nbformat.from_dict(dict(nb))
    out.cells = cells
    return out, tokens


def _said(cell, token: str) -> tuple[bool, str]:
    """Did the check cell print exactly its token? If not, the error it raised (or why not)."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("text", "").strip() == token:
            return True, ""
        if output.get("output_type") == "error":
            return False, f"{output.get('ename')}: {output.get('evalue')}"[:200]
    return False, "the check did not run to the end"


def verdicts(executed, tokens: dict[str, tuple[str, str]]) -> dict[str, str]:
    """{grade_id: reason} for every test cell whose check before or after it failed."""
    failed: dict[str, str] = {}
    seen: set[str] = set()
    for cell in executed.cells:
        found = re.search(r'verify\("([0-9a-f]+)"', cell.source) if cell.source.startswith(MARK) else None
        if found and found.group(1) in tokens:
            token = found.group(1)
            seen.add(token)
            gid, when = tokens[token]
            ok, reason = _said(cell, token)
            if not ok and gid not in failed:
                failed[gid] = f"{reason} ({when} {gid})"
    for token, (gid, when) in tokens.items():  # a check cell that vanished counts as failed
        if token not in seen and gid not in failed:
            failed[gid] = f"integrity check missing ({when} {gid})"
    return failed


def remove_checks(nb) -> nbformat.NotebookNode:
    """`nb` without the setup and check cells (for the feedback the student sees)."""
    nb.cells = [c for c in nb.cells if not (c.cell_type == "code" and c.source.startswith(MARK))]
    return nb


HIDDEN = re.compile(r"#+\s*BEGIN HIDDEN TESTS(.*?)#+\s*END HIDDEN TESTS", re.S)


def hidden_lines(source) -> set[str]:
    """Every line of hidden-test code in the course notebook (stripped, at least 8 characters)."""
    lines: set[str] = {"BEGIN HIDDEN TESTS", "END HIDDEN TESTS"}
    for cell in source.cells:
        for block in HIDDEN.findall(cell.source if cell.cell_type == "code" else ""):
            lines |= {line.strip() for line in block.splitlines() if len(line.strip()) >= 8}
    return lines


def _scrub(text: str, secret: set[str]) -> str:
    return "".join("[a line of a hidden test was removed]\n" if any(s in line for s in secret) else line
                   for line in text.splitlines(keepends=True))


def scrub_outputs(nb, secret: set[str]) -> int:
    """Remove from every output any line that quotes hidden-test code; return how many printed or
    displayed outputs (not tracebacks) had to change."""
    changed = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            before = repr(output)
            if "text" in output:
                output["text"] = _scrub(output["text"], secret)
            if "traceback" in output:
                output["traceback"] = [_scrub(t, secret) for t in output["traceback"]]
            if "evalue" in output:
                output["evalue"] = _scrub(output["evalue"], secret)
            for mime, value in output.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    output["data"][mime] = _scrub(value, secret)
            # A failing hidden assert quotes itself in its own traceback: that is nbgrader's business
            # (the feedback shortens tracebacks); printed or displayed quotes are the student's doing.
            changed += repr(output) != before and output.get("output_type") != "error"
    return changed
