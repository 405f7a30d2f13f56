"""The student repository (`python -m autograder.publish`) holds no solution, no hidden test, no
instructor tool; it installs with its own README's command and runs a lab."""

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import preinstalled
import pytest

from autograder import SOLUTIONS, lab_names
from autograder.publish import INSTRUCTOR_ONLY, publish, student_pyproject
from autograder.release import load_course

try:
    import tomllib
except ImportError:
    tomllib = None

BLOCK = re.compile(r"^[ \t]*#+\s*BEGIN (SOLUTION|HIDDEN TESTS)[^\n]*\n(.*?)^[ \t]*#+\s*END \1", re.S | re.M)
# Lines that occur in any Python training loop or function: their presence proves nothing. Each one was
# found in the package's own infrastructure (ptlab.lora's training loop, ptlab.data, ptlab.tinyworld).
IDIOMS = {
    "loss.backward()", "optimizer.step()", "optimizer.zero_grad(set_to_none=True)", "model.train()",
    "rows = []", "return counts", "for i, message in enumerate(messages):",
    "params = [p for p in model.parameters() if p.requires_grad]",
    "opt.step()", "return history", "rows, starts = [], []", "if not counts:",  # ptlab.rlhf's loops, world.py
}
# Names defined both in a solution block and in the package, each reviewed. ptlab.qlora.add_lora wraps
# peft's get_peft_model for lab 06 (lab 05's add_lora builds LoRALinear layers from scratch).
# ptlab.lora.collate is labs 05/06's collator: it builds a batch from raw rows (tokenizer, prompt, answer),
# not lab 02's `collate(examples, pad_token_id)` of built examples, so it cannot stand in for that exercise.
TRIVIAL = re.compile(r"[\W_]*|pass|continue|break|return|return None|else:|try:|finally:")
# ptlab.rlhf.ValueModel.forward is a module's forward method; the exercise of that name is lab 05's LoRALinear.
# ptlab.peft_methods.CausalLMView.forward and BitDeltaLinear.forward are modules' forward methods too.
REVIEWED_NAMES = {("qlora.py", "add_lora"), ("lora.py", "collate"), ("rlhf.py", "forward"), ("peft_methods.py", "forward")}


def secret_lines() -> set[str]:
    """Stripped lines of every solution and hidden-test block that appear nowhere else in the source
    notebooks (what the release shows anyway is public), minus TRIVIAL lines (blank, brackets, a bare
    keyword) and IDIOMS."""
    secret, public = set(), set()
    for path in sorted(SOLUTIONS.glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for match in BLOCK.finditer(cell.source):
                secret |= {line.strip() for line in match.group(2).splitlines()}
            public |= {line.strip() for line in BLOCK.sub("", cell.source).splitlines()}
    return {line for line in secret - public - IDIOMS if not TRIVIAL.fullmatch(line)}


def solution_names() -> set[str]:
    """Functions and classes defined in a cell holding a solution block (the exercises)."""
    names = set()
    for path in sorted(SOLUTIONS.glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if BLOCK.search(cell.source) and "BEGIN SOLUTION" in cell.source:
                names |= set(re.findall(r"^\s*(?:def|class)\s+(\w+)", cell.source, re.M))
    return {n for n in names if not n.startswith("__")}


def text_files(root: Path):
    """(path, text) of every text file below `root`; a notebook's text is its cells' sources."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or ".venv" in path.relative_to(root).parts:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # weights and other binary files
        if path.suffix == ".ipynb":
            text = "\n".join(c.source for c in nbformat.reads(text, as_version=4).cells)
        yield path, text


def leaks(root: Path, secret: set[str]) -> dict[str, list[str]]:
    found = {}
    for path, text in text_files(root):
        hit = secret & {line.strip() for line in text.splitlines()}
        if hit:
            found[str(path.relative_to(root))] = sorted(hit)[:5]
    return found


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("student") / "repo"
    publish(dest)
    return dest


def test_secret_lines_are_found_in_the_sources():
    # The leak tests below are only as good as this set: it must hold real solution code.
    secret = secret_lines()
    assert len(secret) > 300, f"only {len(secret)} secret lines found; is the block pattern right?"
    assert "### BEGIN SOLUTION" not in secret


def test_bundle_holds_the_student_files_and_nothing_instructor_only(bundle):
    top = {p.name for p in bundle.iterdir()}
    assert top == {".gitignore", "LICENSE", "README.md", "constraints.txt", "environment.yml", "jupyter", "labs",
                   "pyproject.toml", "utils"}, top
    assert sorted(p.name for p in (bundle / "labs").iterdir()) == lab_names()
    for module in INSTRUCTOR_ONLY:
        assert not (bundle / "utils" / "ptlab" / module).exists(), f"{module} is instructor-only"
    assert not list(bundle.rglob("*SOLUTION*")) and not list(bundle.rglob("test_*.py"))


def test_no_solution_or_hidden_test_line_occurs_in_the_bundle(bundle):
    found = leaks(bundle, secret_lines())
    assert not found, f"solution or hidden-test lines in the student repository: {found}"


def test_leak_check_catches_a_solution_copied_into_the_bundle(bundle, tmp_path):
    # The check above must be able to fail: a copy of a solution notebook in the bundle is found.
    copy = tmp_path / "repo"
    (copy / "labs").mkdir(parents=True)
    lab = lab_names()[0]
    (copy / "labs" / "x.ipynb").write_text((SOLUTIONS / lab / f"{lab}.ipynb").read_text())
    assert leaks(copy, secret_lines())


def test_the_package_defines_no_exercise(bundle):
    names = solution_names()
    assert {"sft_loss", "collate", "LoRALinear"} <= names
    defined = []
    for path in sorted((bundle / "utils" / "ptlab").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names \
                    and (path.name, node.name) not in REVIEWED_NAMES:
                defined.append(f"{path.relative_to(bundle)}: {node.name}")
    assert not defined, f"the student package defines exercise names: {defined}"


def test_released_notebooks_and_readme_carry_the_course_address(bundle):
    course = load_course()
    for lab in lab_names():
        text = (bundle / "labs" / lab / f"{lab}.ipynb").read_text()
        assert f"colab.research.google.com/github/{course.repository}/blob/{course.branch}/labs/{lab}/{lab}.ipynb" in text
        assert f"git+https://github.com/{course.repository}@{course.branch}" in text
        assert "{{COURSE" not in text
    readme = (bundle / "README.md").read_text()
    assert f"git clone {course.url}.git" in readme and "{{" not in readme
    for lab in lab_names():
        assert f"labs/{lab}/{lab}.ipynb" in readme


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11+")
def test_student_pyproject_has_the_lab_extra_the_jupyter_config_and_no_dev(bundle):
    project = tomllib.loads(student_pyproject(load_course()))
    assert set(project["project"]["optional-dependencies"]) == {"lab"}
    files = project["tool"]["setuptools"]["data-files"]
    for where, what in files.items():
        assert (where + "/").startswith("etc/jupyter/") and all((bundle / f).exists() for f in what)
    assert files["etc/jupyter"] == ["jupyter/nbgrader_config.py"], "Validate's count of passed and failed cells"
    assert "pytest" not in project.get("tool", {})


def _readme_setup_command(bundle: Path) -> str:
    """The student README's set-up lines, without the clone (we are in it) and without starting JupyterLab."""
    block = re.search(r"## Set up.*?```bash\n(.*?)```", (bundle / "README.md").read_text(), re.S).group(1)
    lines = [line for line in block.strip().splitlines() if not line.startswith("git clone")]
    # CI reaches PyPI only, not PyTorch's CPU wheel index that the README gives CPU-only Linux: install the
    # same torch version from PyPI here (on this CPU machine it only costs a larger download).
    lines = [line.replace(" --index-url https://download.pytorch.org/whl/cpu", "") for line in lines]
    return " && ".join(lines).replace(" && jupyter lab labs/", "").replace("jupyter lab labs/", "true")


@pytest.mark.slow
def test_bundle_installs_with_its_readme_command_and_runs_lab_00(bundle):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_CONFIG_PATH")}
    env["HF_HUB_OFFLINE"] = "1"
    env["PIP_COMPILE"] = "0"  # pip's --no-compile: byte-compiling every installed module is minutes of CPU
    # torch comes preinstalled (tests/preinstalled.py: .ci/run installs the same pin the same way each run);
    # the README's own commands create the venv again over it and install everything else.
    links = preinstalled.link_folder(bundle.parent / "preinstalled")
    preinstalled.venv_with_torch(bundle / ".venv", links, python=shutil.which("python3", path=env.get("PATH")))
    setup = subprocess.run(["bash", "-c", _readme_setup_command(bundle)], cwd=bundle, env=env, capture_output=True,
                           text=True, timeout=1800)
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    venv = bundle / ".venv" / "bin"
    run = subprocess.run([str(venv / "ptlab"), "run", "00_orientation"], cwd=bundle, env=env, capture_output=True,
                         text=True, timeout=900)
    total = re.search(r"^(\S+) / (\S+) points", run.stdout, re.M)
    assert total and float(total.group(1)) == 0 and float(total.group(2)) > 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 1, f"ptlab run should report failing tests (exit 1), got {run.returncode}"

    # The installed package (wherever pip put it) holds no solution line and no instructor-only module.
    where = subprocess.run([str(venv / "python"), "-c", "import ptlab, os; print(os.path.dirname(ptlab.__file__))"],
                           cwd="/", env=env, capture_output=True, text=True).stdout.strip()
    assert where, "ptlab is not importable from the student venv"
    assert not leaks(Path(where), secret_lines())
    assert not any((Path(where) / m).exists() for m in INSTRUCTOR_ONLY)

    # The student's JupyterLab: Formgrader and the assignment list off, Validate on.
    servers = subprocess.run([str(venv / "jupyter"), "server", "extension", "list"], cwd=bundle, env=env,
                             capture_output=True, text=True)
    listing = re.sub(r"\x1b\[[0-9;]*m", "", servers.stdout + servers.stderr)  # no colour codes
    assert re.search(r"nbgrader\.server_extensions\.formgrader\s+disabled", listing), listing
    assert re.search(r"nbgrader\.server_extensions\.assignment_list\s+disabled", listing), listing
    assert re.search(r"nbgrader\.server_extensions\.validate_assignment\s+enabled", listing), listing
    labext = subprocess.run([str(venv / "jupyter"), "labextension", "list"], cwd=bundle, env=env,
                            capture_output=True, text=True)
    disabled = re.sub(r"\x1b\[[0-9;]*m", "", labext.stdout + labext.stderr).partition("Disabled extensions:")[2]
    for plugin in ("formgrader", "create-assignment", "assignment-list", "course-list", "menu"):  # menu: empty otherwise
        assert f"@jupyter/nbgrader:{plugin}" in disabled, labext.stdout + labext.stderr
    assert "@jupyter/nbgrader:validate-assignment" not in disabled, disabled
