"""ptlab.env and the `ptlab` command line: the fast switch, seeding, silence, preflight."""

import os
import subprocess
import sys

import torch

from ptlab import env


def test_fast_follows_nbgrader_and_ptlab_fast(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("PTLAB_FAST", raising=False)
    assert env.is_fast() is False
    monkeypatch.setenv("PTLAB_FAST", "1")
    assert env.is_fast() is True
    monkeypatch.delenv("PTLAB_FAST")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert env.is_fast() is True


def test_seed_everything_makes_torch_repeat_itself():
    env.seed_everything(123)
    a = torch.randn(5)
    env.seed_everything(123)
    assert torch.equal(a, torch.randn(5))


def test_cpu_threads_follows_omp_num_threads_as_the_class_grader_sets_it(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert env.cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert env.cpu_threads() == max(1, min(os.cpu_count() or 1, 8))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert env.cpu_threads() == max(1, min(os.cpu_count() or 1, 8))


def test_quiet_silences_python_and_file_descriptor_stderr(capfd):
    with env.quiet():
        print("python-level", file=sys.stderr)
        os.write(2, b"fd-level\n")
        import warnings

        warnings.warn("a library warning", UserWarning, stacklevel=1)
    print("after", file=sys.stderr)
    err = capfd.readouterr().err
    assert "python-level" not in err and "fd-level" not in err and "library warning" not in err
    assert "after" in err, "stderr must work again after the block"


def test_quiet_libraries_leaves_nothing_on_stderr_for_later_imports():
    # bitsandbytes prints "Failed to load CPU gemm_4bit_forward" on import on a CPU; peft imports it.
    code = "from ptlab import env; env.quiet_libraries(); import bitsandbytes, peft, transformers; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr == "", f"stderr should be empty, got {done.stderr[:300]!r}"


def test_preflight_reports_versions_device_and_missing(capsys):
    facts = env.preflight()
    out = capsys.readouterr().out
    assert facts["missing"] == [], f"the test environment lacks {facts['missing']}"
    assert facts["versions"]["torch"] == torch.__version__
    assert facts["device"] in ("cpu", "cuda", "mps")
    for word in ("torch", "device", "bf16", "RAM free", "All required packages"):
        assert word in out


def test_ptlab_check_command_exits_zero_when_everything_is_installed():
    done = subprocess.run([sys.executable, "-m", "ptlab.cli", "check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "transformers" in done.stdout
