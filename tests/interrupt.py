"""Test helpers shared by the resume tests: files of a directory, and a fake stop request that
interrupts a loop after a given number of steps."""

from contextlib import contextmanager
from pathlib import Path


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
    @contextmanager
    def fake():
        yield StopAfter(step)

    monkeypatch.setattr(module, "stop_on_signals", fake)
