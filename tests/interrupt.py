"""Test helpers shared by the resume tests: files of a directory, and a fake stop request that
interrupts a loop after a given number of steps."""

from contextlib import contextmanager
from pathlib import Path

from dnas import runner


def files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


class StopAfter:
    """A stop request that turns true after `n` checks (one check per step)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __bool__(self) -> bool:
        self.n -= 1
        return self.n < 0


def interrupt_at(monkeypatch, module, step: int) -> None:
    """Stop the next run of `module`'s loop after `step` steps. Every loop takes its stop
    requests from the epoch runner (dnas.runner), so that is where the fake goes."""
    assert module.EpochRunner is runner.EpochRunner, f"{module.__name__} runs no EpochRunner"

    @contextmanager
    def fake():
        yield StopAfter(step)

    monkeypatch.setattr(runner, "stop_on_signals", fake)
