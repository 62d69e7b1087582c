"""The resumable epoch loop the four training loops share (docs/resume.md#the-epoch-runner).

`EpochRunner` owns what every loop used to write for itself: the checkpoint (its fingerprint,
loading, restoring, the snapshot after an epoch or at a stop request), the stop signals, the
finite-loss guard, dvclive (opened on rank 0, the logged history replayed on resume), the
values logged so far (`log`, any JSON value the loop chooses), the progress line per epoch
and, given the steps per epoch, the progress within one and the projected cost. A loop
says what one epoch does; inside it, it calls

- `begin_epoch(fresh)` for the epoch's running sums (a resumed epoch's, or `fresh()`),
- `step_done(epoch, partial)` after every step (a stop request checkpoints `partial()`, the
  epoch so far, and ends the run with `Interrupted`),
- `end_epoch(epoch)` once the steps are done (the loss guard's verdict),

and returns the epoch's values for the progress line. Under torchrun rank 0 alone reads and
writes files; every rank resumes from rank 0's checkpoint.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from dnas import distributed as dist
from dnas.checkpoint import Checkpointer, capture, keep_finished_run, restore, stop_on_signals
from dnas.io import check_writable
from dnas.runtime import EpochProgress, FiniteLossGuard, StepProgress, is_overflow
from dvclive import Live


class EpochRunner:
    """Runs `epochs` epochs of a loop, resumably. `stateful` maps names to objects with
    `state_dict`/`load_state_dict` (model, optimisers, schedulers, loaders, generators); `log`
    is what the loop logs, saved in the checkpoint as JSON; `extra(epoch)` adds entries of the
    loop's own to every snapshot."""

    def __init__(
        self,
        stage: str,
        epochs: int,
        device: torch.device,
        hint: str,
        live_dir: str | Path,
        checkpoint_dir: str | Path | None,
        every: int,
        fingerprint: str,
        stateful: dict[str, Any],
        log: Any,
        extra: Callable[[int], dict] = lambda epoch: {},
        steps: int = 0,
    ) -> None:
        self.stage, self.epochs, self.live_dir = stage, epochs, live_dir
        self.stateful, self.log, self.extra = stateful, log, extra
        self.guard = FiniteLossGuard(device, stage, hint)
        # The ranks hold the same run, and rank 0 its checkpoint (several machines).
        dist.check_same_run(fingerprint, checkpoint_dir)
        # Rank 0 alone reads and writes files.
        directory = checkpoint_dir if dist.is_main() else None
        self.checkpointer = Checkpointer(directory, fingerprint, every)
        self.start, self.partial = 0, None  # first epoch; sums of an interrupted one
        self.seconds: list[float] = []  # wall time of each epoch run here
        self.live = None
        self.stop = None
        self.steps = steps  # steps per epoch, for the progress and cost lines (0: none)
        self.step_progress: StepProgress | None = None

    def load(self) -> dict | None:
        """The checkpoint to resume from (rank 0's, on every rank), not yet restored."""
        return dist.broadcast_object(self.checkpointer.load())

    def restore(self, state: dict | None) -> None:
        """Restore `stateful`, the log and the position in the run from a loaded state."""
        if state is None:
            return
        if dist.is_main():
            self.checkpointer.restore(self.stateful, state, self.stage)
        else:
            restore(self.stateful, state)
            if state["epoch_state"] is not None:  # rank 0 holds the interrupted epoch's sums
                state["epoch_state"]["sums"].zero_()
        self.log = json.loads(state["log"])
        self.start, self.partial = state["epoch"], state["epoch_state"]

    def resume(self) -> dict | None:
        state = self.load()
        self.restore(state)
        return state

    @property
    def mid_epoch(self) -> bool:
        """Whether the next epoch is one a stop request interrupted."""
        return self.partial is not None

    def snapshot(self, epoch: int, partial: dict | None) -> dict:
        return {
            **capture(self.stateful),
            "log": json.dumps(self.log),
            "epoch": epoch,
            "epoch_state": partial,
            **self.extra(epoch),
        }

    def begin_epoch(self, fresh: Callable[[], dict]) -> dict:
        """The epoch's running state: the interrupted epoch's, or `fresh()` (guard reset)."""
        if self.partial is None:
            self.partial = fresh()
            self.guard.reset()
        else:
            self.guard.load_state_dict(self.partial["guard"])
        return self.partial

    def step_done(self, epoch: int, partial: Callable[[], dict]) -> None:
        """After a step: on a stop request, save the epoch so far (`partial()`) and stop."""
        if self.step_progress is not None:
            self.step_progress.step(epoch, self.guard.step)
        if self.stop:
            dist.agree_on_guard(self.guard)
            state = {**partial(), "guard": self.guard.state_dict()}
            raise self.checkpointer.interrupt(functools.partial(self.snapshot, epoch, state))

    def end_epoch(self, epoch: int) -> None:
        """After the last step: stop with a clear message if a loss was not finite."""
        if self.step_progress is not None:
            self.step_progress.end_epoch(epoch)
        dist.agree_on_guard(self.guard)
        self.guard.check(epoch)

    def run(self, epoch_fn: Callable[[int], dict], replay: Callable[[Any], None]) -> None:
        """`replay(live)` logs a resumed run's history again (so the files come out the same);
        then `epoch_fn(epoch)` runs each remaining epoch, logs it to `self.live` and returns
        its values for the progress line; a checkpoint follows when one is due."""
        live = (
            Live(str(self.live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
            if dist.is_main()
            else dist.NullLive()
        )
        with live, stop_on_signals() as request:
            request.announce = self.stage  # the handler's line names the stage
            self.live, self.stop = live, dist.agreed_stop(request)
            replay(live)
            quiet = not dist.is_main()
            progress = EpochProgress(self.epochs, self.stage, start=self.start, quiet=quiet)
            self.step_progress = StepProgress(
                self.stage, self.epochs, self.steps, start=self.start, quiet=quiet
            )
            for epoch in progress:
                began = time.perf_counter()
                try:
                    values = epoch_fn(epoch)
                except RuntimeError as exc:
                    if is_overflow(exc):
                        raise self.guard.overflow(epoch, exc) from None
                    raise
                progress.report(epoch, values)
                self.partial = None
                snapshot = functools.partial(self.snapshot, epoch + 1, None)
                self.checkpointer.after_epoch(epoch, self.epochs, snapshot)
                self.seconds.append(time.perf_counter() - began)


def to_cpu(state: dict) -> dict:
    """A copy of `state` with its tensors on the CPU (an epoch's partial state to checkpoint)."""
    return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def log_values(live: Live, values: dict) -> None:
    """One epoch's values to dvclive (the retraining loops; the searches add plots)."""
    for name, value in values.items():
        live.log_metric(name, value)
    live.next_step()


@contextlib.contextmanager
def stage_run(stage: str, outputs: Iterable[str]) -> Iterator[bool]:
    """Around a training stage's run (`search`, `train`) and the writing of its outputs. On
    rank 0, first check that `checkpoints/<stage>`, `dvclive/<stage>` and `outputs` can be
    written (a read-only or full directory stops here, not after the first epoch); and if the
    block fails once the run has finished (a full disk at the output writes), keep the finished
    run, so the rerun writes the outputs without training again (`keep_finished_run`). Yields
    whether this process writes the outputs (rank 0)."""
    main = dist.is_main()
    checkpoints = f"checkpoints/{stage}"
    if main:
        check_writable(checkpoints, f"dvclive/{stage}", *outputs)
    with keep_finished_run(checkpoints if main else None):
        yield main
