"""The fast path of `common` (compile, bf16, channels_last, cudnn_benchmark): what `auto`
means per device, that compile and channels-last compute the same training as the plain path,
and that the whole fast path trains to the same accuracy within seed noise.

torch.compile runs with the aot_eager backend here: it captures and differentiates the graph as
inductor does, without inductor's minutes of C++ code generation on a CPU (bench/ runs
inductor)."""

import statistics

import pytest
import torch

from dnas import runtime
from dnas.config import Common, parse_params
from dnas.errors import UserError
from dnas.runtime import FastPath
from dnas.spaces.published import resolve_genotype
from dnas.train.loop import run_train

SWITCHES = ("compile", "bf16", "channels_last", "cudnn_benchmark")
ARCH = (
    "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|"
    "+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|"
)
CPU = torch.device("cpu")


def test_auto_is_on_for_cuda_and_off_for_the_cpu():
    auto = Common()
    assert FastPath.resolve(auto, CPU) == FastPath(False, False, False, False)
    # resolving needs no GPU: only the device's type matters
    assert FastPath.resolve(auto, torch.device("cuda")) == FastPath(True, True, True, True)
    forced = Common(**{name: True for name in SWITCHES})
    assert FastPath.resolve(forced, CPU) == FastPath(True, True, True, True)
    off = Common(**{name: False for name in SWITCHES})
    assert FastPath.resolve(off, torch.device("cuda")) == FastPath(False, False, False, False)


def test_a_bad_switch_names_the_key():
    with pytest.raises(UserError, match=r"common\.bf16"):
        parse_params({"common": {"bf16": "fast"}})


def test_channels_last_inputs_and_weights():
    fast = FastPath(channels_last=True)
    conv = fast.model(torch.nn.Conv2d(3, 8, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.inputs(torch.zeros(2, 3, 4, 4)).is_contiguous(memory_format=torch.channels_last)
    assert FastPath().inputs(torch.zeros(2, 3, 4, 4)).is_contiguous()


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "aot_eager")


def _train(data, tmp_path, seed: int, epochs: int, **switches):
    common = {"seed": seed, **{name: False for name in SWITCHES}, **switches}
    train = {"epochs": epochs, "channels": 8, "layers": 1, "batch_size": 64, "lr": 0.05}
    p = parse_params({"common": common, "train": train})
    live = tmp_path / f"live-{seed}-{epochs}-{sorted(k for k, v in switches.items() if v)}"
    return run_train(p, resolve_genotype(ARCH, "-"), data, CPU, live)[2]


def test_compile_and_channels_last_compute_the_same_training(aot_eager, digits_prepared, tmp_path):
    plain = _train(digits_prepared, tmp_path, 0, 1)
    fast = _train(digits_prepared, tmp_path, 0, 1, compile=True, channels_last=True)
    # float32 throughout: only the order of floating-point sums differs, so the epoch's mean
    # training loss (over 1437 images, 23 steps) agrees closely (measured: 5e-5 relative with
    # one thread, 3e-3 with two, as the rounding differences compound over the steps).
    # Accuracies after one epoch are sensitive: rounding moves images across the argmax.
    assert fast["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-2)
    assert fast["train_acc"] == pytest.approx(plain["train_acc"], abs=1.5)  # 21 of 1437


def test_fast_path_reaches_the_same_accuracy_within_seed_noise(
    aot_eager, digits_prepared, tmp_path
):
    plain = [_train(digits_prepared, tmp_path, seed, 5)["test_acc"] for seed in (0, 1, 2)]
    on = {name: True for name in SWITCHES}
    fast = _train(digits_prepared, tmp_path, 0, 5, **on)["test_acc"]
    assert min(plain) > 90 and fast > 90  # both learn: chance is 10%
    # One new run against three plain seeds: within three standard deviations of the plain
    # runs' spread (a prediction interval), never tighter than the test set's binomial error.
    n_test = len(digits_prepared.test_y)
    mean = statistics.mean(plain)
    binomial = 100 * (mean / 100 * (1 - mean / 100) / n_test) ** 0.5
    spread = max(statistics.stdev(plain), binomial) * (1 + 1 / len(plain)) ** 0.5
    assert abs(fast - mean) <= 3 * spread, (fast, plain)


def test_device_may_name_a_gpu():
    assert parse_params({"common": {"device": "cuda:1"}}).common.device == "cuda:1"
    for bad in ("gpu1", "cuda:", "cuda:x"):
        with pytest.raises(UserError, match=r"common\.device.*cuda:N"):
            parse_params({"common": {"device": bad}})
