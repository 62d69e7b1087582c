"""The published genotypes, retrainable by name (`train.genotype: GDAS_V1`), and the resolver
that turns a name, a genotype file or a NAS-Bench-201 string into a `Genotype`.

Sources (docs/algorithms.md#published-genotypes); the cells are facts copied as data:
- GDAS_V1, GDAS_F1, GDAS_GF, GDAS_FG: the GDAS CVPR genotype file (NAS-Projects
  `lib/nas/genotypes.py` @4098fca). GDAS_F1 has no reduction cell: it uses the fixed reduction
  cell (docs/algorithms.md#gdas-frc-fixed-reduction-cell). GDAS_GF = V1 normal + fixed reduction;
  GDAS_FG = F1 normal + V1 reduction.
- DARTS_V1 (first order), DARTS_V2 (second order): quark0/darts `cnn/genotypes.py`.
- SNAS_MILD, SNAS_MODERATE, SNAS_AGGRESSIVE: SNAS-Series `SNAS/genotypes.py`, the `*_edge_all`
  cells that the paper retrains (`train_edge_all.py`): all 14 edges are kept with their argmax
  op, 'none' included, so a node has 2 to 5 inputs and may be all 'none' (zero).
- DRNAS_CIFAR10, DRNAS_IMAGENET: xiangning-chen/DrNAS `DARTS-space/genotypes.py`.

Each entry also records the width C its paper used in the ImageNet mobile setting
(docs/algorithms.md#cnn-retraining).
Names are matched without regard to case, so the spellings of the source files
(`SNAS_mild_edge_all`, `DrNAS_cifar10`) work too.

`random` names the baseline every searched cell needs (docs/algorithms.md#random-cells): a
uniformly random cell of the search space, drawn from `common.seed` (`random_genotype`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnas.errors import UserError
from dnas.spaces import nb201
from dnas.spaces.genotype import CellSpec, Genotype, load_genotype
from dnas.spaces.registry import get_space

SEARCHED = "searched"
RANDOM = "random"
RANDOM_STREAM = 24  # the draw's own stream of common.seed, apart from the weights' and the data's


@dataclass(frozen=True)
class Published:
    name: str
    genotype: Genotype
    source: str
    imagenet_channels: int  # C of the paper's ImageNet (mobile, 14 cells) network


def _cell(entries: list[tuple[str, int]]) -> CellSpec:
    """A DARTS cell from the flat list of the genotype files: 2 entries per node (8 in all),
    or every edge of every node (2 + 3 + 4 + 5 = 14 entries, SNAS's edge_all format)."""
    sizes = {8: (2, 2, 2, 2), 14: (2, 3, 4, 5)}[len(entries)]
    nodes, start = [], 0
    for size in sizes:
        nodes.append(tuple(entries[start : start + size]))
        start += size
    return CellSpec(inputs=2, nodes=tuple(nodes), concat=(2, 3, 4, 5))


def _darts(normal: list, reduce: list | None = None) -> Genotype:
    cells = {"normal": _cell(normal)}
    if reduce is not None:
        cells["reduce"] = _cell(reduce)
    g = Genotype("darts", cells)
    g.validate()
    return g


SEP3, SEP5, DIL3, DIL5 = "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"
SKIP, MAX, AVG, NONE = "skip_connect", "max_pool_3x3", "avg_pool_3x3", "none"

_GDAS_V1_NORMAL = (
    [(SKIP, 0), (SKIP, 1), (SKIP, 0), (SEP5, 2), (SEP3, 3), (SKIP, 0), (SEP5, 4), (SEP3, 3)]
)  # fmt: skip
_GDAS_V1_REDUCE = (
    [(SEP5, 0), (SEP3, 1), (SEP5, 2), (SEP5, 1), (DIL5, 2), (SEP3, 1), (SEP5, 0), (SEP5, 1)]
)  # fmt: skip
_GDAS_F1_NORMAL = (
    [(SKIP, 0), (SKIP, 1), (SKIP, 0), (SEP3, 2), (SKIP, 0), (SEP3, 2), (SKIP, 0), (SEP3, 2)]
)  # fmt: skip
_DARTS_V1 = (
    [(SEP3, 1), (SEP3, 0), (SKIP, 0), (SEP3, 1), (SKIP, 0), (SEP3, 1), (SEP3, 0), (SKIP, 2)],
    [(MAX, 0), (MAX, 1), (SKIP, 2), (MAX, 0), (MAX, 0), (SKIP, 2), (SKIP, 2), (AVG, 0)],
)
_DARTS_V2 = (
    [(SEP3, 0), (SEP3, 1), (SEP3, 0), (SEP3, 1), (SEP3, 1), (SKIP, 0), (SKIP, 0), (DIL3, 2)],
    [(MAX, 0), (MAX, 1), (SKIP, 2), (MAX, 1), (MAX, 0), (SKIP, 2), (SKIP, 2), (MAX, 1)],
)
_SNAS_MILD = (
    [(SEP3, 0), (SEP3, 1),
     (SKIP, 0), (DIL3, 1), (NONE, 2),
     (SKIP, 0), (SKIP, 1), (NONE, 3), (NONE, 2),
     (SKIP, 0), (SEP3, 1), (NONE, 4), (NONE, 3), (NONE, 2)],
    [(MAX, 0), (MAX, 1),
     (NONE, 0), (MAX, 1), (SKIP, 2),
     (NONE, 0), (MAX, 1), (SKIP, 2), (NONE, 3),
     (MAX, 0), (DIL5, 2), (NONE, 1), (NONE, 3), (NONE, 4)],
)  # fmt: skip
_SNAS_MODERATE = (
    [(DIL5, 0), (SKIP, 1),
     (SEP3, 0), (SKIP, 1), (NONE, 2),
     (SKIP, 0), (NONE, 3), (NONE, 2), (SKIP, 1),
     (SEP3, 0), (DIL5, 1), (NONE, 4), (NONE, 3), (NONE, 2)],
    [(MAX, 0), (MAX, 1),
     (SEP5, 0), (NONE, 2), (DIL5, 1),
     (NONE, 3), (NONE, 2), (SEP5, 0), (SEP5, 1),
     (NONE, 4), (NONE, 3), (NONE, 2), (SEP5, 0), (SEP5, 1)],
)  # fmt: skip
_SNAS_AGGRESSIVE = (
    [(SEP5, 0), (SKIP, 1),
     (SKIP, 0), (SKIP, 1), (NONE, 2),
     (DIL5, 1), (SKIP, 0), (NONE, 2), (NONE, 3),
     (SKIP, 0), (DIL5, 1), (NONE, 2), (NONE, 3), (NONE, 4)],
    [(SEP5, 0), (NONE, 1),
     (SEP5, 0), (NONE, 1), (NONE, 2),
     (NONE, 0), (NONE, 1), (NONE, 2), (NONE, 3),
     (NONE, 0), (NONE, 1), (NONE, 2), (NONE, 3), (NONE, 4)],
)  # fmt: skip
_DRNAS_CIFAR10 = (
    [(SEP3, 0), (SEP5, 1), (SEP3, 1), (SEP3, 2), (SKIP, 0), (SEP3, 1), (SEP3, 2), (DIL5, 3)],
    [(MAX, 0), (SEP5, 1), (DIL5, 2), (SEP5, 1), (SEP5, 1), (DIL5, 3), (SKIP, 4), (SEP5, 1)],
)
_DRNAS_IMAGENET = (
    [(SEP3, 1), (SEP3, 0), (SEP3, 0), (SEP3, 1), (SEP3, 0), (DIL3, 3), (SKIP, 0), (SEP3, 1)],
    [(MAX, 0), (SEP3, 1), (SEP3, 0), (SKIP, 2), (SEP3, 0), (SEP3, 2), (SEP3, 3), (SEP3, 1)],
)

# Sources: docs/algorithms.md#published-genotypes.
_GDAS_SRC = "GDAS CVPR 2019, NAS-Projects lib/nas/genotypes.py @4098fca"
_DARTS_SRC = "DARTS, quark0/darts cnn/genotypes.py"
_SNAS_SRC = "SNAS, SNAS-Series SNAS/genotypes.py *_edge_all"
_DRNAS_SRC = "DrNAS, xiangning-chen/DrNAS DARTS-space/genotypes.py"

PUBLISHED: dict[str, Published] = {
    p.name: p
    for p in (
        Published("GDAS_V1", _darts(_GDAS_V1_NORMAL, _GDAS_V1_REDUCE), _GDAS_SRC, 50),
        Published("GDAS_F1", _darts(_GDAS_F1_NORMAL), _GDAS_SRC, 52),
        Published("GDAS_GF", _darts(_GDAS_V1_NORMAL), _GDAS_SRC, 50),
        Published("GDAS_FG", _darts(_GDAS_F1_NORMAL, _GDAS_V1_REDUCE), _GDAS_SRC, 50),
        Published("DARTS_V1", _darts(*_DARTS_V1), _DARTS_SRC, 48),
        Published("DARTS_V2", _darts(*_DARTS_V2), _DARTS_SRC, 48),
        Published("SNAS_MILD", _darts(*_SNAS_MILD), _SNAS_SRC, 50),
        Published("SNAS_MODERATE", _darts(*_SNAS_MODERATE), _SNAS_SRC, 50),
        Published("SNAS_AGGRESSIVE", _darts(*_SNAS_AGGRESSIVE), _SNAS_SRC, 50),
        Published("DRNAS_CIFAR10", _darts(*_DRNAS_CIFAR10), _DRNAS_SRC, 48),
        Published("DRNAS_IMAGENET", _darts(*_DRNAS_IMAGENET), _DRNAS_SRC, 48),
    )
}

# Spellings of the source files that differ by more than case.
_ALIASES = {
    "SNAS_MILD_EDGE_ALL": "SNAS_MILD",
    "SNAS_MODERATE_EDGE_ALL": "SNAS_MODERATE",
    "SNAS_AGGRESSIVE_EDGE_ALL": "SNAS_AGGRESSIVE",
}


def published(name: str) -> Published | None:
    key = name.strip().upper()
    return PUBLISHED.get(_ALIASES.get(key, key))


def genotype_kind(spec: str) -> str:
    """What a `train.genotype` value names, checked in this order: "searched", "random",
    "published" (a published name), "string" (a NAS-Bench-201 architecture string) or "file"
    (anything else)."""
    spec = spec.strip()
    if spec == SEARCHED:
        return "searched"
    if spec == RANDOM:
        return "random"
    if published(spec) is not None:
        return "published"
    if spec.startswith("|"):
        return "string"
    return "file"


def genotype_source(spec: str) -> str:
    """How a figure names the cells `train.genotype = spec` retrains: "searched", "published
    GDAS_V1", "NB201 string" or "file <path>"."""
    spec = spec.strip()
    kind = genotype_kind(spec)
    if kind == "published":
        return f"published {published(spec).name}"
    names = {"searched": SEARCHED, "string": "NB201 string", "random": "random cell"}
    return names.get(kind, f"file {spec}")


def random_genotype(space: str, seed: int, fixed_reduction: bool = False) -> Genotype:
    """A uniformly random cell of `space`, the same for the same `seed`
    (docs/algorithms.md#random-cells; each space's `random_cells` says how it draws):

    - darts: every node takes 2 distinct inputs, each pair of earlier states equally likely,
      each edge an op uniform over the 7 ops other than 'none' (the DARTS rule's cells; a
      normal and a reduction cell, or only the normal one with `fixed_reduction`);
    - nb201: each of the 6 edges an op uniform over all 5, 'none' included, so that each of the
      benchmark's 15,625 cells is equally likely, as AutoDL's random sampling draws them;
    - rnn: every node one predecessor uniform over the earlier nodes and an op uniform over the
      4 ops other than 'none' (the DARTS recurrent rule)."""
    sp = get_space(space)
    rng = np.random.default_rng([seed, RANDOM_STREAM])
    cells = sp.random_cells(rng, fixed_reduction)
    return Genotype(sp.name, cells, arch=sp.arch(cells))


def resolve_genotype(
    spec: str,
    searched: str | Path = "genotype.json",
    key: str = "train.genotype",
    space: str | None = None,
    seed: int = 0,
    fixed_reduction: bool = False,
) -> Genotype:
    """The genotype `spec` names: `searched` (the search's `genotype.json`), a published name,
    a NAS-Bench-201 architecture string (`|op~0|+|...|`), a genotype JSON file, or `random`
    (a random cell of the search `space`, drawn from `seed`; `random_genotype`).

    Anything else is a `UserError` naming `key` and listing what is allowed."""
    spec = spec.strip()
    kind = genotype_kind(spec)
    if kind == "searched":
        return load_genotype(searched)
    if kind == "random":
        if space is None:
            raise UserError(
                f"{key} = 'random': a random cell is drawn from a params file's search.space "
                "and common.seed (train.genotype: random); name a genotype here"
            )
        return random_genotype(space, seed, fixed_reduction)
    if kind == "published":
        return published(spec).genotype
    if kind == "string":
        try:
            cell = nb201.from_string(spec)
        except ValueError as exc:
            why = f"{_shown(spec)} is not a NAS-Bench-201 string: {_cut(exc)}"
            raise UserError(f"{key}: {why}") from None
        return Genotype(nb201.SPACE.name, {"cell": cell}, arch=nb201.to_string(cell))
    shown = _shown(spec)
    if spec.endswith(".json") or is_file(spec):
        if not is_file(spec):
            raise UserError(f"{key} = {shown}: no such genotype file")
        return load_genotype(spec, f"correct the file or set {key} to another genotype")
    close = difflib.get_close_matches(spec.upper()[:100], PUBLISHED, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UserError(
        f"{key} = {shown}: not a published genotype, a NAS-Bench-201 string or a genotype file;"
        f" {hint}use {SEARCHED!r} (the searched cells), {RANDOM!r} (a random cell of the"
        f" search space) or one of: {', '.join(PUBLISHED)}"
    )


def is_file(spec: str | Path) -> bool:
    """Whether `spec` names a regular file; False for a name the system cannot look up (too
    long, a NUL byte) instead of an OSError."""
    try:
        return Path(spec).is_file()
    except (OSError, ValueError):
        return False


def _cut(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def _shown(spec: str) -> str:
    """`spec` quoted, cut to a readable length."""
    text = repr(spec)
    return text if len(text) <= 100 else text[:97] + "..."


# --- recurrent cells (the language-model track) --------------------------------------------
# (op, predecessor) of nodes 1..8, concat 1..8: DARTS_V1 / DARTS_V2 from quark0/darts
# `rnn/genotypes.py`, GDAS from NAS-Projects `lib/nas_rnn/genotypes.py`
# (docs/algorithms.md#published-genotypes). Named with an `_RNN` suffix beside the CNN cells of the
# same papers. The ImageNet width does not apply (0).


def _rnn(entries: list[tuple[str, int]]) -> Genotype:
    nodes = tuple((entry,) for entry in entries)
    g = Genotype("rnn", {"rnn": CellSpec(inputs=1, nodes=nodes, concat=tuple(range(1, 9)))})
    g.validate()
    return g


# Sources: docs/algorithms.md#published-genotypes.
_RNN_DARTS_SRC = "DARTS, quark0/darts rnn/genotypes.py"
_RNN_GDAS_SRC = "GDAS CVPR 2019, NAS-Projects lib/nas_rnn/genotypes.py"
_DARTS_V1_RNN = [("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4),
                 ("identity", 1), ("relu", 5), ("relu", 1)]  # fmt: skip
_DARTS_V2_RNN = [("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2),
                 ("sigmoid", 5), ("tanh", 3), ("relu", 5)]  # fmt: skip
_GDAS_RNN = [("relu", 0), ("relu", 0), ("identity", 1), ("relu", 1), ("tanh", 0),
             ("relu", 2), ("identity", 4), ("identity", 2)]  # fmt: skip

PUBLISHED.update(
    {
        p.name: p
        for p in (
            Published("DARTS_V1_RNN", _rnn(_DARTS_V1_RNN), _RNN_DARTS_SRC, 0),
            Published("DARTS_V2_RNN", _rnn(_DARTS_V2_RNN), _RNN_DARTS_SRC, 0),
            Published("GDAS_RNN", _rnn(_GDAS_RNN), _RNN_GDAS_SRC, 0),
        )
    }
)
