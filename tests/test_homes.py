"""The homes of the search algorithms (docs/architecture.md#search-algorithms): one module per
algorithm behind one interface, one registry that everything else asks, supernets configured
when they are built. The scans read the source with `ast`; the toy algorithm shows that a new
algorithm needs its own module (here: this file) and a line in the registry, nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from dnas import algorithms
from dnas.algorithms import ARCH_STEP_KNOBS, SHARED_KNOBS, AlgorithmSpec
from dnas.config import Search, parse_params
from dnas.errors import UserError
from dnas.search import registry
from dnas.search.algorithm import Algorithm
from dnas.search.loop import run_search
from tests.test_spaces_registry import name_comparisons

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
REGISTRIES = {"src/dnas/algorithms.py", "src/dnas/search/registry.py"}


def _sources(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def test_no_code_compares_an_algorithms_name_outside_the_registry():
    """The spaces' scanner (tests/test_spaces_registry.py), asked about algorithms."""
    names = set(registry.ALGORITHMS)
    found = []
    for rel, _ in _sources("src", "stages"):
        if rel in REGISTRIES:
            continue
        source = (ROOT / rel).read_text()
        hits = name_comparisons(source, set(), word="algorithm", names=names)
        found += [f"{rel}:{line}: {code}" for line, code in hits]
    assert not found, "\n".join(found)


def test_the_scan_finds_an_algorithms_name_compared():
    flagged = """
if s.algorithm == "gdas": pass
if ident.get("search.algorithm") != "random": pass
if get_algorithm(n).name in ("darts", "drnas"): pass
if algorithm_name == "x": pass
"""
    hits = name_comparisons(flagged, set(), word="algorithm", names=set(registry.ALGORITHMS))
    assert [line for line, _ in hits] == [2, 3, 4, 5]
    fine = """
if ALGORITHMS[s.algorithm].single_level: pass
if kind == "random": pass
if mode == "softmax": pass
"""
    assert name_comparisons(fine, set(), word="algorithm", names=set(registry.ALGORITHMS)) == []


SUPERNET_STATE = {"generator", "sample_per", "unselected_grad", "algorithm", "alphas",
                  "last_weights", "cell_sequence"}  # fmt: skip


def test_no_supernet_attribute_is_set_after_construction():
    """Only the supernet's own methods (self.x = ...) set what its forward pass reads; the
    loops, DrNAS's next stage and the benchmarks pass it to the constructor."""
    found = []
    for rel, tree in _sources("src", "bench"):
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if (
                        isinstance(sub, ast.Attribute)
                        and sub.attr in SUPERNET_STATE
                        and not (isinstance(sub.value, ast.Name) and sub.value.id == "self")
                    ):
                        found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def test_the_table_and_the_classes_name_the_same_algorithms():
    """dnas.algorithms' rows (what config checks) and the search's classes (what runs) agree,
    and each class lives in the module its row names and carries its row's facts."""
    assert list(registry.ALGORITHMS) == list(algorithms.ALGORITHMS)
    for name, cls in registry.ALGORITHMS.items():
        spec = algorithms.ALGORITHMS[name]
        assert cls.__module__ == f"dnas.search.{spec.module}"
        assert (cls.uses_tau, cls.second_order, cls.knobs) == (
            spec.uses_tau, spec.second_order, spec.knobs)  # fmt: skip


def test_every_search_knob_has_an_owner():
    """Each `search.*` key is shared by every algorithm or read by named ones: a knob nobody
    claims is either dead or read behind the interface's back."""
    owned = set(SHARED_KNOBS) | set(ARCH_STEP_KNOBS)
    for spec in algorithms.ALGORITHMS.values():
        owned |= set(spec.knobs)
    assert set(Search.model_fields) - owned == set()
    assert owned - set(Search.model_fields) == set()  # no stale names either


def test_the_registry_refuses_an_unknown_name_and_config_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown algorithm 'pcdarts'; known: 'gdas'"):
        registry.get_algorithm("pcdarts")
    with pytest.raises(UserError, match="search.algorithm: unknown algorithm 'gdsa'.*'gdas'"):
        parse_params({"search": {"algorithm": "gdsa"}})


def _sharpened():
    """A toy algorithm: DARTS with softmax(alpha / 0.5), first order only (its row must exist
    before its class is made, as `dnas.algorithms` comes before the search code)."""

    class Sharpened(Algorithm):
        name = "sharpened"
        calls = 0

        def mix(self, alpha, tau=None, mask=None, generator=None):
            type(self).calls += 1
            if mask is not None:
                alpha = alpha.masked_fill(~mask, float("-inf"))
            return torch.softmax(alpha / 0.5, dim=-1)

    return Sharpened


def test_a_new_algorithm_is_one_class_and_one_row(monkeypatch, tmp_path, digits_prepared):
    """Given its row and its class, the toy algorithm is accepted by the params (which ask the
    table what it combines with), runs through the shared loop, and its mixing is what the
    supernet used."""
    spec = AlgorithmSpec("sharpened", "tests", "a toy", knobs=ARCH_STEP_KNOBS)
    monkeypatch.setitem(algorithms.ALGORITHMS, spec.name, spec)
    Sharpened = _sharpened()
    monkeypatch.setitem(registry.ALGORITHMS, Sharpened.name, Sharpened)
    with pytest.raises(UserError, match="order 2.*needs algorithm darts or drnas"):
        parse_params({"search": {"algorithm": "sharpened", "order": 2}})
    small = {k: v[:128] for k, v in digits_prepared.card["splits"].items()}
    import dataclasses

    data = dataclasses.replace(digits_prepared, card={**digits_prepared.card, "splits": small})
    search = {"algorithm": "sharpened", "epochs": 2, "channels": 4, "layers": 3,
              "batch_size": 64}  # fmt: skip
    p = parse_params({"search": search})
    result = run_search(p, data, CPU, tmp_path / "live", tmp_path / "ckpt")
    assert Sharpened.calls > 0
    assert result.genotype.space == "darts" and set(result.genotype.cells) == {"normal", "reduce"}
    assert "final_tau" not in result.metrics  # its row says it has no temperature
    # The alphas moved: the architecture step ran on the toy's weights.
    probs = [v for edges in result.genotype.probs.values() for row in edges.values()
             for v in row.values()]  # fmt: skip
    assert max(probs) - min(probs) > 1e-4
