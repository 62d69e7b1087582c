"""Results of tiny runs of every loop, recorded from the code before the loops shared one epoch
runner (dnas.runner): the refactor must not change a bit of them. Each run gives a digest of
its genotype or weights, its metrics (less the timings) and its dvclive files; a run that is
interrupted and resumed must give the uninterrupted run's digest.

The digests are SHA-256 sums: any changed float, key or byte in the outputs changes them. When
a change to the algorithms is meant to change results, rerun `python -m tests.test_pinned` and
paste its output into PINNED (and say why in the commit)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from dnas.checkpoint import Interrupted
from dnas.config import parse_params
from dnas.io import MEASURED, dumps_json
from dnas.search import loop as search_loop
from dnas.search import rnn_loop
from dnas.spaces.published import PUBLISHED
from dnas.train import lm as train_lm
from dnas.train import loop as train_loop
from tests.interrupt import files, interrupt_at
from tests.test_rnn import tiny_corpus, tiny_params

CPU = torch.device("cpu")
TINY = {"channels": 4, "layers": 3, "batch_size": 128}
# Values the pins were recorded with where config's defaults have since moved to params.yaml's
# (the pins must not depend on defaults).
# zero_grad: the pins were recorded when the weight steps cleared gradients to None (the
# default is now zeros, the authors' behaviour, which changes the GDAS results on purpose).
# arch_lr_schedule, arch_weight_decay: the pins were recorded with the papers' constant step and
# decay, before the default's cosine step without decay.
SEARCH_AS_PINNED = {
    "arch_lr": 3.0e-4, "tau_max": 10.0, "zero_grad": "none",
    "arch_lr_schedule": "constant", "arch_weight_decay": 1.0e-3,
}  # fmt: skip
TRAIN_AS_PINNED = {"lr": 0.025}
SEARCHES = {
    "gdas": {"epochs": 3},
    "darts2": {"epochs": 2, "algorithm": "darts", "order": 2},
    "snas": {"epochs": 2, "algorithm": "snas"},
    "drnas_progressive": {
        "epochs": 4,
        "algorithm": "drnas",
        "partial_channels": [2, 1],
        "keep_ops": [3],
        "arch_warmup": 1,
    },
    # Added before the algorithms and spaces got their own homes (one module each): every
    # branch the redesign moved, recorded from the code before it.
    "gdas_zeros": {"epochs": 2, "zero_grad": "zeros"},
    "gdas_nb201": {"epochs": 2, "space": "nb201"},
    "gdas_cell_frc": {"epochs": 2, "sample_per": "cell", "fixed_reduction": True},
    "darts1": {"epochs": 2, "algorithm": "darts", "step_order": "arch_first"},
    "snas_resource": {
        "epochs": 2, "algorithm": "snas", "resource_lambda": 0.01, "tau_schedule": "snas",
        "drop_path": 0.1,
    },
    "drnas_kl_nb201": {"epochs": 2, "algorithm": "drnas", "drnas_reg": "kl", "space": "nb201"},
    "random": {"epochs": 2, "algorithm": "random", "random_samples": 4, "random_finalists": 2},
    "random_nb201": {"epochs": 2, "algorithm": "random", "space": "nb201", "random_samples": 4},
}


def machine() -> str:
    """What the bytes of a float computation depend on besides the code: the CPU (model and
    instruction-set flags: other SIMD kernels sum in another order), torch's version and its
    thread count. A short hash of them."""
    cpu = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":")[0].strip()
            if key in ("model name", "cpu family", "model", "stepping", "flags"):
                cpu.append(line)
            if not line.strip() and cpu:
                break  # the first processor is enough
    except OSError:
        import platform

        cpu.append(platform.processor())
    text = "\n".join([*cpu, torch.__version__, str(torch.get_num_threads())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# The same bytes hold on one machine only (README "Same results"): on another CPU, torch
# version or thread count the pins are skipped, and the resume tests compare an interrupted
# run with an uninterrupted one computed there.
# Re-pinned on 2026-12-05 on the project's CI machine type: the eight digests recorded on the
# first machine came out unchanged here; the rest were added from the code as it was then.
PINNED_ON = "d2c2a17f2ac2eb00"

# Recorded from the code before the refactor (see the docstring). The DARTS and DrNAS digests
# were re-pinned once, after the algorithms got their homes, when metrics/search.json stopped
# reporting a `final_tau` for algorithms without a temperature (nothing else changed: the
# GDAS, SNAS, random-search and retraining digests stayed).
PINNED: dict[str, str] = {
    "search/gdas": "0fcfa94126e4e7e290274288bb67b39f8df42d0f489d46d42eca397b85894bd3",
    "search/darts2": "b1d516b340d7ee5f9caee25a3cfccfdb6a0bf710173381814c51a5a9d15c5aae",
    "search/snas": "39d84ea6c9f5335008f157736a4d7fca03657f00fd83a74aac646f7075b0e136",
    "search/drnas_progressive": "1865b5d0824ee6d6e798f867b023c56d507ee5c9698fa5e545ec9c98dae1aaed",
    "search/gdas_zeros": "a0e618fb4277d4d0d54e73ebcdd69c8bbc6f82462c26128f24db68f638ef4650",
    "search/gdas_nb201": "7c0a7f8e87828b2cc0bdc482f83345f41d91d0fbce7798ca626b225e23e37562",
    "search/gdas_cell_frc": "c7bde9264badec1f88ea99144498339e60f71cb6be445b7aff95419756f5c213",
    "search/darts1": "56e650c681e27c7fcc436391ec7a0df70d6019480b55a5a77ea35a9ba77d567f",
    "search/snas_resource": "fbefd044bafeb20a0b776886db7750ce27f0a3ab5000e0c9fb65e09593772158",
    "search/drnas_kl_nb201": "79d5687ee4e5e60dbd5341870303b088838b7eb0e20acbdee100d36f3a50d91a",
    "search/random": "4a0eeefbb5a4c5be520e89b32bf055c13d0e1c45e6666d76f19d646e45f4301b",
    "search/random_nb201": "f724573ca3e418adf542523b6e68cf8d47eb236416f96afee162c3176e81afe4",
    "train": "c56b4a986c5f03371be612e93b53bed93f2d70a2ad34faaec53dad30d80d324a",
    "rnn_search/gdas1": "ecd31c307afd8b0893a53facbd375e75e1a6668472ee15fed8cd079f5e6443ba",
    "rnn_search/darts2": "a182628f41e07258c89152b944075aaa1bb9aad2cd344c6612770456eef68d2f",
    "rnn_search/darts1_zeros": "220726529ccd44591ab8c5d081ff3cf10312b3905f438ef16512df6e9226ba31",
    "lm_train": "53f8fd51c40faf7f94f0d7bf523c51c3714a98539910a9ba012428affb1b4d70",
}


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, dict):  # files of a directory
            for name, data in part.items():
                h.update(name.encode() + b"\0" + data + b"\0")
        else:
            h.update(part if isinstance(part, bytes) else str(part).encode())
    return h.hexdigest()


def _weights(model) -> bytes:
    return b"".join(v.detach().numpy().tobytes() for v in model.state_dict().values())


def _small(data):
    """256 examples per split: two search steps per epoch."""
    card = data.card
    splits = {k: v[:256] for k, v in card["splits"].items()}
    return dataclasses.replace(data, card={**card, "splits": splits})


# Keys the searches' metrics gained after the pins were recorded, reports about the run rather
# than results of it (issue 22: the arch_lr used, whether the cells settled): left out, so the
# pins still check that the results did not change.
ADDED_SINCE = {"arch_lr", "settled", "unchanged_epochs"}


def _metrics(metrics: dict) -> str:
    return dumps_json({k: v for k, v in metrics.items() if k != MEASURED and k not in ADDED_SINCE})


def search_digest(name: str, data, root: Path) -> str:
    search = {**TINY, **SEARCH_AS_PINNED, **SEARCHES[name]}
    params = parse_params({"search": search, "common": {"checkpoint_every": 1}})
    result = search_loop.run_search(params, data, CPU, root / "live", root / "ckpt")
    return _digest(
        dumps_json(result.genotype.to_json()), _metrics(result.metrics), files(root / "live")
    )


def train_digest(data, root: Path) -> str:
    train = {**TINY, **TRAIN_AS_PINNED, "epochs": 2, "drop_path": 0.2, "auxiliary_weight": 0.4}
    params = parse_params({"train": train, "common": {"checkpoint_every": 1}})
    model, config, metrics = train_loop.run_train(
        params, PUBLISHED["GDAS_V1"].genotype, data, CPU, root / "live", root / "ckpt"
    )
    return _digest(_weights(model), dumps_json(config), _metrics(metrics), files(root / "live"))


RNN_SEARCHES = {
    "gdas1": {"algorithm": "gdas", "order": 1},
    "darts2": {"algorithm": "darts", "order": 2},
    "darts1_zeros": {"algorithm": "darts", "order": 1, "zero_grad": "zeros"},
}


def rnn_search_digest(key: str, corpus, root: Path) -> str:
    over = {"zero_grad": "none", "arch_lr_schedule": "constant", "arch_weight_decay": 1.0e-3,
            **RNN_SEARCHES[key]}  # fmt: skip
    p = tiny_params(**{f"search__{k}": v for k, v in over.items()})
    result = rnn_loop.run_rnn_search(p, corpus, CPU, root / "live", root / "ckpt")
    return _digest(
        dumps_json(result.genotype.to_json()), _metrics(result.metrics), files(root / "live")
    )


def lm_digest(corpus, root: Path) -> str:
    p = tiny_params(train__epochs=4)
    model, config, metrics = train_lm.run_lm_train(
        p, PUBLISHED["GDAS_RNN"].genotype, corpus, CPU, root / "live", root / "ckpt"
    )
    return _digest(_weights(model), dumps_json(config), _metrics(metrics), files(root / "live"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory.mktemp("text"))


def pinned(key: str) -> str:
    if machine() != PINNED_ON:
        pytest.skip("pinned on another CPU, torch or thread count: there the committed results "
                    "agree within tolerances (.ci/same_results.py)")  # fmt: skip
    return PINNED[key]


@pytest.mark.parametrize("name", list(SEARCHES))
def test_search_results_are_pinned(tmp_path, digits_prepared, name):
    assert search_digest(name, _small(digits_prepared), tmp_path) == pinned(f"search/{name}")


def test_retraining_results_are_pinned(tmp_path, digits_prepared):
    assert train_digest(_small(digits_prepared), tmp_path) == pinned("train")


@pytest.mark.parametrize("key", list(RNN_SEARCHES))
def test_rnn_search_results_are_pinned(tmp_path, corpus, key):
    assert rnn_search_digest(key, corpus, tmp_path) == pinned(f"rnn_search/{key}")


def test_lm_retraining_results_are_pinned(tmp_path, corpus):
    assert lm_digest(corpus, tmp_path) == pinned("lm_train")


def test_interrupted_search_resumes_to_the_pinned_results(monkeypatch, tmp_path, digits_prepared):
    data = _small(digits_prepared)
    expected = PINNED["search/gdas"]
    if machine() != PINNED_ON:
        expected = search_digest("gdas", data, tmp_path / "uninterrupted")
    interrupt_at(monkeypatch, search_loop, 3)  # mid-epoch 2 (two steps an epoch)
    with pytest.raises(Interrupted, match="checkpoint saved"):
        search_digest("gdas", data, tmp_path)
    monkeypatch.undo()
    assert search_digest("gdas", data, tmp_path) == expected


def test_interrupted_lm_retraining_resumes_to_the_pinned_results(monkeypatch, tmp_path, corpus):
    expected = PINNED["lm_train"]
    if machine() != PINNED_ON:
        expected = lm_digest(corpus, tmp_path / "uninterrupted")
    interrupt_at(monkeypatch, train_lm, 70)  # in epoch 4, after the switch to ASGD
    with pytest.raises(Interrupted):
        lm_digest(corpus, tmp_path)
    monkeypatch.undo()
    assert lm_digest(corpus, tmp_path) == expected


def _record() -> dict[str, str]:  # pragma: no cover - run by hand to re-pin
    import tempfile

    from dnas.config import Prepare
    from dnas.data import load_prepared, prepare_dataset

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        prepare_dataset("digits", Prepare(), root / "prepared")
        data = _small(load_prepared(root / "prepared" / "digits"))
        for name in SEARCHES:
            out[f"search/{name}"] = search_digest(name, data, root / f"s-{name}")
        out["train"] = train_digest(data, root / "train")
        corpus = tiny_corpus(root / "text")
        for key in RNN_SEARCHES:
            out[f"rnn_search/{key}"] = rnn_search_digest(key, corpus, root / key)
        out["lm_train"] = lm_digest(corpus, root / "lm")
    return out


if __name__ == "__main__":  # pragma: no cover
    print(f'PINNED_ON = "{machine()}"')
    for key, value in _record().items():
        print(f'    "{key}": "{value}",')
