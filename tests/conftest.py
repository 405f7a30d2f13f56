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

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the instructor-only `autograder` package lives at the repository root
    sys.path.insert(0, str(ROOT))

_connect = socket.socket.connect


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
