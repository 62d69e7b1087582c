"""Checkpoints that resume a run exactly, and refuse to resume the wrong one.

A checkpoint holds everything the rest of the run depends on: model and optimiser states,
schedulers, architecture parameters, every random generator (Python, NumPy, torch CPU and
CUDA, the Gumbel sampler, each data loader with its permutation and position), the values
logged so far, and a fingerprint of the params and data it belongs to. A checkpoint with
another fingerprint (stale) or one that cannot be read (corrupt) is moved to
`checkpoints/set-aside/` with a message and never resumed from; a finished run's checkpoint
is not resumed either, so a rerun forced by a code change starts from scratch.

Checkpoints are written every `common.checkpoint_every` epochs and when SIGTERM or SIGINT
arrives (at the next step boundary), always to a temporary name and renamed, so a kill at any
moment leaves the previous checkpoint intact. Loading uses `torch.load(weights_only=True)`.

A run that finished but could not write its outputs (a full disk at the model save) is not
thrown away: `keep_finished_run` renames its complete checkpoint to `finished.pt`, and the
rerun takes the result from there instead of training again (docs/failure-modes.md).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import pickle
import random
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from dnas.errors import UserError, check_torch_floor, unpickling_reason
from dnas.io import write_bytes

FINISHED = "finished.pt"  # a finished run whose outputs were not written
_finished_here: set[Path] = set()  # complete checkpoints written by this process


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-able parts: the one way a checkpoint's fingerprint is made
    (`run_fingerprint` gives it a run's parts)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def changed_settings(section: Any) -> dict:
    """A params section's values that differ from its defaults, nested sections included (a
    knob at its default is left out, so a knob added later, whose default keeps the old
    behaviour, leaves every earlier checkpoint's fingerprint as it was)."""
    defaults = type(section)()
    out: dict = {}
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            inner = changed_settings(value)
            if inner:
                out[name] = inner
        elif value != getattr(defaults, name):
            out[name] = value
    return out


# Knobs whose default itself changed what a run computes: always in the fingerprint, also at
# their default, so a checkpoint of a run under the old default (which left them out) is not
# resumed by a run under the new one (search: the alphas' step falls by a cosine without decay
# since 2026-12-05; before, a constant step with decay 1e-3).
DEFAULTS_CHANGED = {"search": ("arch_lr_schedule", "arch_weight_decay")}


def run_fingerprint(p: Any, section: str, data_sha: str, *extra: Any, leave_out=()) -> str:
    """The fingerprint of a search or retraining run (docs/resume.md#the-fingerprint): the
    seed, the section's changed settings (and DEFAULTS_CHANGED's knobs) less `leave_out` (what
    only adds to the outputs), the data's checksum and `extra` (the cells a retraining trains,
    ...)."""
    settings = changed_settings(getattr(p, section))
    for key in DEFAULTS_CHANGED.get(section, ()):
        settings.setdefault(key, getattr(getattr(p, section), key))
    for key in leave_out:
        settings.pop(key, None)
    return fingerprint(p.common.seed, section, settings, data_sha, *extra)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GeneratorState:
    """A torch.Generator seen through the state_dict interface of modules and optimisers."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state_dict(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def capture(stateful: dict[str, Any]) -> dict:
    """The states of named objects with `state_dict()`, plus the global random generators."""
    return {**{name: obj.state_dict() for name, obj in stateful.items()}, "rng": rng_state()}


def restore(stateful: dict[str, Any], state: dict) -> None:
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
    set_rng_state(state["rng"])


class Checkpointer:
    """Saves and loads `directory/last.pt`; with `directory` None it keeps nothing, so the
    loops need no separate path for runs that do not checkpoint."""

    def __init__(self, directory: str | Path | None, fingerprint: str, every: int) -> None:
        self.path = None if directory is None else Path(directory) / "last.pt"
        self.fingerprint = fingerprint
        self.every = every
        self.set_aside: list[Path] = []  # where this run moved unusable checkpoints

    @property
    def aside_dir(self) -> Path:
        """Where unusable checkpoints go: beside, not inside, the directory DVC tracks."""
        return self.path.parent.parent / "set-aside"

    def _set_aside(self, suffix: str, why: str, path: Path | None = None, tag: str = "") -> None:
        """Move `path` (default last.pt) to a name of its own in `aside_dir`, never over an
        earlier one: `<stage>.<suffix>[.<tag>].pt`, then `.2`, `.3`, ... (`tag`: the
        checkpoint's fingerprint, when it has one)."""
        path = self.path if path is None else path
        self.aside_dir.mkdir(parents=True, exist_ok=True)
        stem = ".".join(x for x in (path.parent.name, suffix, tag) if x)
        for n in itertools.count(1):
            target = self.aside_dir / (f"{stem}.pt" if n == 1 else f"{stem}.{n}.pt")
            if _move_no_clobber(path, target):
                break
        self.set_aside.append(target)
        print(f"checkpoint {path} {why}; moved to {target}", file=sys.stderr)

    def _read(self, path: Path) -> dict | None:
        """The state in `path` if it belongs to this run; unusable files are set aside."""
        check_torch_floor()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or "fingerprint" not in state:
                raise ValueError("not a dnas checkpoint")
        except (RuntimeError, ValueError, EOFError, OSError, pickle.UnpicklingError) as exc:
            self._set_aside("corrupt", f"is unreadable ({unpickling_reason(exc)})", path)
            return None
        if state["fingerprint"] != self.fingerprint:
            tag = re.sub(r"[^0-9A-Za-z]", "", str(state["fingerprint"]))[:16]
            self._set_aside("stale", "belongs to other params or data", path, tag)
            return None
        return state

    def load(self) -> dict | None:
        """The state to resume from, or None to start from scratch. A finished run kept by
        `keep_finished_run` comes first: its state has epoch = the last, so nothing retrains.
        When a checkpoint was set aside, the last line says what happens instead: resuming
        (printed by `restore`) or starting from scratch."""
        state = self._load()
        if state is None and self.set_aside:
            print(f"{self.path.parent.name}: starting from scratch", file=sys.stderr)
        return state

    def _load(self) -> dict | None:
        if self.path is None:
            return None
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink()  # a write cut short by SIGKILL
        finished = self.path.with_name(FINISHED)
        if finished.is_file():
            state = self._read(finished)
            if state is not None and state.get("complete"):
                return state
            if state is not None:  # not complete: never written by keep_finished_run
                self._set_aside("stale", "is not a finished run", finished)
        if not self.path.is_file():
            return None
        state = self._read(self.path)
        if state is None or state.get("complete"):
            return None
        return state

    def save(self, state: dict, complete: bool = False) -> None:
        if self.path is None:
            return
        state = _canonical({**state, "fingerprint": self.fingerprint, "complete": complete})
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_bytes(self.path, buffer.getvalue())
        if complete:
            _finished_here.add(self.path.resolve())

    def restore(self, stateful: dict[str, Any], state: dict, stage: str) -> None:
        """Restore `stateful` from a state `load()` returned."""
        restore(stateful, state)
        if state.get("complete"):
            where = self.path.with_name(FINISHED)
            print(f"{stage}: the run in {where} finished; writing its outputs", file=sys.stderr)
            return
        print(f"{stage}: resuming at epoch {state['epoch'] + 1} from {self.path}", file=sys.stderr)

    def after_epoch(self, epoch: int, epochs: int, snapshot: Callable[[], dict]) -> None:
        """Checkpoint after epoch index `epoch` if one is due; the last one marks the run done."""
        last = epoch + 1 == epochs
        if (epoch + 1) % self.every == 0 or last:
            self.save(snapshot(), complete=last)

    def interrupt(self, snapshot: Callable[[], dict]) -> Interrupted:
        """Save a mid-epoch checkpoint; return the error that stops the run."""
        self.save(snapshot())
        return Interrupted(self.path)


def _move_no_clobber(source: Path, target: Path) -> bool:
    """Move `source` to `target` unless `target` exists (then False). A hard link fails on an
    existing name atomically; where links are not supported, check first."""
    try:
        os.link(source, target)
    except FileExistsError:
        return False
    except OSError:
        if target.exists():
            return False
        source.replace(target)
        return True
    source.unlink()
    return True


@contextmanager
def keep_finished_run(directory: str | Path | None) -> Iterator[None]:
    """Around a stage's run and the writing of its outputs: if the block fails after this
    process wrote the run's complete checkpoint (e.g. the disk filled at the model save), keep
    that checkpoint as `directory/finished.pt`, from which the rerun takes the result without
    training again. When the block succeeds, a finished.pt it used goes back to last.pt."""
    if directory is None:
        yield
        return
    last = Path(directory) / "last.pt"
    finished = last.with_name(FINISHED)
    try:
        yield
    except BaseException as exc:
        if last.resolve() in _finished_here and last.is_file():
            try:
                last.replace(finished)
            except OSError:
                raise exc from None
            if isinstance(exc, UserError):
                raise UserError(
                    f"{exc}; the finished run is kept in {finished}, so the rerun writes the "
                    "outputs without training again"
                ) from None
        raise
    else:
        if finished.is_file():
            finished.replace(last)


def _canonical(obj: Any) -> Any:
    """Rebuild containers with interned strings. Pickle shares repeated objects by identity, so
    without this a resumed run (whose optimiser keys came from a loaded file) would write other
    bytes than an uninterrupted one for the same state."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        return {_canonical(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_canonical(v) for v in obj)
    return obj


class Interrupted(UserError):
    """Stopped by a signal after saving a checkpoint."""

    def __init__(self, path: Path | None) -> None:
        if path is None:
            super().__init__("interrupted (this run was not checkpointing)")
        else:
            super().__init__(f"interrupted; checkpoint saved to {path}: run `dvc repro` to resume")


class StopRequest:
    """Set by SIGTERM or SIGINT; the loops check it between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.announce = ""  # who stops, for the line the handler prints

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Record SIGTERM / SIGINT in the request the loops check between steps. The handler says
    at once on stderr that the stop was received (prefixed by `request.announce`, the stage),
    since the step under way may take a while to finish on a busy machine."""
    request = StopRequest()

    def handler(signum, _frame):
        if request.signal is None:
            name = signal.Signals(signum).name
            who = f"{request.announce}: " if request.announce else ""
            line = f"{who}stop requested ({name}); finishing the current step, then stopping\n"
            try:  # os.write: a print here could re-enter a print under way
                os.write(sys.stderr.fileno(), line.encode())
            except (OSError, ValueError):
                pass
        request.signal = signum

    if threading.current_thread() is not threading.main_thread():
        yield request  # signal handlers can only be installed in the main thread
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
