"""Random search with weight sharing (`search.algorithm: random`, dnas.search.random_search):
the sampler is uniform over the space's cells, the selection keeps the best score, a run is the
same for the same seed, the op probabilities it records are the sampler's, and the whole DVC
pipeline runs with it."""

import itertools
import json
from math import comb

import pytest
import torch
import yaml
from scipy.stats import chi2
from test_pipeline import ROOT, repo  # noqa: F401 (the e2e repository fixture)

from dnas.config import parse_params
from dnas.search import random_search as rs
from dnas.search.loop import make_supernet, run_search
from dnas.spaces import darts, nb201
from dnas.spaces.ops import DARTS_OPS, NB201_OPS

CPU = torch.device("cpu")


def _params(space: str = "darts", seed: int = 0, **search) -> object:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["common"].update(seed=seed, device="cpu")
    raw["search"].update(algorithm="random", space=space, epochs=2, channels=4, batch_size=64)
    if space == "nb201":
        raw["search"]["layers"] = 1
    raw["search"].update(search)
    return parse_params(raw)


def _net(space: str):
    return make_supernet(_params(space).search, _FakeData())


class _FakeData:
    channels, num_classes = 1, 10


def _chi2_ok(counts: list[int]) -> bool:
    """Counts consistent with a uniform distribution (generous: p > 1e-4)."""
    n, k = sum(counts), len(counts)
    expected = n / k
    stat = sum((c - expected) ** 2 / expected for c in counts)
    return chi2.sf(stat, k - 1) > 1e-4


def test_nb201_draws_every_op_uniformly_on_every_edge_and_pairs_independently():
    net, gen = _net("nb201"), torch.Generator().manual_seed(7)
    draws = [net.random_arch(gen)["cell"] for _ in range(3000)]
    edges = len(nb201.edges())
    for e in range(edges):
        assert _chi2_ok([sum(d[e] == k for d in draws) for k in range(len(NB201_OPS))]), e
    # joint: the 25 op pairs of two edges are uniform too (the edges are independent)
    pairs = [sum((d[0], d[5]) == p for d in draws) for p in itertools.product(range(5), repeat=2)]
    assert _chi2_ok(pairs)
    # and a lopsided sampler would fail the same check
    assert not _chi2_ok([sum(d[0] == k for d in draws) + (300 if k == 0 else 0) for k in range(5)])


def test_darts_draws_two_distinct_inputs_per_node_uniformly_each_with_a_real_op():
    net, gen = _net("darts"), torch.Generator().manual_seed(3)
    none = DARTS_OPS.index("none")
    draws = [net.random_arch(gen) for _ in range(2500)]
    rows = darts.edges(net.steps)
    for t in ("normal", "reduce"):
        for i in range(net.steps):
            node = [e for e, (dst, _) in enumerate(rows) if dst == darts.INPUTS + i]
            n = len(node)
            inputs = [tuple(j for j, e in enumerate(node) if d[t][e] != none) for d in draws]
            assert all(len(x) == 2 for x in inputs)  # exactly 2 distinct inputs, never 'none'
            pairs = list(itertools.combinations(range(n), 2))
            assert len(pairs) == comb(n, 2)
            if n > 2:  # node 2 has only the pair (0, 1)
                assert _chi2_ok([inputs.count(p) for p in pairs]), (t, i)
            ops = [d[t][e] for d in draws for e in node if d[t][e] != none]
            assert _chi2_ok([ops.count(k) for k in range(1, len(DARTS_OPS))]), (t, i)


def test_the_recorded_probabilities_are_the_samplers_marginals():
    net, gen = _net("darts"), torch.Generator().manual_seed(1)
    probs = net.uniform_probs()
    draws = [net.random_arch(gen)["normal"] for _ in range(4000)]
    for e, label in enumerate(darts.edge_labels(net.steps)):
        row = probs["normal"][label]
        assert abs(sum(row.values()) - 1) < 1e-9
        seen = sum(d[e] != 0 for d in draws) / len(draws)
        assert abs(seen - (1 - row["none"])) < 0.03, label
    row = _net("nb201").uniform_probs()["cell"]["1<-0"]
    assert row == {op: 0.2 for op in NB201_OPS}


def test_a_drawn_architecture_is_a_valid_genotype_of_its_space():
    for space in ("darts", "nb201"):
        net, gen = _net(space), torch.Generator().manual_seed(0)
        for _ in range(50):
            g = net.arch_genotype(net.random_arch(gen))
            g.validate()
            if space == "nb201":
                assert nb201.from_string(g.arch) == g.cells["cell"]


def test_the_selection_keeps_the_best_score_and_finalists_are_rescored(monkeypatch):
    """A crafted score: each architecture's accuracy is a known function of its ops, the
    whole-split score another one; the winner is the best under the score that decides."""
    net = _net("nb201")
    first = lambda arch: sum(arch["cell"]) % 7  # noqa: E731 (batches' score)
    whole = lambda arch: arch["cell"][0]  # noqa: E731 (the whole split's)

    def fake_score(net, arch, batches, fast, device):
        value = whole(arch) if batches == "whole" else first(arch)
        return 0.0, float(value), 100

    class Stream:
        def next_batch(self):
            return None

    monkeypatch.setattr(rs, "score", fake_score)
    s = _params("nb201", random_samples=40, random_score_batches=2).search
    chosen = rs.select(net, torch.Generator().manual_seed(5), Stream(), "whole", s, None, CPU)
    gen = torch.Generator().manual_seed(5)
    archs = [net.random_arch(gen) for _ in range(40)]
    scores = [first(a) for a in archs]
    assert chosen["arch"] == archs[scores.index(max(scores))]  # the first of the best
    assert chosen["score"] == max(scores) and chosen["scores"] == scores
    assert rs.best_index([1.0, 3.0, 3.0, 2.0]) == 1
    # finalists: the best 5 by the batches' score, then the whole split decides among them
    s = _params("nb201", random_samples=40, random_finalists=5).search
    chosen = rs.select(net, torch.Generator().manual_seed(5), Stream(), "whole", s, None, CPU)
    # random_score_batches 1 streams batches (not "whole"), so the first score is `first`
    top = sorted(range(40), key=lambda i: -first(archs[i]))[:5]
    best = max(top, key=lambda i: (whole(archs[i]), -top.index(i)))
    assert chosen["arch"] == archs[best] and chosen["score"] == whole(archs[best])


def test_default_search_runs_and_is_the_same_for_the_same_seed(digits_prepared, tmp_path):
    p = _params("darts", channels=4, random_samples=20)
    a = run_search(p, digits_prepared, CPU, tmp_path / "a")
    b = run_search(p, digits_prepared, CPU, tmp_path / "b")
    a.genotype.validate()
    assert a.genotype == b.genotype and a.genotype.probs == b.genotype.probs
    drop = lambda m: {k: v for k, v in m.items() if k != "cost"}  # noqa: E731
    assert drop(a.metrics) == drop(b.metrics)
    for name in ("genotypes.json", "plots/metrics/acc/valid.tsv", "plots/custom/arch_probs.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # the genotype log holds the selection (after the last epoch), the op probabilities are
    # the sampler's, constant over the epochs
    log = json.loads((tmp_path / "a/genotypes.json").read_text())
    assert log == [{"epoch": 1, **a.genotype.brief()}]
    assert a.genotype.probs == make_supernet(p.search, digits_prepared).uniform_probs()
    assert a.metrics["arch_samples"] == 20 and 0 <= a.metrics["select_best_acc"] <= 100
    assert a.metrics["select_best_acc"] >= a.metrics["select_mean_acc"]
    c = run_search(_params("darts", seed=1, channels=4, random_samples=20), digits_prepared, CPU,
                   tmp_path / "c")  # fmt: skip
    assert c.genotype != a.genotype


def test_random_search_refuses_what_does_not_apply():
    from dnas.errors import UserError

    for bad, message in [
        ({"order": 2}, "order 2"),
        ({"random_finalists": 200}, r"random_finalists \(200\) must not exceed random_samples"),
        ({"random_score_batches": -1}, "search.random_score_batches"),
    ]:
        with pytest.raises(UserError, match=message):
            _params("darts", **bad)


@pytest.mark.e2e
def test_dvc_exp_run_with_random_search_runs_every_stage(repo):  # noqa: F811
    path, run = repo
    _, out = run("dvc", "exp", "run", "-S", "search.algorithm=random", "-n", "rsws")
    for stage in ("validate", "search", "train", "evaluate", "plots"):
        assert f"Running stage '{stage}'" in out, out
    genotype = json.loads((path / "genotype.json").read_text())
    assert set(genotype["cells"]) == {"normal", "reduce"}
    # the recorded probabilities are the sampler's (uniform over the drawn cells' edges)
    edge = genotype["probs"]["normal"]["2<-0"]
    assert abs(edge["none"] - 0.0) < 1e-9 and abs(edge["sep_conv_3x3"] - 1 / 7) < 1e-6
    metrics = json.loads((path / "metrics/search.json").read_text())
    assert metrics["arch_samples"] == 100 and "final_tau" not in metrics
    assert (path / "plots" / "arch_probs.png").read_bytes()[:4] == b"\x89PNG"
    assert 0 <= json.loads((path / "metrics/eval.json").read_text())["test"]["top1"] <= 100
    run("git", "checkout", "-q", ".")
    run("dvc", "checkout", "-q")


@pytest.mark.parametrize("stop_step", [7, 12])  # mid-epoch 2; the end of epoch 2 (6 steps each)
def test_an_interrupted_random_search_resumes_to_the_same_bytes(
    monkeypatch, tmp_path, digits_prepared, stop_step
):
    from dnas.checkpoint import Interrupted
    from dnas.io import MEASURED, dumps_json
    from tests.interrupt import files, interrupt_at

    p = _params("darts", epochs=3, batch_size=128, random_samples=10)
    p = p.model_copy(update={"common": p.common.model_copy(update={"checkpoint_every": 1})})

    def search(root):
        result = run_search(p, digits_prepared, CPU, root / "live", root / "ckpt")
        metrics = {k: v for k, v in result.metrics.items() if k != MEASURED}
        return dumps_json(result.genotype.to_json()) + dumps_json(metrics), files(root / "live")

    expected = search(tmp_path / "a")
    interrupt_at(monkeypatch, rs, stop_step)
    with pytest.raises(Interrupted, match="checkpoint saved"):
        search(tmp_path / "b")
    monkeypatch.undo()
    assert search(tmp_path / "b") == expected


def test_random_presets_follow_the_authors_settings():
    presets = ROOT / "presets"
    load = lambda name: parse_params(yaml.safe_load((presets / f"{name}.yaml").read_text()))  # noqa: E731
    c10 = load("random-nb201-cifar10")
    s = c10.search
    assert (s.algorithm, s.space, s.epochs, s.batch_size, s.channels, s.layers) == (
        "random", "nb201", 250, 64, 16, 5)  # fmt: skip
    optim = (s.lr, s.lr_min, s.weight_decay, s.nesterov, s.grad_clip)
    assert optim == (0.025, 0.001, 5e-4, True, 5)
    assert s.random_samples * s.random_score_batches * s.batch_size == 100 * 512  # AutoDL
    gdas = load("gdas-nb201-cifar10")
    assert c10.train == gdas.train and c10.prepare == gdas.prepare  # the same retraining and data
    for target in ("cifar100", "imagenet16-120"):  # CIFAR-10 searches, as NAS-Bench-201's rows
        p = load(f"random-nb201-{target}")
        assert p.search == s and p.train == c10.train.model_copy(update={"dataset": target})
    d = load("random-darts-cifar10").search
    assert (d.epochs, d.channels, d.layers, d.grad_clip, d.weight_decay) == (150, 24, 8, 1, 3e-4)
    assert (d.random_samples, d.random_score_batches, d.random_finalists) == (1000, 10, 10)
