"""A sandboxed Jupyter kernel for autograding: bubblewrap around ipykernel, one sandbox per student.

The grader writes, per student, a kernel spec (`ptlab-sandbox`) into a private JUPYTER_PATH and runs
nbgrader with `--Execute.kernel_name=ptlab-sandbox`; nothing else of nbgrader changes. The spec starts
this file as a script (standard library only, so it starts fast), which execs

    bwrap [read-only system, Python, packages, ptlab] [a copy of the student's folder] [private /tmp]
          --unshare-net --unshare-pid ... -- setpriv --reuid UID ... python -m ipykernel_launcher -f CONN

What the kernel sees: /usr, /etc, the Python prefix and virtual environment, the `sys.path` folders
outside the course repository (ptlab and its checkpoints), all read-only; the student's folder (a copy;
new files land in a size-limited tmpfs); a private /tmp (tmpfs). It does not see the solutions, the
gradebook, other students, the network (a new, empty network namespace: the kernel talks to nbgrader
over ZeroMQ `ipc` sockets in a bind-mounted folder instead of loopback TCP) or other processes.
Limits: address space (RLIMIT_AS), file size (RLIMIT_FSIZE), processes (RLIMIT_NPROC, counted per real
user id: as root the kernel runs as a dedicated unprivileged uid, one per student, so the limit holds).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

KERNEL_NAME = "ptlab-sandbox"
UID_BASE = 61000  # uids 61000.. are the sandboxed kernels' (no /etc/passwd entry needed)
UID_BLOCK = 256  # uids one grading run holds: RLIMIT_NPROC counts per uid, so runs at the same time never share
SLOTS = 1000  # grading runs that can hold a block at the same time on one machine
TMPFS_BYTES = 512 * 2**20  # /tmp and new files in the student's folder, each
FILE_BYTES = 256 * 2**20  # RLIMIT_FSIZE: the largest file a kernel may write
MAX_PROCESSES = 64  # RLIMIT_NPROC: threads count too (torch starts a few per core)
KEPT_ENV = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONUNBUFFERED", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "TQDM_DISABLE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODEL")
KEPT_PREFIXES = ("PTLAB_", "NBGRADER_")


def unavailable() -> str | None:
    """Why a sandboxed kernel cannot run here, or None when it can (tries a one-line sandbox)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (`bwrap`) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "`setpriv` (util-linux) is missing"
    probe = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--unshare-net", "--unshare-pid",
             "--die-with-parent", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap cannot start: {err}"
    if result.returncode != 0:
        return (f"bwrap cannot create namespaces here ({result.stderr.strip()}); user namespaces may be "
                "disabled (sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces) or the "
                "container forbids them")
    return None


@contextlib.contextmanager
def uid_block() -> Iterator[int]:
    """The first uid index of a block of UID_BLOCK that no other grading run on this machine holds until
    this one ends (a lock file per block). Two runs sharing uids would share RLIMIT_NPROC: one class's
    threads (or fork bomb) would kill the other's kernels."""
    folder = Path(tempfile.gettempdir())
    for slot in range(SLOTS):
        with open(folder / f"ptlab-sandbox-uids-{slot}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield slot * UID_BLOCK
            return
    raise RuntimeError(f"all {SLOTS} uid blocks of the sandbox are held by other grading runs")


def readonly_paths(repo: Path) -> list[str]:
    """Folders the kernel needs read-only: Python, the venv, and the sys.path entries it may see.

    Never the repository root nor a folder above it; inside the repository only `utils/` (ptlab) and
    the Python prefixes (a `.venv` there); never a folder holding `solutions/` or `autograder/`.
    """
    repo = repo.resolve()
    prefixes = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    keep: list[Path] = []
    for entry in [*prefixes, *sys.path]:
        if not entry or not Path(entry).is_dir():
            continue
        path = Path(entry).resolve()
        if path == repo or repo.is_relative_to(path) or (path / "solutions").is_dir() or (path / "autograder").is_dir():
            continue
        if path.is_relative_to(repo) and path not in prefixes and path.parts[len(repo.parts)] != "utils":
            continue
        if not any(path.is_relative_to(k) for k in keep):
            keep = [k for k in keep if not k.is_relative_to(path)] + [path]
    return [str(k) for k in keep]


def install(root: Path, work: Path, index: int, repo: Path, mem_bytes: int) -> dict[str, str]:
    """Write the kernel spec and sandbox config for one student; return the env nbgrader needs.

    `work` is the folder the kernel runs in (a copy of the student's notebook folder), `index` picks
    the student's uid (so RLIMIT_NPROC counts this student's processes only; see `uid_block`).
    """
    uid = UID_BASE + index
    ipc = root / "ipc"
    ipc.mkdir(parents=True, exist_ok=True)
    config = {"work": str(work), "ipc": str(ipc), "uid": uid, "mem_bytes": mem_bytes,
              "readonly": readonly_paths(repo), "python": sys.executable}
    (root / "sandbox.json").write_text(json.dumps(config, indent=1))
    spec = root / "jupyter" / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-I", str(Path(__file__).resolve()), str(root / "sandbox.json"), "{connection_file}"],
        "display_name": "Python 3 (ptlab sandbox)", "language": "python",
        "interrupt_mode": "message",  # a signal to bwrap would not reach the kernel inside
    }))
    if os.geteuid() == 0:
        for path in (ipc, work, *work.rglob("*")):
            os.chown(path, uid, uid)
    os.chmod(ipc, 0o700)
    return {"JUPYTER_PATH": str(root / "jupyter"), "JUPYTER_RUNTIME_DIR": str(ipc)}


def nbgrader_args(root: Path) -> list[str]:
    """nbgrader options that select the sandboxed kernel and ZeroMQ ipc sockets in `root/ipc`."""
    return [f"--Execute.kernel_name={KERNEL_NAME}", "--KernelManager.transport=ipc",
            f"--KernelManager.ip={root / 'ipc' / 'kernel'}"]


def bwrap_argv(config: dict, command: list[str]) -> list[str]:
    """The bwrap command line that runs `command` (ipykernel) for `config` (see the module docstring)."""
    work, ipc = config["work"], config["ipc"]
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for link in ("/bin", "/lib", "/lib64", "/sbin"):
        argv += ["--ro-bind-try", link, link]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", "/tmp"]
    made: set[Path] = {Path("/"), Path("/tmp")}
    for target in [*config["readonly"], work, ipc]:  # bwrap would make missing parents 0700: unreadable
        for parent in reversed(Path(target).parents):
            if parent not in made and not any(Path(target) == Path(p) for p in ("/usr", "/etc")):
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
    for path in config["readonly"]:
        argv += ["--ro-bind", path, path]
    # The student's folder: a size-limited tmpfs holding the copied files (bound one by one, writable).
    argv += ["--perms", "1777", "--size", str(TMPFS_BYTES), "--tmpfs", work]
    for entry in sorted(Path(work).iterdir()):
        argv += ["--bind", str(entry), str(entry)]
    argv += ["--bind", ipc, ipc, "--chdir", work]
    if os.geteuid() == 0:  # drop root: a dedicated uid, no capabilities, no way back
        argv += ["--", "setpriv", f"--reuid={config['uid']}", f"--regid={config['uid']}", "--clear-groups",
                 "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    return [*argv, "--", *command]


def sandbox_env(environ: dict[str, str]) -> dict[str, str]:
    """Only the variables a lab needs; HOME and caches point into the private /tmp."""
    env = {k: v for k, v in environ.items() if k in KEPT_ENV or k.startswith(KEPT_PREFIXES)}
    env.update(HOME="/tmp", MPLCONFIGDIR="/tmp/matplotlib", JUPYTER_RUNTIME_DIR="/tmp/jupyter",
               XDG_CACHE_HOME="/tmp/cache", PYTHONDONTWRITEBYTECODE="1")
    return env


def launch(config_path: str, connection_file: str) -> None:
    """Kernel spec entry point: copy the connection file where the kernel can read it, set limits, exec."""
    config = json.loads(Path(config_path).read_text())
    conn = Path(config["ipc"]) / "connection.json"
    shutil.copy(connection_file, conn)
    if os.geteuid() == 0:
        os.chown(conn, config["uid"], config["uid"])
    limits = [(resource.RLIMIT_AS, config["mem_bytes"]), (resource.RLIMIT_FSIZE, FILE_BYTES), (resource.RLIMIT_CORE, 0)]
    if os.geteuid() == 0:  # the kernel gets its own uid; as another user NPROC would count all of theirs
        limits.append((resource.RLIMIT_NPROC, MAX_PROCESSES))
    for limit, value in limits:
        resource.setrlimit(limit, (value, value))
    argv = bwrap_argv(config, [config["python"], "-m", "ipykernel_launcher", "-f", str(conn)])
    os.execvpe(argv[0], argv, sandbox_env(dict(os.environ)))


if __name__ == "__main__":
    launch(sys.argv[1], sys.argv[2])
