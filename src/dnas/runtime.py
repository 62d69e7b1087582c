"""Run-time choices shared by the stages: seeding, the device and CPU threads, the fast path,
and progress output."""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from dnas.errors import UserError, first_line


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(threads: int | str) -> int:
    """Set torch's intra-op CPU threads (`common.threads`): a count, or `auto` for torch's own
    default (one per core, or OMP_NUM_THREADS). Returns the count in force. On a shared CPU
    one thread measured fastest: the threads of a step wait for each other at every op, and
    each wait is as long as the slowest thread's time slice (docs/speed.md#threads)."""
    if threads != "auto":
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def pick_device(name: str, threads: int | str | None = None) -> torch.device:
    """`auto` takes CUDA when there is a GPU, else the CPU; `cuda` (GPU 0) or `cuda:N` without
    that GPU is an error. With `threads` (`common.threads`), also set torch's CPU threads: every
    stage that computes calls this first.
    Under torchrun each process takes the GPU of its local rank (dnas.distributed)."""
    from dnas import distributed

    if threads is not None:
        set_threads(threads)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"common.device = {name!r} but no CUDA GPU is visible; use auto or cpu")
    device = torch.device(name)
    if device.type == "cuda" and distributed.world_size() > 1:
        device = torch.device("cuda", distributed.local_rank() % torch.cuda.device_count())
    elif device.type == "cuda":
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise UserError(
                f"common.device = {name!r} but only {torch.cuda.device_count()} GPUs are visible"
            )
        device = torch.device("cuda", index)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    return device


# The torch.compile backend. Tests set "aot_eager": it traces and differentiates the graph as
# inductor does, without the minutes of C++ code generation inductor takes on a CPU.
COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class FastPath:
    """The speed switches of `common` resolved for a device (docs/speed.md): each
    `auto` is on with CUDA and off on the CPU, where every switch off leaves the code path,
    and so the outputs, exactly as without them.

    - compile: `torch.compile` the static retrained network (not the supernet, whose graph
      changes with every sampled architecture: docs/architecture.md#cross-cutting-choices).
    - bf16: bfloat16 autocast of forward passes and losses; weights, gradients and optimiser
      states stay float32, and bfloat16's float32 range needs no loss scaling.
    - channels_last: NHWC weights and inputs, the layout cuDNN's convolutions run natively.
    - cudnn_benchmark: let cuDNN time its algorithms per shape (GDAS changes which op runs,
      never the shapes, so the cache warms after each op has run once).
    """

    compile: bool = False
    bf16: bool = False
    channels_last: bool = False
    cudnn_benchmark: bool = False

    @classmethod
    def resolve(cls, common, device: torch.device) -> FastPath:
        """From a `Common` params section: auto -> whether `device` is CUDA."""
        cuda = torch.device(device).type == "cuda"
        names = ("compile", "bf16", "channels_last", "cudnn_benchmark")
        values = {n: getattr(common, n) for n in names}
        return cls(**{n: cuda if v == "auto" else bool(v) for n, v in values.items()})

    def apply_backends(self, device: torch.device) -> None:
        """Set the global backend flags (cuDNN autotuning) for this run."""
        if torch.device(device).type == "cuda":
            torch.backends.cudnn.benchmark = self.cudnn_benchmark

    def autocast(self, device: torch.device):
        """A bfloat16 autocast context, or one that does nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

    def model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Put `model`'s weights in the chosen layout (in place; returns it)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def compiled(self, model: torch.nn.Module):
        """The callable to run `model` through: compiled, or `model` itself. Its weights stay
        those of `model`, so checkpoints and saved models keep their keys."""
        if not self.compile:
            return model
        return torch.compile(model, backend=COMPILE_BACKEND)


class EpochProgress:
    """Epoch indices with a progress bar on a terminal (the last epoch's numbers beside it),
    and one plain line per epoch otherwise (CI, `dvc queue logs`)."""

    def __init__(self, total: int, desc: str, start: int = 0, quiet: bool = False) -> None:
        self.total = total
        self.desc = desc
        self.start = start
        self.quiet = quiet  # the other ranks of a torchrun run: rank 0 reports
        self.bar = None
        if sys.stderr.isatty() and not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc=desc, unit="epoch", dynamic_ncols=True)

    def __iter__(self) -> Iterator[int]:
        try:
            yield from range(self.start, self.total)
        finally:
            if self.bar is not None:
                self.bar.close()

    def report(self, epoch: int, values: dict[str, float]) -> None:
        if self.quiet:
            return
        text = {k: f"{v:.4g}" for k, v in values.items()}
        if self.bar is not None:
            self.bar.set_postfix(text, refresh=False)
            self.bar.update(1)
        else:
            parts = " ".join(f"{k}={v}" for k, v in text.items())
            print(f"{self.desc} epoch {epoch + 1}/{self.total} {parts}", flush=True)


class _Lines:
    """A file for tqdm off a terminal: each refresh (tqdm writes `\\r` + the bar) becomes one
    line of its own, so a log holds one line per update, not one endless line."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.replace("\r", "\n").split("\n"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _synced_clock() -> float:
    """time.perf_counter once the GPU has finished what was queued (CUDA runs asynchronously,
    so the host's clock alone would time the launches; called twice a run)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class StepProgress:
    """Progress within an epoch (step of total, elapsed, ETA: a tqdm bar on stderr) and, once
    the first steps are timed, one line with the projected time of an epoch and of the whole
    stage, e.g. `search: ~1.2 s/step, epoch ~55 s (46 steps), stage ~18 min (20 epochs, ~18
    min left; projected after 5 steps)`.

    On a terminal the bar refreshes every half second and disappears at the epoch's end. Off a
    terminal (CI, `dvc queue logs`, logs/<stage>.log) a bar line is written only once an epoch
    has run `OFF_TTY_INTERVAL` seconds, and then at most that often, so a fast epoch adds
    nothing and a slow one a line every 20 s. The first step of the run is left out of the
    projection (allocations, cuDNN autotuning, compilation); on a GPU the clock is read after
    a synchronisation at both ends of the timed steps."""

    PROJECT_AFTER = 5  # timed steps (after the first) before the projection line
    OFF_TTY_INTERVAL = 20.0  # seconds between progress lines off a terminal

    def __init__(self, stage: str, epochs: int, steps: int, start: int = 0, quiet=False) -> None:
        self.stage, self.epochs, self.steps, self.start = stage, epochs, steps, start
        self.quiet = quiet or steps <= 0
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.epoch: int | None = None
        self.clock: float | None = None  # when the run's first step ended
        self.timed = 0  # steps since then
        self.projected = False

    def step(self, epoch: int, done: int) -> None:
        """After a step: `done` steps of `epoch` are done (a resumed epoch starts part way)."""
        if self.quiet:
            return
        if epoch != self.epoch:
            self._open(epoch, done - 1)
        self.bar.update(1)
        if self.clock is None:
            self.clock = _synced_clock()
            return
        self.timed += 1
        if not self.projected and self.timed >= self.PROJECT_AFTER:
            self.project(epoch, done, _synced_clock())

    def end_epoch(self, epoch: int) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self.quiet and not self.projected and self.timed > 0:
            self.project(epoch, self.steps, _synced_clock())
        self.epoch = None

    def project(self, epoch: int, done: int, now: float) -> None:
        self.projected = True
        per_step = (now - self.clock) / self.timed
        left = (self.epochs - epoch) * self.steps - done  # steps still to run
        epochs = self.epochs - self.start
        line = (
            f"{self.stage}: ~{per_step:.2g} s/step, epoch ~{_duration(per_step * self.steps)} "
            f"({self.steps} steps), stage ~{_duration(per_step * self.steps * epochs)} "
            f"({epochs} epochs, ~{_duration(per_step * left)} left; "
            f"projected after {self.timed} steps)"
        )
        from tqdm import tqdm

        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def _open(self, epoch: int, initial: int) -> None:
        from tqdm import tqdm

        if self.bar is not None:
            self.bar.close()
        self.epoch = epoch
        off = {} if self.tty else {"delay": self.OFF_TTY_INTERVAL, "file": _Lines(sys.stderr)}
        self.bar = tqdm(
            total=self.steps,
            initial=max(initial, 0),
            desc=f"{self.stage} epoch {epoch + 1}/{self.epochs}",
            unit="step",
            leave=False,
            dynamic_ncols=self.tty,
            mininterval=0.5 if self.tty else self.OFF_TTY_INTERVAL,
            **({"file": sys.stderr} | off),
        )


class FiniteLossGuard:
    """Notices a non-finite loss without a host sync per step: the index of the first bad
    step is kept on the device and read once, when the epoch ends."""

    def __init__(self, device: torch.device, stage: str, hint: str) -> None:
        self.device = device
        self.stage = stage
        self.hint = hint
        self.reset()

    def reset(self) -> None:
        """Start a new epoch."""
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self.step = 0

    def state_dict(self) -> dict:
        return {"first_bad": int(self.first_bad), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.first_bad = torch.full((), state["first_bad"], dtype=torch.long, device=self.device)
        self.step = state["step"]

    def observe(self, *losses: torch.Tensor) -> None:
        bad = ~torch.isfinite(torch.stack([loss.detach().float() for loss in losses])).all()
        self.first_bad = torch.where((self.first_bad < 0) & bad, self.step, self.first_bad)
        self.step += 1

    def check(self, epoch: int) -> None:
        """Raise `UserError` naming the epoch and step if a loss was inf or NaN."""
        bad = int(self.first_bad)
        if bad >= 0:
            raise UserError(
                f"{self.stage}: the loss became inf or NaN at epoch {epoch + 1}, step {bad + 1}; "
                f"stopped without writing outputs. Lower {self.hint} or check the data"
            )

    def overflow(self, epoch: int, exc: RuntimeError) -> UserError:
        """The error for a step that stopped because a value left float32's range (torch:
        `value cannot be converted to type float without overflow`, e.g. Adam's step size
        from `search.arch_lr: 1e38`): the same advice as a non-finite loss."""
        return UserError(
            f"{self.stage}: a value overflowed float32 at epoch {epoch + 1} ({first_line(exc)});"
            f" stopped without writing outputs. Lower {self.hint} or check the data"
        )


def is_overflow(exc: BaseException) -> bool:
    """Whether `exc` is torch's refusal to convert a too-large Python number to a tensor's
    type (an optimiser's step size or weight decay beyond float32)."""
    return isinstance(exc, RuntimeError) and "without overflow" in str(exc)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's failure, or Python's MemoryError."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )


@contextlib.contextmanager
def out_of_memory_hint(stage: str, sizes: Mapping[str, object]) -> Iterator[None]:
    """Turn running out of memory (building the network, or any step) into one `UserError`
    that names the params which set the size, e.g. {"search.channels": 16, ...}."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        first = first_line(exc)
        shown = ", ".join(f"{key} = {value}" for key, value in sizes.items())
        raise UserError(
            f"{stage}: out of memory ({first[:160]}); the size comes from {shown}: lower them"
        ) from None
