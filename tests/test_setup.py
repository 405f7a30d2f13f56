"""Set-up files agree: pyproject, environment.yml and the lock (constraints.txt) name the same packages at
consistent versions; CI runs the README's command with the lock; the wheel installs the way Colab does."""

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import preinstalled
import pytest
import yaml  # PyYAML comes with datasets and jupyter
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib  # standard library from Python 3.11
except ImportError:  # Python 3.10: the pyproject tests skip
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
needs_tomllib = pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11+")
# What a Colab runtime already pins: the package must never pull these in without an extra.
NOTEBOOK_STACK = {"jupyterlab", "nbgrader", "notebook", "ipykernel", "ipython", "tornado", "jupyter-server"}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> dict[str, str]:
    """Every package pyproject names: required, `lab` and `dev` (without dev's `ptlab[lab]`)."""
    project = _project()
    extras = project["optional-dependencies"]
    reqs = project["dependencies"] + extras["lab"] + [r for r in extras["dev"] if _name(r) != "ptlab"]
    return {_name(r): r for r in reqs}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} should be an exact pin NAME==VERSION"
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


@needs_tomllib
def test_environment_yml_installs_what_pyproject_declares():
    declared = _declared()
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in conda if isinstance(d, dict) and "pip" in d)
    pip_lines = {_name(x): x for x in pip if not x.startswith("-e")}
    assert set(pip_lines) == set(declared), f"only in pyproject: {set(declared) - set(pip_lines)}; " \
                                            f"only in environment.yml: {set(pip_lines) - set(declared)}"
    for name, req in declared.items():
        assert pip_lines[name].replace(" ", "") == req.replace(" ", ""), f"{name}: {pip_lines[name]} vs {req}"


@needs_tomllib
def test_lock_pins_every_declared_package_within_its_floor():
    pins = _lock()
    for name, req in _declared().items():
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in constraints.txt"
        assert Requirement(req).specifier.contains(Version(pins[name]), prereleases=True), \
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {req}: regenerate the lock"
    assert "ptlab" not in pins, "constraints.txt must not pin the course package itself"


def test_lock_has_no_local_version_labels():
    # `torch==2.13.0+cpu` would refuse the CUDA build of the same version on a GPU machine.
    bad = [f"{n}=={v}" for n, v in _lock().items() if "+" in v]
    assert not bad, f"constraints.txt pins local versions {bad}; drop the +label"


@needs_tomllib
def test_required_packages_are_what_a_notebook_needs_and_nothing_colab_pins():
    names = {_name(r) for r in _project()["dependencies"]}
    for needed in ("torch", "transformers", "peft", "bitsandbytes", "datasets", "accelerate", "matplotlib",
                   "tqdm", "safetensors", "tokenizers", "trl"):  # trl: labs 03 and 04's visible tests
        assert needed in names, f"{needed} missing from pyproject dependencies"
    assert not names & NOTEBOOK_STACK, f"{names & NOTEBOOK_STACK} belong in the `lab` extra, not in the requirements"
    assert {"jupyterlab", "nbgrader"} <= {_name(r) for r in _project()["optional-dependencies"]["lab"]}
    assert "ptlab[lab]" in _project()["optional-dependencies"]["dev"], "dev must include the lab extra"


@needs_tomllib
def test_floors_are_what_the_code_needs():
    reqs = {_name(r): Requirement(r) for r in _project()["dependencies"]}
    # from_pretrained(dtype=...) is transformers >= 4.56; lab 06's numbers are from bitsandbytes 0.50.
    assert not reqs["transformers"].specifier.contains("4.55.9"), "transformers floor must be >= 4.56"
    assert not reqs["bitsandbytes"].specifier.contains("0.49.9"), "bitsandbytes floor must be >= 0.50"


@needs_tomllib
def test_project_urls_point_at_the_course_address_and_the_license_ships():
    from autograder.release import load_course

    project = _project()
    urls = project.get("urls", {})
    assert urls, "pyproject.toml should have [project.urls]"
    assert all(load_course().url in u for u in urls.values()), f"{urls} should point at {load_course().url}"
    assert project.get("license-files") == ["LICENSE"] and (ROOT / "LICENSE").exists()


def _readme_test_command() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```bash\n(.*?)```", readme, re.S)
    assert match, "README must hold the test command in a ```bash block after <!-- test-command -->"
    return [line.strip() for line in match.group(1).strip().splitlines()]


def test_ci_runs_the_readme_test_command_with_the_lock():
    ci = (ROOT / ".ci" / "run").read_text()
    lines = _readme_test_command()
    for line in lines:
        assert line in ci, f"the README's test command line {line!r} is not in .ci/run"
    installs = [part for line in lines for part in line.split("&&") if "pip install" in part]
    assert installs and all("-c constraints.txt" in part for part in installs), \
        f"every pip install of the test command should use the lock: {installs}"
    apt = next((line for line in ci.splitlines() if "apt-get install" in line), "")
    assert "chromium" in apt and "bubblewrap" in apt, ".ci/run should apt-get install chromium and bubblewrap"


def import_statements(source: str) -> list[str]:
    """The top-level import statements of a code cell (multi-line ones whole), as source text; [] if the
    cell is not plain Python. Imports inside functions run only when called, as in the lab."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a cell with IPython magics
        return []
    return [ast.get_source_segment(source, node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_import_statements_keeps_multi_line_imports_whole():
    cell = "from transformers import (\n    AutoModel,\n    AutoTokenizer,\n)\nimport math\n\ndef f():\n    import torch\n"
    assert import_statements(cell) == ["from transformers import (\n    AutoModel,\n    AutoTokenizer,\n)",
                                       "import math"]


@pytest.mark.slow
@needs_tomllib
def test_colab_style_install_imports_every_lab_without_the_notebook_stack(tmp_path):
    """Build the wheel, install it with no extras in a fresh venv that has torch (as Colab's `%pip install` does), and
    run every lab's set-up cell and every import of every lab there: no JupyterLab, no nbgrader."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_COMPILE"] = "0"  # pip's --no-compile: byte-compiling every installed module is minutes of CPU
    run = lambda *cmd, **kw: subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)  # noqa: E731
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT))
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("ptlab-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names), "the wheel has no LICENSE"
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    unconditional = {_name(r) for r in requires if "extra ==" not in r}
    assert not unconditional & NOTEBOOK_STACK, f"the wheel requires {unconditional & NOTEBOOK_STACK}"
    (tmp_path / "requires.txt").write_text("\n".join(requires))

    # A Colab runtime has torch installed: so has this venv (tests/preinstalled.py); the install must keep it.
    links = preinstalled.link_folder(tmp_path / "preinstalled")
    python = str(preinstalled.venv_with_torch(tmp_path / "colab", links))
    installed = run(python, "-m", "pip", "install", "torch==2.13.0", str(wheel), "-c", str(ROOT / "constraints.txt"),
                    timeout=1800)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert preinstalled.torch_location(Path(python)).startswith(str(links)), "installing the wheel replaced torch"
    present = run(python, "-c", "import importlib.util as u, json; print(json.dumps("
                  "[m for m in ('jupyterlab', 'nbgrader', 'notebook', 'jupyter_server') if u.find_spec(m)]))")
    assert json.loads(present.stdout) == [], f"a plain install pulled in {present.stdout}"

    import nbformat

    # One process runs every lab in turn (an import either works in this install or it does not; one
    # process saves a torch import per lab), each from its own folder as the notebook would.
    code = "import os\n"
    notebooks = sorted((ROOT / "labs").glob("*/*.ipynb"))
    for nb_path in notebooks:
        cells = [c.source for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "code"]
        setup = re.sub(r"(?m)^(\s*)%pip .*$", r"\1pass", cells[0])
        imports = [statement for src in cells[1:] for statement in import_statements(src)]
        code += f"os.chdir({str(nb_path.parent)!r})\n{setup}\n" + "\n".join(imports) + f"\nprint('SETUP OK {nb_path.stem}')\n"
    result = run(python, "-c", code, timeout=600)
    for nb_path in notebooks:
        assert f"SETUP OK {nb_path.stem}" in result.stdout, \
            f"{nb_path.name} set-up failed in a Colab-style install:\n{result.stderr[-3000:]}"
