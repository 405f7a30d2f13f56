"""Environment: the fast/grading switch, seeding, device choice, quiet libraries and a preflight report.

`FAST` is true under nbgrader (which sets `NBGRADER_EXECUTION`) or with `PTLAB_FAST=1`; heavy cells read
it and shrink so that a whole lab executes in about a minute on two CPU cores.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.util
import io
import logging
import os
import platform
import random
import shutil
import sys
import warnings
from collections.abc import Iterator

import torch


def is_fast() -> bool:
    """True under nbgrader's autograder or when `PTLAB_FAST=1` (read anew on every call)."""
    return bool(os.environ.get("NBGRADER_EXECUTION")) or os.environ.get("PTLAB_FAST", "0") == "1"


FAST: bool = is_fast()
GRADING: bool = bool(os.environ.get("NBGRADER_EXECUTION"))


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy (if present) and torch on every device; deterministic CPU kernels."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    with contextlib.suppress(ImportError):
        import numpy as np

        np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.use_deterministic_algorithms(True, warn_only=True)


def device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_supported() -> bool:
    """bf16 compute: true on Ampere or newer GPUs and on CPUs; a T4 (Colab's free GPU) says False."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return True


# Libraries that print to stderr on import or first use. Test cells must not: nbgrader gives a test
# cell with any stderr output zero points. bitsandbytes on a CPU prints "Failed to load CPU
# gemm_4bit_forward ..." when first imported, and peft imports bitsandbytes.
NOISY_LIBRARIES = ("bitsandbytes", "peft", "transformers", "datasets")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence warnings, library logging and stderr writes (Python-level and file descriptor 2) inside."""
    saved_fd = None
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        sys.stderr.flush()
        saved_fd = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        if saved_fd is not None:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)


def _settle(name: str) -> None:
    """Turn a just-imported library's own chatter down (logging, progress bars)."""
    if name == "transformers":
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    elif name == "datasets":
        import datasets

        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()


class _QuietLoader(importlib.abc.Loader):
    """Runs a module's import inside `quiet()`, then `_settle`s it; anything else goes to the real loader."""

    def __init__(self, loader, name: str):
        self._loader, self._name = loader, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with quiet():
            self._loader.exec_module(module)
        _settle(self._name)

    def __getattr__(self, attr):  # resource readers, is_package, ...: the real loader's
        return getattr(self._loader, attr)


class _QuietImports(importlib.abc.MetaPathFinder):
    """On a library's first import, wherever it happens (a test cell included), make it quiet."""

    def __init__(self, names: tuple[str, ...]):
        self.names = set(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.names:
            return None
        self.names.discard(fullname)  # once: the real finders below answer from here on
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader, fullname)
        return spec


def quiet_libraries(*names: str) -> None:
    """Make the noisy libraries quiet for the rest of the session, whenever they are first imported.

    Call it in a notebook's set-up cell. A library already imported is settled now; the others are
    imported inside `quiet()` when the lab first imports them (a lab that never uses peft does not pay
    the seconds its import and bitsandbytes' take), so even a first import in a test cell prints nothing.
    Names given: import those now, quietly (for scripts that want the cost up front).
    """
    pending = tuple(n for n in NOISY_LIBRARIES if n not in sys.modules)
    if pending and not any(isinstance(f, _QuietImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImports(pending))
    for name in NOISY_LIBRARIES:
        if name in sys.modules:
            _settle(name)
    for name in names:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for logger in ("bitsandbytes", "peft", "accelerate"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    # Known, harmless warnings a student cannot act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*gemm_4bit.*")


def setup(seed: int = 0) -> torch.device:
    """A lab's first code cell: quiet libraries, seed everything, and return the device to use."""
    quiet_libraries()
    seed_everything(seed)
    torch.set_num_threads(cpu_threads())
    return device()


def cpu_threads() -> int:
    """Threads for CPU math: `OMP_NUM_THREADS` when set (the class grader sets it to cores / workers, so
    parallel students do not fight over cores), else the number of cores, at most 8."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return max(1, min(os.cpu_count() or 1, 8))


REQUIRED = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "matplotlib", "tqdm")
# Only for working in JupyterLab locally and for grading (the `lab` extra); Colab has its own notebook.
OPTIONAL = ("jupyterlab", "nbgrader")


def _version(name: str) -> str | None:
    with quiet():
        try:
            module = importlib.import_module(name)
        except Exception:  # a broken install is reported like a missing one
            return None
    return getattr(module, "__version__", "installed")


def preflight(file=None) -> dict[str, object]:
    """Print versions, device, bf16 support and free memory; say plainly what is missing.

    Returns the same facts as a dict, so tests and the command line can check them.
    """
    out = file or sys.stdout
    versions = {name: _version(name) for name in REQUIRED + OPTIONAL}
    missing = [name for name in REQUIRED if versions[name] is None]
    dev = device()
    facts: dict[str, object] = {
        "python": platform.python_version(),
        "versions": versions,
        "missing": missing,
        "device": str(dev),
        "bf16": bf16_supported(),
        "fast": is_fast(),
    }
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        facts["gpu"] = torch.cuda.get_device_name()
        facts["gpu_free_gib"] = round(free / 2**30, 1)
        facts["gpu_total_gib"] = round(total / 2**30, 1)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        pages, page_size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        facts["ram_free_gib"] = round(pages * page_size / 2**30, 1)
    facts["disk_free_gib"] = round(shutil.disk_usage(".").free / 2**30, 1)

    print(f"python        {facts['python']}", file=out)
    for name, v in versions.items():
        absent = "not installed (optional: pip install 'ptlab[lab]')" if name in OPTIONAL else "MISSING"
        print(f"{name:<13} {v or absent}", file=out)
    line = f"device        {dev}"
    if "gpu" in facts:
        line += f" ({facts['gpu']}, {facts['gpu_free_gib']} of {facts['gpu_total_gib']} GiB free)"
    print(line, file=out)
    print(f"bf16          {'yes' if facts['bf16'] else 'no (use fp16 compute)'}", file=out)
    if "ram_free_gib" in facts:
        print(f"RAM free      {facts['ram_free_gib']} GiB", file=out)
    print(f"disk free     {facts['disk_free_gib']} GiB", file=out)
    print(f"fast mode     {'on' if facts['fast'] else 'off'}", file=out)
    if missing:
        print(f"MISSING: {', '.join(missing)}. Install with: pip install -e '.[lab]' (see README).", file=out)
    else:
        print("All required packages are installed.", file=out)
    return facts
