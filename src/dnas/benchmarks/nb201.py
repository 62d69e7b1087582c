"""Look up a NAS-Bench-201 cell in the NATS-Bench topology benchmark (docs/nb201-benchmark.md).

The files are the ones a user downloads: the "simple" directory `NATS-tss-v1_0-3ffb9-simple/`,
which holds `meta.pickle.pbz2` (the 15,625 architecture strings in the benchmark's index order)
and one `NNNNNN.pickle.pbz2` per architecture (its results: hp "200" and "12", the training
runs of every dataset and seed). Every file is a bz2-compressed pickle of plain dicts whose
numbers are Python floats and, for the parameter counts and latencies, numpy float64 scalars;
it is read with the project's restricted unpickler (`dnas.io.restricted_load`), which refuses
any global other than `collections.OrderedDict`, set / frozenset and numpy's scalar and dtype
constructors (numbers only) before it is called.

A query returns what the official API's `get_more_info(index, dataset, hp=..., is_random=False)`
returns for the accuracies: for each dataset and hp, the train / valid / test accuracy after the
last epoch of each run, averaged over the dataset's seeds in the benchmark's order, plus the
parameters (M) and FLOPs (M) as its `get_cost_info`.
"""

from __future__ import annotations

import bz2
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from dnas.errors import UserError
from dnas.io import NUMPY_SCALAR_GLOBALS, restricted_load
from dnas.spaces import nb201
from dnas.spaces.ops import NB201_OPS

NUM_ARCHS = len(NB201_OPS) ** len(nb201.edges())  # 5 ops on 6 edges: 15,625 cells
HPS = ("200", "12")  # training epochs of the benchmark's two protocols
DATASETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")
# Which evaluation set is each dataset's "valid" and "test" (the official API's choice):
# cifar10-valid trains on half of the CIFAR-10 train set and is tested on the test set;
# cifar10 trains on the whole train set (no valid set); cifar100 and ImageNet16-120 split their
# test set into x-valid and x-test halves.
SPLITS = {
    "cifar10-valid": (("valid", "x-valid"), ("test", "ori-test")),
    "cifar10": (("valid", "x-valid"), ("test", "ori-test")),
    "cifar100": (("valid", "x-valid"), ("test", "x-test")),
    "ImageNet16-120": (("valid", "x-valid"), ("test", "x-test")),
}
# The benchmark's pickles hold dicts, lists, tuples, numbers and strings (built by opcodes),
# OrderedDicts (the training times) and numpy float64 scalars (the parameter counts and the
# latencies: `numpy.core.multiarray.scalar` of a `numpy.dtype`, `numpy._core...` when written
# with numpy 2); a protocol-2 pickle names set / frozenset. No numpy array constructor
# (`_reconstruct`, `ndarray`): the files hold none. Nothing callable beyond these.
PICKLE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    *NUMPY_SCALAR_GLOBALS,
}
EXT = ".pickle.pbz2"
LAYOUT = (
    "expected the NATS-Bench topology 'simple' directory (NATS-tss-v1_0-3ffb9-simple/): "
    f"meta{EXT} with the {NUM_ARCHS:,} architecture strings and one NNNNNN{EXT} per "
    "architecture (docs/nb201-benchmark.md)"
)


def _load(path: Path, root: Path) -> object:
    """One bz2 pickle of the benchmark, through the restricted unpickler."""
    if not path.is_file():
        raise UserError(f"benchmark {root}: {path.name} not found; {LAYOUT}")
    return restricted_load(path, PICKLE_GLOBALS, f"a NATS-Bench file ({LAYOUT})", opener=bz2.open)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))  # the official API's mean, in seed order


@dataclass
class Benchmark:
    """The benchmark at `root`; per-architecture files are read on first use and kept."""

    root: Path
    archs: list[str]
    index_of: dict[str, int]
    _rows: dict[int, dict] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: str | Path) -> Benchmark:
        root = Path(root).expanduser()
        if not root.exists():
            raise UserError(f"benchmark {root}: not found; {LAYOUT}")
        if root.is_file():
            what = "a NAS-Bench-201 .pth file" if root.suffix == ".pth" else "a file"
            raise UserError(
                f"benchmark {root}: {what}, not a directory; this project reads only the "
                f"NATS-Bench simple directory, one small file per cell; {LAYOUT}"
            )
        meta = _load(root / f"meta{EXT}", root)
        archs = meta.get("meta_archs") if isinstance(meta, dict) else None
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise UserError(f"benchmark {root}: meta{EXT} has no list 'meta_archs'; {LAYOUT}")
        if len(archs) != NUM_ARCHS or len(set(archs)) != NUM_ARCHS:
            raise UserError(
                f"benchmark {root}: meta{EXT} lists {len(archs):,} architectures "
                f"({len(set(archs)):,} distinct), not the topology benchmark's {NUM_ARCHS:,} "
                f"(is it the size benchmark NATS-sss, or another version?); {LAYOUT}"
            )
        space = all_arch_strings()
        for i, a in enumerate(archs):  # the strings of another space fail here
            if a not in space:
                raise UserError(
                    f"benchmark {root}: meta{EXT} entry {i} {a!r} is not a NAS-Bench-201 "
                    f"architecture string; {LAYOUT}"
                )
        return cls(root, archs, {a: i for i, a in enumerate(archs)})

    def index(self, arch: str) -> int:
        """The benchmark's index of an architecture string (any edge order within a node)."""
        try:
            canonical = nb201.to_string(nb201.from_string(arch))
        except ValueError as exc:
            raise UserError(
                f"architecture {arch!r} is not a NAS-Bench-201 cell ({exc}); the benchmark "
                f"holds the {NUM_ARCHS:,} cells of 4 nodes with ops {', '.join(NB201_OPS)}"
            ) from None
        if canonical not in self.index_of:
            raise UserError(f"architecture {arch!r} is not in the benchmark {self.root}")
        return self.index_of[canonical]

    def lookup(self, arch: str) -> dict:
        """{'index', 'arch', dataset: {'params', 'flops', hp: {'train_acc', 'valid_acc',
        'test_acc'}}}; a split the benchmark does not hold for a dataset is left out."""
        index = self.index(arch)
        if index not in self._rows:
            self._rows[index] = self._row(index)
        return self._rows[index]

    def _row(self, index: int) -> dict:
        path = self.root / f"{index:06d}{EXT}"
        if not path.is_file() and (self.root / f"{index}{EXT}").is_file():
            path = self.root / f"{index}{EXT}"
        data = _load(path, self.root)
        row = {"index": index, "arch": self.archs[index]}
        try:
            for dataset in DATASETS:
                entry = {}
                for hp in HPS:
                    entry[f"hp{hp}"] = _accuracies(data[hp], dataset)
                entry.update(_costs(data["200"], dataset))
                row[dataset] = entry
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise UserError(
                f"benchmark {self.root}: {path.name} does not hold the results of architecture "
                f"{index} as expected ({type(exc).__name__}: {exc}); {LAYOUT}"
            ) from None
        return row


def all_arch_strings() -> set[str]:
    """Every cell of the space in the benchmark's string form (5 ops on each of 6 edges)."""
    edges = nb201.edges()
    strings = set()
    for ops in itertools.product(NB201_OPS, repeat=len(edges)):
        nodes: dict[int, list[str]] = {}
        for (i, j), op in zip(edges, ops):
            nodes.setdefault(i, []).append(f"{op}~{j}")
        strings.add("+".join("|" + "|".join(node) + "|" for node in nodes.values()))
    return strings


def _runs(results: dict, dataset: str) -> list[dict]:
    seeds = results["dataset_seed"][dataset]
    if not seeds:
        raise ValueError(f"no seeds for {dataset}")
    return [results["all_results"][(dataset, seed)] for seed in seeds]


def _accuracies(results: dict, dataset: str) -> dict:
    """Accuracies after each run's last epoch, averaged over the seeds."""
    runs = _runs(results, dataset)
    out = {"train_acc": _mean([r["train_acc1es"][r["epochs"] - 1] for r in runs])}
    for name, evalset in SPLITS[dataset]:
        keys = [f"{evalset}@{r['epochs'] - 1}" for r in runs]
        if all(k in r["eval_acc1es"] for k, r in zip(keys, runs)):
            out[f"{name}_acc"] = _mean([r["eval_acc1es"][k] for k, r in zip(keys, runs)])
    return out


def _costs(results: dict, dataset: str) -> dict:
    """Parameters (M) and FLOPs (M). Some early runs recorded other values than the rest; the
    official API then takes seed 888's, and so does this."""
    runs = _runs(results, dataset)
    seeds = results["dataset_seed"][dataset]
    out = {}
    for key, name in (("params", "params"), ("flop", "flops")):
        values = [r[key] for r in runs]
        if len({f"{v:.5f}" for v in values}) > 1:
            values = [values[seeds.index(888)]]
        out[name] = _mean(values)
    return out


def metrics_row(row: dict) -> dict:
    """The lookup as numbers only, for metrics/search.json (`dvc exp show` columns such as
    `benchmark.cifar10.hp200.test_acc`)."""
    return {k: v for k, v in row.items() if k != "arch"}


def curve_values(row: dict) -> dict:
    """The per-epoch values logged to dvclive: each dataset's valid and test accuracy after
    200 epochs (the curves AutoDL prints during a search), one folder per split so each
    split's datasets share a panel: `benchmark_test_acc/cifar100`."""
    out = {}
    for split in ("valid_acc", "test_acc"):
        for dataset in DATASETS:
            value = row[dataset]["hp200"].get(split)
            if value is not None:
                out[f"benchmark_{split}/{dataset}"] = value
    return out
