"""Static scan of a submission before it runs: code that could tamper with grading is flagged for a TA.

    python -m autograder.scan NOTEBOOK...   # print the findings of each notebook

Every code cell a student could have written (any cell whose source is not, verbatim, a cell of the
course's source notebook) is parsed with `ast` (IPython magics and `!` commands are translated first)
and checked for: assigning to (or deleting) attributes of imported modules, `setattr`/`delattr` on
them, `sys.modules`, `builtins`, code and frame internals (`__code__`, `__globals__`, `f_globals`, ...),
`exec`/`eval`/`compile`/`__import__`, `importlib`, `ctypes` and similar modules, shell commands,
processes and sockets, and paths that leave the notebook folder ('..', absolute paths, recursive
globs). A finding is a reason to read the cell, not proof of cheating: the grader withholds the points
of the flagged cell's exercise until a TA has looked (docs/GRADING.md).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

FORBIDDEN_MODULES = {"importlib", "ctypes", "builtins", "gc", "marshal", "subprocess", "socket", "pty",
                     "multiprocessing", "signal", "sqlite3", "code", "codeop", "types", "inspect", "pickle",
                     "shutil", "glob", "urllib", "http", "requests", "runpy", "atexit", "__builtin__"}
FORBIDDEN_CALLS = {"exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint",
                   "setattr", "delattr", "open", "get_ipython"}
FORBIDDEN_ATTRIBUTES = {"__code__", "__globals__", "__builtins__", "__closure__", "__dict__", "__class__",
                        "__subclasses__", "__bases__", "__mro__", "__loader__", "__spec__", "__defaults__",
                        "__kwdefaults__", "f_globals", "f_locals", "f_back", "f_builtins", "gi_frame", "tb_frame",
                        "_getframe", "modules", "settrace", "setprofile", "addaudithook", "meta_path",
                        "path_hooks", "excepthook", "displayhook", "system", "popen", "fork", "forkpty", "kill",
                        "killpg", "execv", "execve", "execvp", "spawnv", "rglob", "walk", "chdir", "home",
                        "expanduser", "environ", "remove", "unlink", "rmdir", "rmtree", "write_text",
                        "write_bytes", "read_text", "read_bytes", "symlink", "rename", "replace_file"}
# Names the labs bind to modules (in cells a student may not have touched): treated as modules everywhere.
COURSE_MODULES = {"torch", "F", "nn", "np", "plt", "checks", "env", "models", "data", "ptlab", "transformers", "trl",
                  "peft", "datasets", "sys", "os", "math", "random", "json", "re", "time", "functools"}
FORBIDDEN_NAMES = {"__builtins__", "_ih", "_oh", "In", "Out", "_i", "_ii", "_iii", "__file__", "__loader__"}
# Settings honest notebooks write (determinism, precision, plot style): assigning to an attribute below one
# of these prefixes changes no test helper, so it is not flagged (`torch.backends.cudnn.deterministic = True`).
# Calls such as torch.set_num_threads, torch.use_deterministic_algorithms or np.set_printoptions are
# never flagged (calls are judged by name only), nor is `os.environ["NAME"] = "value"` with literal strings.
SETTINGS_PREFIXES = ("torch.backends.", "torch._dynamo.config.", "matplotlib.rcParams", "plt.rcParams",
                     "pd.options.")


@dataclass(frozen=True)
class Finding:
    """One suspicious construct: the cell's grade_id (or index), the line in that cell, and why."""

    cell: str
    line: int
    reason: str
    index: int = -1  # position of the cell in the notebook

    def __str__(self) -> str:
        return f"{self.cell} line {self.line}: {self.reason}"


def python_source(source: str) -> str:
    """Cell source as plain Python: IPython magics and shell escapes become get_ipython() calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _dotted(node: ast.AST) -> str:
    """`torch.backends.cudnn.deterministic` for that attribute chain ("" if it is not a plain chain)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _environ_setting(target: ast.AST, value: ast.AST) -> bool:
    """`os.environ["NAME"] = "value"`: a literal environment setting (TOKENIZERS_PARALLELISM and the like)."""
    return (isinstance(target, ast.Subscript) and _dotted(target.value) == "os.environ"
            and isinstance(target.slice, ast.Constant) and isinstance(target.slice.value, str)
            and isinstance(value, ast.Constant) and isinstance(value.value, str))


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _leaves_folder(text: str) -> bool:
    """A path string that reaches outside the notebook folder: absolute, home, '..', or a '**' glob."""
    parts = text.replace("\\", "/").split("/")
    return text.startswith(("/", "~")) and len(text) > 1 or ".." in parts or "**" in parts


HARMLESS_MAGICS = {"pip", "matplotlib", "time", "timeit", "env"}  # line magics an honest notebook uses
# (`%env PTLAB_FAST=1` is how the "Working in this notebook" cell tells students to turn on fast mode)


def _harmless_magic(node: ast.Call) -> bool:
    """`get_ipython().run_line_magic("pip", ...)`: what IPython makes of `%pip ...` (no network in the
    sandbox anyway); shell escapes (`!cmd`) and other magics stay flagged."""
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "run_line_magic" and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython" and bool(node.args)
            and isinstance(node.args[0], ast.Constant) and node.args[0].value in HARMLESS_MAGICS)


class _Scanner(ast.NodeVisitor):
    def __init__(self, modules: set[str] | None = None) -> None:
        self.modules = set(COURSE_MODULES) if modules is None else modules  # names bound to modules
        self.found: list[tuple[int, str]] = []

    def flag(self, node: ast.AST, reason: str) -> None:
        self.found.append((getattr(node, "lineno", 0), reason))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in FORBIDDEN_MODULES:
                self.flag(node, f"imports {alias.name}")
            self.modules.add((alias.asname or top))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        top = (node.module or "").split(".")[0]
        if top in FORBIDDEN_MODULES or node.level:
            self.flag(node, f"imports from {'.' * node.level}{node.module or ''}")
        for alias in node.names:
            if alias.name == "*":
                self.flag(node, f"star import from {node.module}")
            self.modules.add(alias.asname or alias.name)

    def _check_target(self, target: ast.AST, verb: str) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._check_target(element, verb)
        elif isinstance(target, ast.Attribute):
            root = _root(target)
            if target.attr.startswith("__"):
                self.flag(target, f"{verb} the special attribute {target.attr!r}")
            elif verb == "assigns to" and _dotted(target).startswith(SETTINGS_PREFIXES):
                self.visit(target.value)  # a setting such as torch.backends.cudnn.deterministic
            elif not isinstance(root, ast.Name) or root.id in self.modules:
                name = root.id if isinstance(root, ast.Name) else "an expression"
                self.flag(target, f"{verb} attribute {target.attr!r} of {name} (module or shared object)")
        elif isinstance(target, ast.Name) and target.id in ("__builtins__", "print", "type", "isinstance", "float",
                                                             "int", "bool", "len", "sum", "abs", "all", "any"):
            self.flag(target, f"rebinds the builtin {target.id!r}")

    def visit_Assign(self, node: ast.Assign) -> None:
        if len(node.targets) == 1 and _environ_setting(node.targets[0], node.value):
            return
        for target in node.targets:
            self._check_target(target, "assigns to")
        root = _root(node.value)  # `t = torch.testing`: t is a module alias from now on
        if isinstance(node.value, (ast.Attribute, ast.Name)) and isinstance(root, ast.Name) and root.id in self.modules:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.modules.add(target.id)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_target(node.target, "assigns to")
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_target(node.target, "assigns to")
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._check_target(target, "deletes")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if _harmless_magic(node):  # `%pip install ...` in the course's setup cell, `%time`, ...
            for arg in node.args[1:]:
                self.visit(arg)
            return
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in ("setattr", "delattr") and node.args:
            first = node.args[0]  # setattr(layer, "child", ...) on a local object is ordinary code
            if not isinstance(first, ast.Name) or first.id in self.modules:
                self.flag(node, f"calls {name}() on a module or an expression")
        elif name in FORBIDDEN_CALLS:
            self.flag(node, f"calls {name}()")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr in FORBIDDEN_ATTRIBUTES:
            self.flag(node, f"uses .{node.attr}")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self.flag(node, f"uses {node.id}")

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
        if _leaves_folder(text):
            self.flag(node, f"a path outside the notebook folder: {text[:40]!r}")
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                self.visit(value)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str) and _leaves_folder(node.value):
            self.flag(node, f"a path outside the notebook folder: {node.value[:40]!r}")


def scan_source(source: str, cell: str = "cell", index: int = -1, modules: set[str] | None = None) -> list[Finding]:
    """Findings in one cell's source (a cell that does not parse is a finding too: it cannot be checked).

    `modules` (updated in place) holds the names bound to modules by earlier cells.
    """
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError as err:
        return [Finding(cell, err.lineno or 0, f"does not parse ({err.msg}); scanned nothing", index)]
    scanner = _Scanner(modules)
    scanner.visit(tree)
    return [Finding(cell, line, reason, index) for line, reason in sorted(set(scanner.found))]


def cell_name(cell, index: int) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index + 1}"


def scan_notebook(nb, trusted: set[str] | None = None) -> list[Finding]:
    """Findings in every code cell of `nb` whose source is not in `trusted` (the course's own cells)."""
    trusted = trusted or set()
    findings: list[Finding] = []
    modules = set(COURSE_MODULES)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell_findings = scan_source(cell.source, cell_name(cell, index), index, modules)
        if cell.source.strip() not in trusted:
            findings += cell_findings
    return findings


def course_cells(nb) -> set[str]:
    """Sources of the course notebook's code cells that are not solutions (what the course wrote)."""
    return {c.source.strip() for c in nb.cells
            if c.cell_type == "code" and not c.metadata.get("nbgrader", {}).get("solution")}


def main(argv: list[str] | None = None) -> None:
    import nbformat

    for path in argv if argv is not None else sys.argv[1:]:
        findings = scan_notebook(nbformat.read(Path(path), as_version=4))
        print(f"{path}: {len(findings)} finding(s)")
        for finding in findings:
            print(f"  {finding}")


if __name__ == "__main__":
    main()
