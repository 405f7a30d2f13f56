"""Set-up files agree: pyproject and environment.yml install the same packages; CI runs the README's command."""

import re
from pathlib import Path

import pytest
import yaml  # PyYAML comes with datasets and jupyter

try:
    import tomllib  # standard library from Python 3.11
except ImportError:  # Python 3.10: the two pyproject tests skip
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
needs_tomllib = pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11+")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


@needs_tomllib
def test_environment_yml_installs_what_pyproject_declares():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in conda if isinstance(d, dict) and "pip" in d)
    pip_lines = {_name(x): x for x in pip if not x.startswith("-e")}
    assert set(pip_lines) == set(declared), f"only in pyproject: {set(declared) - set(pip_lines)}; " \
                                            f"only in environment.yml: {set(pip_lines) - set(declared)}"
    for name, req in declared.items():
        assert pip_lines[name].replace(" ", "") == req.replace(" ", ""), f"{name}: {pip_lines[name]} vs {req}"


@needs_tomllib
def test_required_packages_are_all_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for needed in ("torch", "transformers", "peft", "bitsandbytes", "datasets", "jupyterlab", "nbgrader",
                   "matplotlib", "tqdm"):
        assert needed in names, f"{needed} missing from pyproject dependencies"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```bash\n(.*?)```", readme, re.S)
    assert match, "README must hold the test command in a ```bash block after <!-- test-command -->"
    ci = (ROOT / ".ci" / "run").read_text()
    for line in match.group(1).strip().splitlines():
        assert line.strip() in ci, f"the README's test command line {line.strip()!r} is not in .ci/run"
