"""Test-wide set-up: offline Hugging Face libraries and no network except loopback."""

import os
import re
import socket
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker has a core: one thread per worker and per kernel it starts (kernels inherit this),
    # or torch's threads on both workers stall each other.
    os.environ["OMP_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the instructor-only `autograder` package lives at the repository root
    sys.path.insert(0, str(ROOT))

_connect = socket.socket.connect

# Running in parallel (`pytest -n 2 --dist loadscope`, the README's test command). The minutes of the suite
# sit in a few modules that execute notebooks. Tests that share a module fixture (a graded class, a
# JupyterLab server, a published bundle) must run on one worker, one after the other; the notebook runs of
# test_notebooks and test_hub_track are independent; test_mutants runs each lab's rows in one or more
# kernels and names the kernel in each test's id (`[01_prompting-k1-...]`). `CourseScheduling` sends each
# such unit to a worker, longest first (the order below), so the short unit tests fill the end.
# (xdist's own `loadgroup` does not group under pytest 9: its node-id suffix is never applied.)
PER_TEST = {"test_notebooks", "test_hub_track"}
SAME_UNIT = {"test_attacks": "tests/test_grade_class.py"}  # they share one graded class (`lab00_class`)
LONGEST_FIRST = ["test_browser", "test_grade_class", "test_attacks", "test_mutants", "test_publish", "test_setup",
                 "test_notebooks", "test_hub_track", "test_lms", "test_models"]  # the browser: every lab, one server
KERNEL_ID = re.compile(r"\[(\d\d_[a-z_]+)-k(\d+)")


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: tests of one unit run on one worker, in order."""
    path = nodeid.partition("::")[0]
    module = Path(path).stem
    if module in PER_TEST:
        return nodeid
    kernel = KERNEL_ID.search(nodeid) if module == "test_mutants" else None
    if kernel:
        return f"{path}::{kernel.group(1)}-k{kernel.group(2)}"
    return SAME_UNIT.get(module, path)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(item.nodeid.partition("::")[0]).stem, len(rank)))  # stable


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the collection's longest-first order, not "most tests first"

    class CourseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return CourseScheduling(config, log)


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("localhost", "::1") and not host.startswith("127.") and self.family != socket.AF_UNIX:
        raise RuntimeError(f"a test tried to reach the network ({address}); tests must run offline")
    return _connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test that made it."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture(scope="module")
def sft():
    """tiny-sft, frozen, and its tokenizer set up for chats (`rl.prepare_chat_tokenizer`): the RL tests' policy."""
    import torch

    from ptlab import models, rl

    torch.set_num_threads(1)
    model, tokenizer = models.load("tiny-sft")
    return model.requires_grad_(False), rl.prepare_chat_tokenizer(tokenizer)


@pytest.fixture(scope="session")
def hub_twin(tmp_path_factory) -> Path:
    """A SmolLM2-format model folder with a BPE tokenizer and random weights (ptlab.tinyworld.hubtwin)."""
    from ptlab.tinyworld import hubtwin

    return hubtwin.build(tmp_path_factory.mktemp("hub-twin") / "smollm2-twin", seed=0)


@pytest.fixture(scope="session")
def hub_twin_base(tmp_path_factory) -> Path:
    """The Hub twin with SmolLM2-135M's (the base model's) tokens: no pad token, no chat template."""
    from ptlab.tinyworld import hubtwin

    return hubtwin.build(tmp_path_factory.mktemp("hub-twin-base") / "smollm2-base-twin", seed=0, flavour="base")


@pytest.fixture(scope="session")
def lab00_class(tmp_path_factory):
    """Lab 00 graded once by grade_class, from a zip as a TA downloads it, for tests/test_grade_class.py (the
    kinds of students a TA meets) and tests/test_attacks.py (cheating students, only where the sandbox works):
    the suite's most expensive fixture. Sandboxed where bubblewrap works, else unsafe (without the attacks)."""
    import shutil
    from types import SimpleNamespace

    import test_attacks
    import test_grade_class

    from autograder import SOLUTIONS, sandbox
    from autograder.grade_class import grade_class

    klass = tmp_path_factory.mktemp("class")
    test_grade_class.write_class(klass)
    sandboxed = sandbox.unavailable() is None
    if sandboxed:
        test_attacks.write_attacks(klass)
    before = test_attacks.tree_hash(SOLUTIONS)
    shutil.make_archive(str(klass), "zip", klass)
    out = tmp_path_factory.mktemp("out")
    # dave_hangs loops forever: his cell costs cell_timeout; lab 00's slowest cell takes about 2 s
    results = grade_class(Path(f"{klass}.zip"), "00_orientation", out, workers=2, cell_timeout=30, timeout=900,
                          mem_gib=4, unsafe=not sandboxed, quiet=True)
    return SimpleNamespace(results={r.student: r for r in results}, out=out / "00_orientation",
                           solutions_hash=before, sandboxed=sandboxed)
