"""The search spaces' one home (dnas.spaces.registry, dnas.spaces.space.Space): outside the
registry no code compares a space's name, and a space added to the registry is picked up
wherever a space is asked for (the genotype codec, random cells, the networks, the parameter
count, the track checks, the figures, `dnas genotype info`)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import get_args

import pytest
import torch

from dnas.errors import UserError
from dnas.spaces.genotype import Genotype, load_genotype, save_genotype
from dnas.spaces.nb201 import NB201_OPS, Nb201Space
from dnas.spaces.registry import SPACES, get_space
from tests.importgraph import ROOT, import_graph

# Where a space's name may be compared: the registry.
ALLOWED = {"src/dnas/spaces/registry.py"}


def _names_a(node: ast.expr, word: str) -> bool:
    """With word "space": `space`, `x.space`, `genotype.space`, `self.search.space`,
    `space_name`, and the lookups `d["space"]`, `d.get("search.space")`."""
    if isinstance(node, ast.Name):
        return node.id == word or node.id.endswith(f"_{word}") or node.id.startswith(f"{word}_")
    if isinstance(node, ast.Attribute):
        return node.attr == word
    key = None
    if isinstance(node, ast.Subscript):
        key = node.slice
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        key = node.args[0] if node.func.attr == "get" else None
    return isinstance(key, ast.Constant) and str(key.value).split(".")[-1] == word


def _literals(node: ast.expr) -> list[str]:
    """The string literals of `node`: itself, or the items of a tuple, list or set literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for item in node.elts for s in _literals(item)]
    return []


def _space_only_names() -> set[str]:
    """Space names that are no algorithm's (a literal "darts" may name the DARTS algorithm)."""
    from dnas.algorithms import ALGORITHMS

    return set(SPACES) - set(ALGORITHMS)


def name_comparisons(
    source: str, space_names: set[str], word: str = "space", names: set[str] = frozenset()
) -> list[tuple[int, str]]:
    """(line, code) of every comparison of a `word`-naming expression (a space, an algorithm)
    with a string literal, of anything with a literal in `space_names` (names only that kind of
    thing has: `kind == "nb201"`), and of any comparison holding a literal in `names` anywhere
    in a side whose code mentions `word` (`get_algorithm(n).name == "gdas"`). For `in`, the
    literals are those of the collection on the right (`"rnn" in raw` asks for a key)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if names:
            inside = {sub.value for side in operands for sub in ast.walk(side)
                      if isinstance(sub, ast.Constant) and isinstance(sub.value, str)}  # fmt: skip
            if inside & names and any(word in ast.unparse(side) for side in operands):
                found.append((node.lineno, ast.unparse(node)))
                continue
        for op, left, right in zip(node.ops, operands, operands[1:]):
            membership = isinstance(op, (ast.In, ast.NotIn))
            literals = _literals(right) if membership else _literals(left) + _literals(right)
            named = _names_a(left, word) or (not membership and _names_a(right, word))
            if (literals and named) or set(literals) & space_names:
                found.append((node.lineno, ast.unparse(node)))
                break
    return found


def _scanned() -> list[Path]:
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "stages").rglob("*.py"))
    out = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel not in ALLOWED:
            out.append(path)
    return out


def test_no_code_outside_the_registry_compares_a_space_name():
    names = _space_only_names()
    found = {
        path.relative_to(ROOT).as_posix(): hits
        for path in _scanned()
        if (hits := name_comparisons(path.read_text(encoding="utf-8"), names))
    }
    assert not found, f"ask dnas.spaces.registry.get_space(...) instead: {found}"


def test_the_scan_finds_name_comparisons_and_passes_registry_questions():
    names = _space_only_names()
    assert names == {"nb201", "rnn"}
    flagged = """
if g.space == "rnn": pass
if space in ("darts", "nb201"): pass
if "darts" != self.search.space: pass
if kind == "nb201": pass
x = s.space not in ["rnn"]
if params.get("search.space") != "nb201": pass
if genotype["space"] in {"darts"}: pass
"""
    assert [line for line, _ in name_comparisons(flagged, names)] == [2, 3, 4, 5, 6, 7, 8]
    fine = """
if get_space(g.space).text: pass
if algorithm == "darts": pass
if op != "none": pass
if space is None: pass
if SPACES.get(space) is not None: pass
if "rnn" not in raw.get("search", {}): pass
if params.get("search.dataset") == "cifar10": pass
"""
    assert name_comparisons(fine, names) == []
    # the scan covers the files that asked by name before the registry
    scanned = {p.relative_to(ROOT).as_posix() for p in _scanned()}
    for rel in ("config/search.py", "config/params.py", "cli.py", "spaces/genotype.py",
                "models/__init__.py", "report.py"):  # fmt: skip
        assert f"src/dnas/{rel}" in scanned
    assert "stages/search.py" in scanned


def test_the_config_names_the_registered_spaces():
    from dnas.config import Search

    assert get_args(Search.model_fields["space"].annotation) == tuple(SPACES)


def test_an_unknown_space_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown space 'resnet'; known: darts, nb201, rnn"):
        get_space("resnet")


def test_each_space_module_defines_its_registered_space():
    from dnas.spaces import darts, nb201, rnn

    assert SPACES == {"darts": darts.SPACE, "nb201": nb201.SPACE, "rnn": rnn.SPACE}
    assert (darts.SPACE.ops, nb201.SPACE.ops, rnn.SPACE.ops) == (
        darts.DARTS_OPS, nb201.NB201_OPS, rnn.RNN_OPS
    )
    # exactly one text space, one with a fixed cell, one in the benchmark, as the papers have
    assert [s.name for s in SPACES.values() if s.text] == ["rnn"]
    assert [s.name for s in SPACES.values() if s.fixed_cells] == ["darts"]
    assert [s.name for s in SPACES.values() if s.benchmark] == ["nb201"]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_a_space_names_a_network_the_models_package_imports(name):
    """`Space.network` is a path, not an import (the networks import the spaces); the models
    package imports the module statically, so the import graph and the stages' deps see it."""
    from dnas.models import network_builder

    space = SPACES[name]
    module = space.network.partition(":")[0]
    assert callable(network_builder(space))
    assert module in import_graph()["dnas.models"]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_random_cells_of_every_space_are_genotypes_of_it(name):
    from dnas.spaces.published import random_genotype

    for seed in range(3):
        g = random_genotype(name, seed)
        assert Genotype.from_json(json.loads(json.dumps(g.to_json()))) == g
        assert set(g.cells) == set(SPACES[name].cells)


# --- a space added to the registry ----------------------------------------------------------

# A three-op subspace of NAS-Bench-201 (as a size- or op-restricted NATS search would be): the
# NB201 cell graph and network, no architecture string or benchmark, an image space.
TOY_OPS = ("none", "skip_connect", "nor_conv_3x3")


class ToySpace(Nb201Space):
    def arch(self, cells):
        return None


TOY = ToySpace(
    name="toy", ops=TOY_OPS, cells=("cell",), inputs=1, nodes=3,
    network="dnas.models.nb201_net:build", paper_size=(8, 1),
)  # fmt: skip


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(SPACES, "toy", TOY)
    return TOY


def _toy_json(op: str = "nor_conv_3x3") -> dict:
    nodes = [[[op, j] for j in range(i)] for i in range(1, 4)]
    return {"space": "toy", "cells": {"cell": {"inputs": 1, "nodes": nodes, "concat": [3]}}}


def test_a_registered_space_is_a_known_space(toy):
    assert get_space("toy") is toy
    with pytest.raises(ValueError, match="known: darts, nb201, rnn, toy"):
        get_space("resnet")


def test_the_genotype_codec_follows_a_registered_space(toy, tmp_path):
    g = Genotype.from_json(_toy_json())
    assert g.ops == TOY_OPS and g.arch is None  # no string: the toy has none
    save_genotype(tmp_path / "g.json", g)
    assert json.loads((tmp_path / "g.json").read_text())["ops"] == list(TOY_OPS)
    assert load_genotype(tmp_path / "g.json") == g
    # an NB201 op outside the toy's set is refused, as is a cell of another shape
    assert "nor_conv_1x1" in NB201_OPS
    with pytest.raises(ValueError, match="unknown op 'nor_conv_1x1'"):
        Genotype.from_json(_toy_json("nor_conv_1x1"))
    bad = _toy_json()
    bad["cells"]["cell"]["nodes"][2] = [["skip_connect", 2]]
    with pytest.raises(ValueError, match="exactly one edge from each of nodes 0..2"):
        Genotype.from_json(bad)
    with pytest.raises(ValueError, match=r"a toy genotype has cells \['cell'\], got \['normal'\]"):
        Genotype("toy", {"normal": g.cells["cell"]}).validate()


def test_random_cells_of_a_registered_space(toy):
    from dnas.spaces.published import random_genotype

    drawn = {random_genotype("toy", seed).cells["cell"].nodes for seed in range(40)}
    ops = {op for nodes in drawn for node in nodes for op, _ in node}
    assert ops == set(TOY_OPS)  # all three, and nothing else
    assert len(drawn) > 30


def test_a_registered_space_builds_its_network_and_counts_it(toy):
    from types import SimpleNamespace

    from dnas.evaluate import count_parameters, genotype_params
    from dnas.models import build_model, build_network
    from dnas.models.nb201_net import Nb201Network

    g = Genotype.from_json(_toy_json())
    net = build_network(g, 1, 10, 8, 1)
    assert isinstance(net, Nb201Network)
    assert net(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    data = SimpleNamespace(channels=1, num_classes=10)
    config = {"in_channels": 1, "num_classes": 10, "channels": 8, "layers": 1}
    assert genotype_params(g, data) == count_parameters(build_model(g, config))  # paper_size
    SPACES["toy"] = dataclasses.replace(TOY, paper_size=(16, 1))
    assert genotype_params(g, data) > count_parameters(build_model(g, config))


def test_the_checks_and_figures_ask_a_registered_space(toy):
    from dnas.cli import default_size
    from dnas.config import Prepare, check_track
    from dnas.plots.cells import cells_heading

    g = Genotype.from_json(_toy_json())
    prepare = Prepare(datasets=["digits", "pydoc"])
    assert check_track(g, "mine.json", "digits", prepare) is False
    with pytest.raises(UserError, match="a toy CNN cell: train.dataset 'pydoc' must be an image"):
        check_track(g, "mine.json", "pydoc", prepare)
    assert default_size("mine.json", "toy", "cifar10") == (8, 1)
    assert cells_heading("searched", "toy", ["cell"]) == "Searched cells (toy)"
    assert cells_heading("searched", "darts", ["normal"]).endswith(", fixed reduction cell")


def test_a_registered_text_space_takes_the_language_model_track(toy, monkeypatch):
    """The same cells on the text track: the track checks follow the space's `text`."""
    from dnas.config import Prepare, check_track

    monkeypatch.setitem(SPACES, "toy", dataclasses.replace(TOY, text=True))
    g = Genotype.from_json(_toy_json())
    prepare = Prepare(datasets=["digits", "pydoc"])
    assert check_track(g, "mine.json", "pydoc", prepare) is True
    with pytest.raises(UserError, match="a recurrent cell: train.dataset 'digits' must be a text"):
        check_track(g, "mine.json", "digits", prepare)

