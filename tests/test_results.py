"""The same-results checks CI runs (.ci/same_results.py, dnas.results) on the committed
reference: a number perturbed within its tolerance passes, beyond it fails, and a changed
genotype fails whatever the tolerances."""

import json
from pathlib import Path

import pytest

from dnas.results import TOLERANCES, genotype_consistent, load_metrics, lookup, within_tolerance

ROOT = Path(__file__).resolve().parents[1]


def _read(path: str) -> str | None:
    f = ROOT / path
    return f.read_text() if f.is_file() else None


def _perturbed(metrics: dict, path: str, key: str, factor: float) -> dict:
    """A copy of `metrics` with path:key moved by `factor` times its tolerance."""
    out = json.loads(json.dumps(metrics))
    kind, tol = TOLERANCES[(path, key)]
    node = out[path]
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    step = tol if kind == "abs" else tol * abs(node[last])
    node[last] = node[last] + factor * step
    return out


def test_the_reference_agrees_with_itself():
    reference = load_metrics(_read)
    assert set(reference) == {p for p, _ in TOLERANCES}
    assert within_tolerance(reference, reference) == []


@pytest.mark.parametrize(("path", "key"), sorted(TOLERANCES))
def test_a_number_within_tolerance_passes_and_beyond_fails(path, key):
    reference = load_metrics(_read)
    lookup(reference[path], key)  # present in the committed metrics
    for factor in (0.9, -0.9):
        assert within_tolerance(reference, _perturbed(reference, path, key, factor)) == []
    for factor in (1.1, -1.1):
        found = within_tolerance(reference, _perturbed(reference, path, key, factor))
        assert [f.what for f in found] == [f"{path}:{key}"]


def test_a_missing_metric_fails():
    reference = load_metrics(_read)
    measured = json.loads(json.dumps(reference))
    del measured["metrics/eval.json"]["params"]
    found = within_tolerance(reference, measured)
    assert [f.what for f in found] == ["metrics/eval.json:params"]


def test_the_committed_genotype_matches_its_metrics_and_a_changed_one_fails(digits_prepared):
    genotype = json.loads(_read("genotype.json"))
    search = json.loads(_read("metrics/search.json"))
    assert genotype_consistent(genotype, search, digits_prepared) == []
    # another op on one edge of the normal cell: another architecture, another size
    changed = json.loads(json.dumps(genotype))
    node = changed["cells"]["normal"]["nodes"][0]
    node[0][0] = "sep_conv_5x5" if node[0][0] != "sep_conv_5x5" else "skip_connect"
    found = genotype_consistent(changed, search, digits_prepared)
    assert [f.what for f in found] == ["genotype.json"]
