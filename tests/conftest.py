"""Test-wide set-up: offline Hugging Face libraries and no network except loopback."""

import os
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

# Running in parallel (`pytest -n 2 --dist loadgroup`, the README's test command): the minutes of the suite
# sit in a few modules, each of which executes notebooks. Tests that share a module fixture (a graded
# class, a JupyterLab server, a mutant kernel per lab) must stay on one worker, so each gets an xdist group;
# the rest are scheduled one by one. Groups are handed out longest first, so the short unit tests fill the
# gaps at the end instead of a long group starting last.
PER_TEST = {"test_notebooks", "test_hub_track"}  # one notebook run per test, no shared fixture
LONGEST_FIRST = ["test_browser", "test_attacks", "test_grade_class", "test_publish", "test_setup", "test_mutants",
                 "test_hub_track", "test_notebooks", "test_models"]


def _group(item) -> str | None:
    module = item.module.__name__.rpartition(".")[2]
    if module in PER_TEST:
        return None
    if module == "test_mutants":  # one kernel per lab: a lab's rows share it
        lab = item.callspec.params.get("lab") if hasattr(item, "callspec") else None
        if lab is None and "harmless" in item.name:  # reads lab 00's kernel
            lab = "00_orientation"
        return f"mutants-{lab}" if lab else None
    return module


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2], len(rank)))  # stable
    for item in items:
        group = _group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in ("localhost", "::1") and not host.startswith("127.") and self.family != socket.AF_UNIX:
        raise RuntimeError(f"a test tried to reach the network ({address}); tests must run offline")
    return _connect(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection to a non-loopback address fails the test that made it."""
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


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
