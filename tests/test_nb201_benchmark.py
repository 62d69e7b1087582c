"""The NAS-Bench-201 / NATS-Bench topology lookup against the official `nats_bench` API: on the
real benchmark files NATS-Bench publishes in its repository (tests/fixtures/README.md), and on
small benchmark directories in the real layout, written by the official package's own classes
with the real files' types (Python floats, numpy float64 parameter counts and latencies)."""

from __future__ import annotations

import bz2
import collections
import itertools
import json
import os
import pickle
import pickletools
import random
from pathlib import Path

import numpy as np
import pytest
import test_pipeline

from dnas.benchmarks import nb201 as bench
from dnas.errors import UserError
from dnas.io import restricted_load
from dnas.spaces.ops import NB201_OPS

nats_bench = pytest.importorskip("nats_bench")
from nats_bench.api_utils import ArchResults, ResultsCount, pickle_save  # noqa: E402

# Seeds per dataset and hp; cifar10 has two runs, others three, and hp 12 fewer.
SEEDS = {
    "200": {"cifar10-valid": [777, 888, 999], "cifar10": [777, 888], "cifar100": [777, 888, 999],
            "ImageNet16-120": [777, 888, 999]},
    "12": {"cifar10-valid": [111, 777, 888], "cifar10": [111], "cifar100": [777, 888],
           "ImageNet16-120": [111, 777, 888]},
}  # fmt: skip
EVAL_SETS = {
    "cifar10-valid": ["x-valid", "ori-test"],
    "cifar10": ["ori-test"],
    "cifar100": ["x-valid", "x-test", "ori-test"],
    "ImageNet16-120": ["x-valid", "x-test", "ori-test"],
}
INDICES = (0, 9, 123, 15624)
# Three files of the real benchmark, from the NATS-Bench repository's test data.
REAL = Path(__file__).parent / "fixtures" / "NATS-tss-v1_0-3ffb9-simple"
REAL_INDICES = (0, 11, 284)
LEGACY = 123  # one seed recorded other params / FLOPs: the API then takes seed 888's


def official_order() -> list[str]:
    """The benchmark's index order: every cell of 5 ops on 6 edges (last edge fastest, ops in
    NAS-Bench-201's order) shuffled by Python's random with seed 88, as the benchmark's
    generator did; checked below against strings the benchmark publishes at fixed indices."""
    archs = [
        "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
        for ops in itertools.product(NB201_OPS, repeat=6)
    ]
    random.Random(88).shuffle(archs)
    return archs


def _run(rng, arch, dataset, seed, hp, index) -> ResultsCount:
    """One training run as the benchmark's files hold it: accuracies and losses as Python
    floats in dicts keyed by epoch, the times in an OrderedDict, FLOPs a float, and the
    parameter count and latency numpy float64 scalars (how the real files store them)."""
    epochs = int(hp)
    params = {"cifar10-valid": 0.8, "cifar10": 0.8, "cifar100": 0.81, "ImageNet16-120": 0.82}
    p = params[dataset] + index * 1e-4 + (0.05 if index == LEGACY and seed == 777 else 0.0)
    flop = round(100 * p + 3.3, 5)
    classes = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
    config = {"channel": 16, "num_cells": 5, "arch_str": arch, "class_num": classes[dataset]}
    latency = [np.float64(rng.uniform(0.01, 0.02))]
    r = ResultsCount(
        dataset, None, None, None, np.float64(p), flop, config, f"{seed:04d}", epochs, latency
    )
    acc = {e: rng.uniform(10, 100) for e in range(epochs)}
    loss = {e: rng.uniform(0, 3) for e in range(epochs)}
    r.update_train_info(acc, None, loss, None)
    r.reset_pseudo_train_times(20.0)
    keys = [f"{name}@{e}" for name in EVAL_SETS[dataset] for e in range(epochs)]
    r.update_eval(
        {k: rng.uniform(10, 100) for k in keys},
        {k: rng.uniform(0, 3) for k in keys},
        {k: 1.5 for k in keys},
    )
    return r


def write_benchmark(root, indices=INDICES) -> list[str]:
    """A benchmark directory in the real layout: the meta file's four keys and one results file
    per index, an OrderedDict of hp "12" and "200" (the real files' order), through the
    official package's ArchResults.state_dict and pickle_save (bz2, protocol 4)."""
    archs = official_order()
    root.mkdir(parents=True, exist_ok=True)
    meta = {"meta_archs": archs, "total_archs": len(archs), "arch2infos": None,
            "evaluated_indexes": set()}  # fmt: skip
    pickle_save(meta, str(root / "meta.pickle"))
    rng = random.Random(0)
    for index in indices:
        per_hp = collections.OrderedDict()
        for hp in ("12", "200"):
            results = ArchResults(index, archs[index])
            for dataset, xs in SEEDS[hp].items():
                for seed in xs:
                    results.update(dataset, seed, _run(rng, archs[index], dataset, seed, hp, index))
            per_hp[hp] = results.state_dict()
        pickle_save(per_hp, str(root / f"{index:06d}.pickle"))
    return archs


def link_all(root) -> None:
    """Give every architecture a file, hard links to the five written for indices 0-4 (writing
    15,625 real ones takes minutes): for tests where a search may end in any cell."""
    for index in range(5, bench.NUM_ARCHS):
        os.link(root / f"{index % 5:06d}.pickle.pbz2", root / f"{index:06d}.pickle.pbz2")


@pytest.fixture(scope="module")
def full_bench_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nats-full") / "NATS-tss-v1_0-3ffb9-simple"
    write_benchmark(root, indices=range(5))
    link_all(root)
    return root


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nats") / "NATS-tss-v1_0-3ffb9-simple"
    write_benchmark(root)
    return root


def test_official_order_matches_the_published_indices():
    archs = official_order()
    assert len(set(archs)) == 15625 == bench.NUM_ARCHS
    # The strings NAS-Bench-201's generator asserts at these indices.
    assert archs[0] == (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
        "skip_connect~2|"
    )
    assert archs[9] == "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    assert archs[123] == (
        "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    )


def test_lookup_equals_the_official_api(bench_dir):
    api = nats_bench.create(str(bench_dir), "tss", fast_mode=True, verbose=False)
    ours = bench.Benchmark.open(bench_dir)
    checked = 0
    for index in INDICES:
        arch = api.arch(index)
        row = ours.lookup(arch)
        assert row["index"] == index == api.query_index_by_arch(arch)
        for dataset in bench.DATASETS:
            for hp in bench.HPS:
                info = api.get_more_info(index, dataset, hp=hp, is_random=False)
                got = row[dataset][f"hp{hp}"]
                for split in ("train", "valid", "test"):
                    want = info.get(f"{split}-accuracy")
                    assert got.get(f"{split}_acc") == want, (index, dataset, hp, split)
                    checked += want is not None
            cost = api.get_cost_info(index, dataset, hp="200")
            assert row[dataset]["params"] == cost["params"]
            assert row[dataset]["flops"] == cost["flops"]
    assert checked == len(INDICES) * 2 * 11  # train of 4 datasets, valid of 3, test of 4
    # The legacy rule took seed 888's values where the seeds disagree.
    assert ours.lookup(api.arch(LEGACY))["cifar100"]["params"] == pytest.approx(0.81 + 0.0123)


def test_lookup_accepts_edges_in_any_order_and_refuses_foreign_cells(bench_dir):
    ours = bench.Benchmark.open(bench_dir)
    arch = ours.archs[9]  # |avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|
    swapped = "|avg_pool_3x3~0|+|none~1|none~0|+|nor_conv_3x3~2|skip_connect~0|none~1|"
    assert ours.lookup(swapped)["index"] == 9 == ours.index(arch)
    with pytest.raises(UserError, match="not a NAS-Bench-201 cell.*sep_conv_3x3"):
        ours.lookup("|sep_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    with pytest.raises(UserError, match="not a NAS-Bench-201 cell"):
        ours.lookup("|none~0|+|none~0|none~1|")


def _globals(path) -> set[str]:
    """The globals a bz2 pickle names, numpy 1's module names written as numpy 2's."""
    ops = list(pickletools.genops(bz2.decompress(path.read_bytes())))
    strings, names = [], set()
    for op, arg, _ in ops:
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.add(".".join(strings[-2:]))
        elif op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
    return {n.replace("numpy.core.", "numpy._core.") for n in names}


def test_real_files_give_the_official_apis_accuracies(capsys):
    """The acceptance check: `dnas nb201 lookup ARCH --benchmark DIR --json` on files of the
    real benchmark (numpy scalars pickled by numpy 1) equals the official API, exactly."""
    from dnas.cli import main

    api = nats_bench.create(str(REAL), "tss", fast_mode=True, verbose=False)
    checked = 0
    for index in REAL_INDICES:
        main(["nb201", "lookup", api.arch(index), "--benchmark", str(REAL), "--json"])
        row = json.loads(capsys.readouterr().out)
        assert row["index"] == index and row["arch"] == api.arch(index)
        for dataset in bench.DATASETS:
            for hp in bench.HPS:
                info = api.get_more_info(index, dataset, hp=hp, is_random=False)
                for split in ("train", "valid", "test"):
                    want = info.get(f"{split}-accuracy")
                    assert row[dataset][f"hp{hp}"].get(f"{split}_acc") == want
                    checked += want is not None
            cost = api.get_cost_info(index, dataset, hp="200")
            assert row[dataset]["params"] == cost["params"]  # a numpy float64 in the file
            assert row[dataset]["flops"] == cost["flops"]
    assert checked == len(REAL_INDICES) * 2 * 11
    # The published string at index 0, and a value read from a numpy scalar.
    assert api.arch(0) == official_order()[0]
    assert row["cifar10"]["params"] > 0.1


def test_fixture_files_are_pickled_like_the_real_ones(bench_dir):
    """The written fixture names the same globals (numpy scalars, their dtype, OrderedDict) and
    has the same key layout and value types as the real files."""
    assert _globals(bench_dir / "000000.pickle.pbz2") == _globals(REAL / "000000.pickle.pbz2") == {
        "collections.OrderedDict", "numpy._core.multiarray.scalar", "numpy.dtype",
    }  # fmt: skip
    assert _globals(bench_dir / "meta.pickle.pbz2") == _globals(REAL / "meta.pickle.pbz2")

    def shape(obj):
        if isinstance(obj, dict):
            some = list(obj.items())[:1] + list(obj.items())[-1:]
            return (type(obj).__name__, {type(k).__name__: shape(v) for k, v in some})
        if isinstance(obj, list) and obj:
            return ("list", shape(obj[0]))
        return type(obj).__name__

    def load(path):
        with bz2.open(path) as f:
            return pickle.load(f)  # the repository's own files: trusted

    real, ours = load(REAL / "000000.pickle.pbz2"), load(bench_dir / "000000.pickle.pbz2")
    assert list(real) == list(ours) == ["12", "200"]
    r_run, o_run = (x["200"]["all_results"][("cifar100", 777)] for x in (real, ours))
    assert {k: shape(v) for k, v in r_run.items()} == {k: shape(v) for k, v in o_run.items()}
    assert type(r_run["params"]) is type(o_run["params"]) is np.float64
    assert shape(real["200"]["dataset_seed"]) == shape(ours["200"]["dataset_seed"])
    meta = load(REAL / "meta.pickle.pbz2"), load(bench_dir / "meta.pickle.pbz2")
    assert {k: type(v) for k, v in meta[0].items()} == {k: type(v) for k, v in meta[1].items()}


class _Payload:
    """Pickles as a call of `func(*args)`: what a hostile file does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker):
    import numpy._core.multiarray as multiarray  # how numpy 2 pickles its constructors

    touch = f"touch {marker}"
    return {
        "system": (_Payload(os.system, touch), r"os\.system|posix\.system"),
        "eval": (_Payload(eval, f"__import__('os').system({touch!r})"), r"builtins\.eval"),
        # numpy globals the files do not need: an array, an object-dtype scalar
        "array": (np.arange(3.0), r"numpy\._core\.multiarray\._reconstruct"),
        # the guarded numpy constructors, called with what no real file holds
        "object_scalar": (
            _Payload(multiarray.scalar, np.dtype("O"), ["anything"]),
            r"a numpy scalar of dtype dtype\('O'\)",
        ),
        "short_scalar": (
            _Payload(multiarray.scalar, np.dtype("f8"), b"\0"),
            r"a numpy float64 scalar whose data is not 8 bytes",
        ),
        "dtype_from_dict": (
            _Payload(np.dtype, {"names": ["a"], "formats": ["O"]}),
            r"numpy\.dtype\(\{'names'",
        ),
        "nested_call": (  # the call inside an allowed one is still refused first
            _Payload(multiarray.scalar, np.dtype("O"), _Payload(os.system, touch)),
            r"os\.system|posix\.system",
        ),
    }


KINDS = ["system", "eval", "array", "object_scalar", "short_scalar", "dtype_from_dict",
         "nested_call"]  # fmt: skip


@pytest.mark.parametrize("victim", ["meta", "arch"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_code_executing_pickle_is_refused_before_it_runs(tmp_path, victim, kind):
    root = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    archs = write_benchmark(root, indices=(5,))
    marker = tmp_path / "pwned"
    name = "meta.pickle.pbz2" if victim == "meta" else "000005.pickle.pbz2"
    payload = {"meta_archs": archs} if victim == "meta" else {"200": {}, "12": {}}
    payload["x"], message = _payloads(marker)[kind]
    (root / name).write_bytes(bz2.compress(pickle.dumps(payload, protocol=4)))
    with pytest.raises(UserError, match=rf"^refusing to unpickle ({message}).* from .*{name}"):
        bench.Benchmark.open(root).lookup(archs[5])
    assert not marker.exists()


@pytest.mark.parametrize(
    "value", [np.float64(0.5), np.float32(1.25), np.int64(-7), np.uint8(200), np.bool_(True)]
)
def test_numpy_number_scalars_load_under_either_module_name(tmp_path, value):
    """numpy 2 pickles a scalar as numpy._core.multiarray.scalar, numpy 1 (which wrote the real
    files) as numpy.core.multiarray.scalar; both load, as the same number and type."""
    new = pickle.dumps({"v": value}, protocol=4)  # the benchmark's protocol
    # The same pickle under numpy 1's module name (the name's length byte and the frame's
    # length shrink by one).
    old = new.replace(b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray")
    old = old[:3] + (int.from_bytes(old[3:11], "little") - 1).to_bytes(8, "little") + old[11:]
    assert b"numpy.core.multiarray" in old and b"numpy._core" not in old
    for blob in (new, old):
        path = tmp_path / "x.pickle.pbz2"
        path.write_bytes(bz2.compress(blob))
        got = restricted_load(path, bench.PICKLE_GLOBALS, "a NATS-Bench file", opener=bz2.open)
        assert got["v"] == value and type(got["v"]) is type(value)


def _bad(tmp_path, kind):
    root = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    if kind == "missing":
        return root, r"not found; expected the NATS-Bench topology 'simple' directory"
    archs = write_benchmark(root, indices=(5,))
    meta = root / "meta.pickle.pbz2"
    if kind == "corrupt":
        meta.write_bytes(meta.read_bytes()[:200])
        return root, r"meta.pickle.pbz2 is not a NATS-Bench file.*corrupt or truncated"
    if kind == "not_bz2":
        meta.write_bytes(pickle.dumps({"meta_archs": archs}))
        return root, r"meta.pickle.pbz2 is not a NATS-Bench file"
    if kind == "size_benchmark":  # NATS-sss: 32,768 channel configurations
        sizes = [":".join(c) for c in itertools.product("8 16 24 32 40 48 56 64".split(), repeat=5)]
        pickle_save({"meta_archs": sizes}, str(root / "meta.pickle"))
        return root, r"lists 32,768 architectures.*not the topology benchmark's 15,625"
    if kind == "other_space":
        pickle_save({"meta_archs": [a.replace("none", "zero") for a in archs]},
                    str(root / "meta.pickle"))  # fmt: skip
        return root, r"entry \d+ .*zero.* is not a NAS-Bench-201 architecture"
    if kind == "no_meta_list":
        pickle_save({"archs": archs}, str(root / "meta.pickle"))
        return root, r"has no list 'meta_archs'"
    if kind == "pth":
        path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
        path.write_bytes(b"PK")
        return path, r"a NAS-Bench-201 \.pth file, not a directory.*NATS-tss-v1_0-3ffb9-simple"
    raise AssertionError(kind)


BAD = ["missing", "corrupt", "not_bz2", "size_benchmark", "other_space", "no_meta_list", "pth"]


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_benchmark_stops_with_one_message_naming_path_and_layout(tmp_path, kind):
    root, message = _bad(tmp_path, kind)
    with pytest.raises(UserError, match=message) as err:
        bench.Benchmark.open(root)
    assert str(root) in str(err.value)
    assert "NATS-tss-v1_0-3ffb9-simple" in str(err.value)


def test_a_missing_or_wrong_architecture_file_is_named(tmp_path):
    root = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    archs = write_benchmark(root, indices=(5,))
    ours = bench.Benchmark.open(root)
    with pytest.raises(UserError, match=r"000006.pickle.pbz2 not found; expected the NATS"):
        ours.lookup(archs[6])
    pickle_save({"200": {"dataset_seed": {}}}, str(root / "000007.pickle"))
    with pytest.raises(UserError, match=r"000007.pickle.pbz2 does not hold the results"):
        ours.lookup(archs[7])


def test_cli_lookup_prints_the_row(bench_dir, capsys):
    from dnas.cli import main

    ours = bench.Benchmark.open(bench_dir)
    arch = ours.archs[123]
    main(["nb201", "lookup", arch, "--benchmark", str(bench_dir), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(ours.lookup(arch)))
    main(["nb201", "lookup", arch, "--benchmark", str(bench_dir)])
    text = capsys.readouterr().out
    assert "index 123" in text and "ImageNet16-120" in text
    test_acc = ours.lookup(arch)["cifar100"]["hp200"]["test_acc"]
    assert f"{test_acc:.2f}" in text
    with pytest.raises(SystemExit) as stop:
        main(["nb201", "lookup", "|none~0|", "--benchmark", str(bench_dir)])
    assert stop.value.code != 0
    assert "not a NAS-Bench-201 cell" in capsys.readouterr().err


TINY_NB201 = {"space": "nb201", "epochs": 2, "channels": 4, "layers": 1, "batch_size": 128}


def test_search_writes_the_found_cells_row_and_logs_it_every_epoch(
    tmp_path, digits_prepared, full_bench_dir
):
    import torch

    from dnas.config import Params
    from dnas.search.loop import run_search

    p = Params()
    p.search = p.search.model_copy(update={**TINY_NB201, "benchmark": str(full_bench_dir)})
    result = run_search(p, digits_prepared, torch.device("cpu"), tmp_path / "live")
    row = bench.Benchmark.open(full_bench_dir).lookup(result.genotype.arch)
    assert result.metrics["benchmark"] == bench.metrics_row(row)
    assert result.metrics["benchmark"]["cifar100"]["hp200"]["test_acc"] > 0
    curves = tmp_path / "live" / "plots" / "metrics"
    lines = (curves / "benchmark_test_acc" / "ImageNet16-120.tsv").read_text().splitlines()
    assert len(lines) == 1 + TINY_NB201["epochs"]  # header + one value per epoch
    assert float(lines[-1].split("\t")[-1]) == pytest.approx(
        row["ImageNet16-120"]["hp200"]["test_acc"], rel=1e-5
    )
    assert not (curves / "benchmark_valid_acc" / "cifar10.tsv").exists()  # cifar10: no valid


def test_benchmark_needs_the_nb201_space():
    from dnas.config import parse_params

    with pytest.raises(UserError, match=r"search.*benchmark.*needs space nb201, not 'darts'"):
        parse_params({"search": {"space": "darts", "benchmark": "/somewhere"}})
    assert parse_params({"search": {"space": "nb201", "benchmark": "/x"}}).search.benchmark == "/x"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The e2e tests' temporary git + DVC repository on tiny params (tests/test_pipeline.py)."""
    return test_pipeline.repo.__wrapped__(tmp_path_factory)


@pytest.mark.e2e
def test_exp_run_with_a_benchmark_writes_the_lookup_metrics(repo, full_bench_dir):
    """`dvc exp run search` (the search alone: lookup-only, no retraining) of an NB201 run with
    a benchmark path; `dvc metrics diff` shows the row."""
    path, run = repo
    _, out = run(
        "dvc", "exp", "run", "search", "-n", "lookup", "-S", "search.space=nb201",
        "-S", f"advanced.yaml:search.benchmark={full_bench_dir}",
    )  # fmt: skip
    assert "Running stage 'search'" in out and "Running stage 'train'" not in out
    arch = json.loads((path / "genotype.json").read_text())["arch"]
    row = bench.Benchmark.open(full_bench_dir).lookup(arch)
    written = json.loads((path / "metrics/search.json").read_text())["benchmark"]
    assert written["index"] == row["index"]
    assert written["cifar10"]["hp200"]["test_acc"] == pytest.approx(
        row["cifar10"]["hp200"]["test_acc"], rel=1e-5
    )
    _, diff = run("dvc", "metrics", "diff", "--json")  # HEAD has no metrics: old is null
    search = json.JSONDecoder().raw_decode(diff)[0]["metrics/search.json"]  # then a warning
    assert search["benchmark.index"]["new"] == row["index"]
    shown = search["benchmark.ImageNet16-120.hp200.test_acc"]["new"]
    assert shown == pytest.approx(row["ImageNet16-120"]["hp200"]["test_acc"], rel=1e-5)
    live = json.loads((path / "dvclive/search/metrics.json").read_text())
    assert live["benchmark_test_acc"]["cifar100"] == pytest.approx(
        row["cifar100"]["hp200"]["test_acc"], rel=1e-5
    )


def test_report_uses_the_looked_up_accuracy_of_nb201_presets(tmp_path):
    """Two seeds of the NB201 preset, searched with a benchmark (no retraining): the report's
    mean ± std is over the benchmark's test accuracy on the preset's dataset."""
    import statistics

    import yaml

    from dnas.report import report

    presets = Path(__file__).resolve().parents[1] / "presets"
    preset = yaml.safe_load((presets / "gdas-nb201-cifar100.yaml").read_text())
    revs = []
    accs = [70.25, 71.5]
    for seed, acc in enumerate(accs):
        params = json.loads(json.dumps(preset))
        params["common"]["seed"] = seed
        params["search"]["benchmark"] = "/data/NATS-tss-v1_0-3ffb9-simple"
        row = {"index": 7, "cifar100": {"hp200": {"test_acc": acc}, "hp12": {"test_acc": 1.0}}}
        row["cifar10"] = {"hp200": {"test_acc": 99.0}}  # another dataset's: not this preset's
        metrics = {"metrics/search.json": {"data": {"benchmark": row}}}
        data = {"params": {"params.yaml": {"data": params}}, "metrics": metrics}
        revs.append({"rev": f"{seed + 1:040d}", "name": f"s{seed}", "data": data, "error": None})
    # as `dvc exp show --json` lists them: experiments under their baseline commit (a baseline's
    # own metrics count only where its dvc.lock can be checked)
    experiments = [{"name": r["name"], "revs": [r]} for r in revs]
    baseline = {"rev": "0" * 40, "name": "main", "data": {}, "error": None}
    rows = [{**baseline, "experiments": experiments}]
    text = report(rows, presets, None, None)
    line = next(x for x in text.splitlines() if x.startswith("| gdas-nb201-cifar100"))
    mean, std = statistics.mean(accs), statistics.stdev(accs)
    assert f"{mean:.2f} ± {std:.2f}" in line and "70.70" in line  # against the paper's 70.70
