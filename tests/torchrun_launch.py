"""Launching torchrun from the tests (test_ddp.py, test_multinode.py): two processes on this
machine, each with this checkout's code and one thread (`tests.pipeline_copy.checkout_env`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.pipeline_copy import checkout_env


def standalone(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node=2 ARGS` in `cwd`, finished (its output
    captured as text) within `timeout` seconds."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    return subprocess.run(
        [*cmd, *args], cwd=cwd, env=checkout_env(), capture_output=True, text=True, timeout=timeout
    )
