"""A fresh virtual environment in which torch is already installed, as on a Colab runtime.

The install tests (tests/test_setup.py, tests/test_publish.py) check that our package and the student
bundle install and run from their own commands in a fresh environment. Unpacking torch there again (about
750 MB, every run) checks nothing of ours: `.ci/run` installs the same pinned torch with the same command
each time. So the fresh environment sees the running interpreter's torch, and the distributions torch
needs, through a `.pth` file that names a folder of links to them (nothing else of this environment
shows: no JupyterLab, no nbgrader). pip then finds `torch==2.13.0` satisfied and installs the rest for
real. This is a Colab runtime's state (torch preinstalled), and `torch_location` lets a test check that
an install left that torch in place.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def _closure(name: str) -> list[metadata.Distribution]:
    """`name`'s distribution and every distribution it requires here (markers evaluated), recursively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = todo.pop().lower().replace("_", "-")
        if key in seen:
            continue
        dist = metadata.distribution(key)
        seen[key] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def link_folder(folder: Path, name: str = "torch") -> Path:
    """A folder of symbolic links to the installed files of `name` and its requirements (top-level
    packages, modules and .dist-info folders; scripts outside site-packages are left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    for dist in _closure(name):
        root = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")} - {"__pycache__"}
        for top in tops:
            target, link = root / top, folder / top
            if target.exists() and not link.exists():
                link.symlink_to(target)
    return folder


def venv_with_torch(venv: Path, links: Path, python: str = sys.executable) -> Path:
    """Create `venv` (with `python`'s base interpreter) whose site-packages also sees `links`; its python."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "preinstalled-torch.pth").write_text(f"{links}\n")
    return venv / "bin" / "python"


def torch_location(python: Path) -> str:
    """Where `python` imports torch from."""
    out = subprocess.run([str(python), "-c", "import torch; print(torch.__file__)"], capture_output=True, text=True)
    return out.stdout.strip()
