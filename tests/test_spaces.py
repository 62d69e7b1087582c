"""Genotype derivation rules, the NAS-Bench-201 string, and the genotype file."""

import json

import numpy as np
import pytest

from dnas.errors import UserError
from dnas.spaces import darts, nb201
from dnas.spaces.genotype import CellSpec, Genotype, load_genotype, save_genotype
from dnas.spaces.ops import DARTS_OPS, NB201_OPS

K = len(DARTS_OPS)
OP = {name: k for k, name in enumerate(DARTS_OPS)}


def _row(best: str, p: float, none: float = 0.0) -> list[float]:
    row = [(1.0 - p - none) / (K - 2)] * K
    row[OP[best]] = p
    row[OP["none"]] = none
    return row


def test_darts_edges_follow_the_offset_order():
    assert darts.edges()[:5] == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert len(darts.edges()) == 14
    assert darts.edge_labels()[-1] == "5<-4"


def test_darts_rule_on_hand_made_probabilities():
    rows = {
        # node 2: both inputs kept; 'none' is the largest on 2<-1 but is never chosen
        (2, 0): _row("sep_conv_3x3", 0.5),
        (2, 1): _row("skip_connect", 0.2, none=0.6),
        # node 3: input 2 strongest, input 0 second, input 1 dropped
        (3, 0): _row("max_pool_3x3", 0.4),
        (3, 1): _row("dil_conv_5x5", 0.3),
        (3, 2): _row("sep_conv_5x5", 0.7),
        # node 4: a tie between inputs 1 and 3 goes to the lower index; input 2 is best
        (4, 0): _row("avg_pool_3x3", 0.2),
        (4, 1): _row("dil_conv_3x3", 0.35),
        (4, 2): _row("skip_connect", 0.9),
        (4, 3): _row("sep_conv_3x3", 0.35),
        # node 5: all equal -> inputs 0 and 1, first non-'none' op among the tied ones
        **{(5, j): [1.0 / K] * K for j in range(5)},
    }
    probs = np.array([rows[e] for e in darts.edges()])
    cell = darts.derive_cell(probs)
    assert cell.nodes == (  # each node's edges in canonical order: by input node
        (("sep_conv_3x3", 0), ("skip_connect", 1)),
        (("max_pool_3x3", 0), ("sep_conv_5x5", 2)),
        (("dil_conv_3x3", 1), ("skip_connect", 2)),
        (("max_pool_3x3", 0), ("max_pool_3x3", 1)),
    )
    assert cell.concat == (2, 3, 4, 5)


def test_equal_architectures_with_permuted_edges_write_the_same_bytes(tmp_path):
    """A node sums its edges, so [sep5(1), sep3(0)] and [sep3(0), sep5(1)] are one
    architecture: equal genotypes and byte-equal genotype.json (DVC then skips retraining)."""
    import random

    from dnas.spaces.genotype import CellSpec, Genotype, load_genotype, save_genotype
    from dnas.spaces.published import resolve_genotype

    g = resolve_genotype("GDAS_V1", tmp_path / "unused.json")
    rng = random.Random(0)
    for _ in range(5):
        shuffled = {
            name: CellSpec(
                cell.inputs,
                tuple(tuple(rng.sample(node, len(node))) for node in cell.nodes),
                cell.concat,
            )
            for name, cell in g.cells.items()
        }
        permuted = Genotype(g.space, shuffled)
        assert permuted == g
        save_genotype(tmp_path / "a.json", g)
        save_genotype(tmp_path / "b.json", permuted)
        assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
        assert load_genotype(tmp_path / "b.json") == g
    # the order is by input node, so a real difference still shows
    other = Genotype(
        g.space, {**g.cells, "normal": CellSpec(2, ((("none", 0), ("none", 1)),) * 4, (2, 3, 4, 5))}
    )
    assert other != g


def test_nb201_rule_is_per_edge_argmax_including_none():
    probs = np.full((6, 5), 0.1)
    best = ["nor_conv_3x3", "none", "avg_pool_3x3", "skip_connect", "nor_conv_1x1", "none"]
    for e, op in enumerate(best):
        probs[e, NB201_OPS.index(op)] = 0.6
    cell = nb201.derive_cell(probs)
    assert nb201.to_string(cell) == (
        "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    )


EXAMPLE = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
    "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
)


def test_nb201_string_round_trip():
    cell = nb201.from_string(EXAMPLE)
    assert cell.nodes[1] == (("nor_conv_3x3", 0), ("avg_pool_3x3", 1))
    assert nb201.to_string(cell) == EXAMPLE
    rng = np.random.default_rng(0)
    for _ in range(50):
        random = nb201.derive_cell(rng.random((6, 5)))
        assert nb201.from_string(nb201.to_string(random)) == random


@pytest.mark.parametrize(
    "bad",
    [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|",  # two nodes
        "|conv~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|none~1|none~2|",  # unknown op
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~0|+|none~0|none~1|none~2|",  # repeat
        "nor_conv_3x3~0+|a~0|",
    ],
)
def test_nb201_bad_strings_are_rejected(bad):
    with pytest.raises(ValueError):
        nb201.from_string(bad)


def _darts_genotype():
    cell = CellSpec(2, ((("sep_conv_3x3", 0), ("skip_connect", 1)),) * 4, (2, 3, 4, 5))
    return Genotype("darts", {"normal": cell, "reduce": cell}, probs={"normal": {}})


def test_genotype_file_round_trip_is_deterministic(tmp_path):
    g = _darts_genotype()
    save_genotype(tmp_path / "a.json", g)
    save_genotype(tmp_path / "b.json", load_genotype(tmp_path / "a.json"))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert load_genotype(tmp_path / "a.json") == g
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["ops"] == list(DARTS_OPS) and data["space"] == "darts"


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d.update(space="resnet"), "unknown space"),
        (lambda d: d["cells"].pop("normal"), "cells"),
        (lambda d: d["cells"]["normal"]["nodes"][0].__setitem__(0, ["conv9", 0]), "unknown op"),
        (lambda d: d["cells"]["normal"]["nodes"][0].__setitem__(0, ["skip_connect", 7]), "input"),
        (lambda d: d["cells"]["normal"].pop("nodes"), "nodes"),
    ],
)
def test_invalid_genotype_files_are_refused(tmp_path, mutate, words):
    data = _darts_genotype().to_json()
    mutate(data)
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=words):
        load_genotype(path)


def test_missing_or_broken_genotype_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_genotype(tmp_path / "nope.json")
    (tmp_path / "g.json").write_text('{"space": "darts", "cells"')
    with pytest.raises(UserError, match="not a valid genotype"):
        load_genotype(tmp_path / "g.json")
