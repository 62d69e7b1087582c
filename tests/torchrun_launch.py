"""Launching torchrun from the tests (test_ddp.py, test_multinode.py): the environment its
processes run in, and the launch of two processes on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker_env() -> dict[str, str]:
    """This process's environment, with this checkout's code importable (`dnas`, `stages`,
    `tests`), one thread per process and no DVC analytics."""
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "DVC_NO_ANALYTICS": "1",
    }


def standalone(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node=2 ARGS` in `cwd`, finished (its output
    captured as text) within `timeout` seconds."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=worker_env(), capture_output=True, text=True, timeout=timeout
    )
