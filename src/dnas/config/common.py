"""The `common` section: seed, device, threads, checkpoints and the speed switches."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    field_validator,
)

from dnas.config.base import (
    PositiveInt,
    Section,
    Seed,
    _short_repr,
)

# torch starts this many threads when asked: a count past any machine's cores only costs memory
# and start-up (100,000 threads exhaust a process), so it is refused.
MAX_THREADS = 1024


class Common(Section):
    seed: Seed = 0
    # torch's CPU threads per process (torch.set_num_threads, dnas.runtime.pick_device); auto =
    # torch's own default, one per core. 1 measured fastest on a shared 2-core CPU
    # (docs/speed.md#threads); other counts can change the last digits of results.
    threads: PositiveInt | Literal["auto"] = 1
    # auto | cpu | cuda | cuda:N (GPU N: one GPU per queued experiment, README "Many GPUs")
    device: str = "auto"
    # Save a resumable checkpoint every this many epochs (and on SIGTERM / SIGINT).
    checkpoint_every: PositiveInt = 1
    # The fast path (docs/speed.md, dnas.runtime.FastPath): auto = on with CUDA, off on
    # the CPU, where the outputs stay byte-identical to the plain path.
    compile: bool | Literal["auto"] = "auto"  # torch.compile the retrained network
    bf16: bool | Literal["auto"] = "auto"  # bfloat16 autocast in search and retraining
    channels_last: bool | Literal["auto"] = "auto"  # NHWC memory layout
    cudnn_benchmark: bool | Literal["auto"] = "auto"  # cuDNN autotuning

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:  # one message, not one per member of the union
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if value == "auto" or (type(value) is int and 1 <= value <= MAX_THREADS):
            return value
        raise ValueError(
            f"{_short_repr(value)} is not a thread count; expected 1, 2, ... {MAX_THREADS} or auto"
        )

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device):
            return device
        raise ValueError("Input should be 'auto', 'cpu' or 'cuda' (or cuda:N for GPU N)")
