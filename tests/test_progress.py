"""Progress within an epoch, the projected cost after the first steps, the stage log file, and
`common.threads`."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnas import runtime
from dnas.config import parse_params
from dnas.errors import UserError, stage_log
from dnas.runtime import StepProgress

ROOT = Path(__file__).resolve().parents[1]
PROJECTION = re.compile(
    r"^(\w+): ~([\d.e+-]+) s/step, epoch ~([\d.]+) (s|min|h) \((\d+) steps\), stage ~([\d.]+) "
    r"(s|min|h) \((\d+) epochs, ~[\d.]+ (?:s|min|h) left; projected after (\d+) steps\)$"
)


class Clock:
    """A fake `time.perf_counter`: each step takes `step_s` seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


def test_projection_after_the_first_steps(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(runtime.time, "perf_counter", clock)
    progress = StepProgress("search", epochs=20, steps=46, start=0)
    clock.now += 30.0  # the first step: warm-up, left out
    progress.step(0, 1)
    assert capsys.readouterr().out == ""
    for done in range(2, 7):
        clock.now += 1.2
        progress.step(0, done)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    m = PROJECTION.match(lines[0])
    assert m, lines[0]
    assert m[1] == "search" and float(m[2]) == pytest.approx(1.2)
    assert _seconds(m[3], m[4]) == pytest.approx(1.2 * 46, rel=0.05) and m[5] == "46"
    assert _seconds(m[6], m[7]) == pytest.approx(1.2 * 46 * 20, rel=0.05)
    assert m[8] == "20" and m[9] == "5"
    for done in range(7, 47):  # once only
        clock.now += 1.2
        progress.step(0, done)
    progress.end_epoch(0)
    assert capsys.readouterr().out == ""


def test_projection_at_the_end_of_a_short_first_epoch(monkeypatch, capsys):
    clock = Clock()
    monkeypatch.setattr(runtime.time, "perf_counter", clock)
    progress = StepProgress("train", epochs=4, steps=3, start=1)  # resumed at epoch 2
    for done in (1, 2, 3):
        clock.now += 0.5
        progress.step(1, done)
    progress.end_epoch(1)
    m = PROJECTION.match(capsys.readouterr().out.strip())
    assert m and m[1] == "train" and float(m[2]) == pytest.approx(0.5)
    assert m[8] == "3" and m[9] == "2"  # 3 epochs in this run; 2 steps timed


def test_quiet_progress_prints_nothing(capsys):
    progress = StepProgress("search", 2, 5, quiet=True)
    for done in range(1, 6):
        progress.step(0, done)
    progress.end_epoch(0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_off_a_terminal_progress_lines_are_spaced(monkeypatch, capsys):
    """Off a terminal, a bar line (step of total, elapsed, ETA) once an epoch has run the
    interval, each on a line of its own, and none for a fast epoch."""
    import time

    monkeypatch.setattr(StepProgress, "OFF_TTY_INTERVAL", 0.2)
    progress = StepProgress("search", 2, 12)
    for done in range(1, 13):
        time.sleep(0.05)
        progress.step(0, done)
    progress.end_epoch(0)
    err = capsys.readouterr().err
    lines = [line for line in err.split("\n") if line]
    assert 1 <= len(lines) <= 4, err
    assert "\r" not in err
    bar = re.compile(r"^search epoch 1/2: +\d+%.*\| *(\d+)/12 \[(\d\d:\d\d)<(\d\d:\d\d)")
    assert all(bar.match(line) for line in lines), lines
    monkeypatch.setattr(StepProgress, "OFF_TTY_INTERVAL", 60.0)
    progress = StepProgress("search", 2, 12)
    for done in range(1, 13):
        progress.step(1, done)
    progress.end_epoch(1)
    assert capsys.readouterr().err == ""


def test_a_search_prints_its_projection(tmp_path, digits_prepared, capsys):
    """The real loop: the epoch runner is given the steps per epoch, and the line comes out."""
    from dnas.search.loop import run_search

    p = parse_params({"search": {"epochs": 1, "channels": 2, "layers": 3, "batch_size": 96}})
    data = dataclasses.replace(digits_prepared)
    run_search(p, data, torch.device("cpu"), tmp_path / "live")
    out = capsys.readouterr().out
    steps = -(-len(data.card["splits"]["search_train"]) // 96)
    m = next(filter(None, map(PROJECTION.match, out.splitlines())), None)
    assert m, out
    assert m[1] == "search" and int(m[5]) == steps and m[8] == "1"


def test_language_model_retraining_prints_its_projection(tmp_path, capsys):
    """The language-model loop counts its steps as the stream's length over bptt."""
    import math

    from dnas.data.tokens import token_stream
    from dnas.spaces.published import PUBLISHED
    from dnas.train.lm import run_lm_train
    from tests.test_rnn import tiny_corpus, tiny_params

    corpus = tiny_corpus(tmp_path / "text")
    p = tiny_params(train__epochs=1)
    run_lm_train(p, PUBLISHED["GDAS_RNN"].genotype, corpus, torch.device("cpu"), tmp_path / "l")
    out = capsys.readouterr().out
    m = next(filter(None, map(PROJECTION.match, out.splitlines())), None)
    assert m, out
    stream = token_stream(corpus, "train", p.train.batch_size, torch.device("cpu"))
    assert m[1] == "train" and m[8] == "1"
    assert int(m[5]) == math.ceil((stream.shape[0] - 2) / p.train.rnn.bptt)


def test_stage_log_copies_lines_with_timestamps(tmp_path):
    out = io.StringIO()
    real = sys.stdout
    sys.stdout = out
    try:
        with stage_log("search", str(tmp_path / "logs")):
            print("search epoch 1/2 acc=1")
            sys.stdout.write("bar 1/9\rbar 2/9\rbar 9/9\r")  # a progress bar's redraws
            print("done", end="")
            print()
    finally:
        sys.stdout = real
    assert out.getvalue().startswith("search epoch 1/2 acc=1\nbar 1/9\r")  # passed through
    lines = (tmp_path / "logs" / "search.log").read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
    assert all(re.match(stamp, line) for line in lines), lines
    text = [line[21:] for line in lines]
    assert text[0].startswith("--- search started") and text[-1] == "--- search done"
    # one redraw of the bar, not three: redraws are copied at most every 20 s
    assert text[1:-1] == ["search epoch 1/2 acc=1", "bar 1/9", "done"]


def _run_stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_a_stage_run_writes_its_log(tmp_path):
    """`python -m stages.validate` with a bad value: the one error line on stderr, and the same
    line, timestamped, in logs/validate.log, appended after what was there."""
    (tmp_path / "params.yaml").write_text("common:\n  threads: 0\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "validate.log").write_text("an earlier run\n")
    done = _run_stage(tmp_path, "stages.validate", "--out", "data/params.ok")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: params.yaml: common.threads: 0 is not a thread count")
    lines = (tmp_path / "logs" / "validate.log").read_text().splitlines()
    assert lines[0] == "an earlier run" and "--- validate started" in lines[1]
    assert lines[2].endswith(" " + done.stderr.strip())
    assert lines[-1].endswith("--- validate exit status 2")


@pytest.mark.parametrize("value", [0, -1, "two", 1.5, True])
def test_bad_threads_is_one_message(value):
    pattern = r"^params: common.threads: .* expected 1, 2, ... 1024 or auto$"
    with pytest.raises(UserError, match=pattern):
        parse_params({"common": {"threads": value}})


def test_threads_are_set_by_pick_device():
    before = torch.get_num_threads()
    try:
        assert parse_params({}).common.threads == 1  # the default, as in params.yaml
        assert parse_params({"common": {"threads": "auto"}}).common.threads == "auto"
        runtime.pick_device("cpu", 2)
        assert torch.get_num_threads() == 2
        runtime.pick_device("cpu", "auto")  # auto: torch's own count, left as it is
        assert torch.get_num_threads() == 2
        runtime.pick_device("cpu", 1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
