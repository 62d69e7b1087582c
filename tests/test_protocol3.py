"""The papers' protocol, third round (issue 24): the gradients of unused weights, DARTS's fixed
BPTT in its PTB search, the affine BN of the search-era FRC cell, DARTS's selection of its best
cell by short retrainings."""

import pytest
import torch

from dnas import distributed as dist
from dnas.config import parse_params
from dnas.optim import arch_optimizer, sgd_cosine
from dnas.runtime import FastPath
from dnas.search.steps import SearchState, Steps, weight_step
from dnas.search.supernet import DartsSupernet
from dnas.spaces.ops import DARTS_OPS

CPU = torch.device("cpu")

# --- 1. gradients of the weights a step did not use -------------------------------------------


def _fixed_sample(net: DartsSupernet, op: str):
    """Every edge of every cell samples `op` (a hard one-hot sample, as the sampler returns)."""
    k = DARTS_OPS.index(op)
    n_edges = net.alphas["normal"].shape[0]
    weights = torch.zeros(n_edges, len(DARTS_OPS), dtype=torch.float64)
    weights[:, k] = 1.0
    return [(weights, [k] * n_edges) for _ in net.cell_sequence]


@pytest.mark.parametrize("mode", ["zeros", "none"])
def test_an_unsampled_op_moves_as_sgd_with_a_zero_gradient(mode):
    """GDAS runs only the sampled op of an edge. With `zero_grad: zeros` (the authors' code)
    an op that a step did not sample still takes SGD's step for a zero gradient: weight decay
    and the momentum of its earlier gradients; with `none` SGD skips it. Three real weight
    steps of the supernet: sep_conv_3x3 sampled, then dil_conv_3x3 twice; the sep conv's
    weights against the SGD update written out here."""
    lr, mu, wd = 0.1, 0.9, 3.0e-4
    s = parse_params(
        {"search": {"channels": 4, "layers": 3, "lr": lr, "momentum": mu, "weight_decay": wd,
                    "grad_clip": 0.0, "zero_grad": mode}}  # fmt: skip
    ).search
    assert s.algorithm == "gdas"
    torch.manual_seed(0)
    net = DartsSupernet(1, 10, channels=4, layers=3, algorithm="gdas").double()
    w_opt, scheduler = sgd_cosine(net.weight_parameters(), s)
    st = SearchState(net, w_opt, scheduler, arch_optimizer(s, net))
    how = Steps.of(s, FastPath.resolve(parse_params({}).common, CPU), CPU)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64)
    shard = dist.Shard(x, torch.randint(10, (8,), generator=g), 8)
    conv = net.cells[0].edges[0].ops[DARTS_OPS.index("sep_conv_3x3")]
    params = list(conv.parameters())
    assert params and all(p.dtype == torch.float64 for p in params)

    def step(op: str) -> list[torch.Tensor]:
        net.sample = lambda tau, detach_alpha=False: _fixed_sample(net, op)
        weight_step(st, how, shard, 1.0, (0, 0, 0))
        return [p.detach().clone() for p in params]

    w0 = [p.detach().clone() for p in params]
    w1 = step("sep_conv_3x3")  # sampled: a real gradient
    assert all(not torch.equal(a, b) for a, b in zip(w0, w1))
    buf1 = [(a - b) / lr for a, b in zip(w0, w1)]  # SGD's first step: w1 = w0 - lr * buf1
    w2 = step("dil_conv_3x3")  # not sampled
    w3 = step("dil_conv_3x3")
    if mode == "none":
        assert all(torch.equal(a, b) for a, b in zip(w1, w3))
        return
    for a0, a1, a2, a3 in zip(buf1, w1, w2, w3):
        buf2 = mu * a0 + (0.0 + wd * a1)  # the gradient is zero: only the decay term
        torch.testing.assert_close(a2, a1 - lr * buf2, rtol=1e-9, atol=1e-12)
        buf3 = mu * buf2 + wd * a2
        torch.testing.assert_close(a3, a2 - lr * buf3, rtol=1e-9, atol=1e-12)
    # the move is mostly momentum, not decay: the test sees both
    assert all((b - c).abs().max() > 10 * lr * wd * c.abs().max() for b, c in zip(w1, w2))


def test_every_gdas_preset_and_the_default_use_the_authors_zero_gradients():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    files = [root / "params.yaml", *sorted((root / "presets").glob("*.yaml"))]
    for path in files:
        if path.name == "papers.yaml":
            continue
        raw = yaml.safe_load(path.read_text())
        assert raw["search"]["zero_grad"] == "zeros", path.name
    assert parse_params({}).search.zero_grad == "zeros"


# --- 2. DARTS's PTB search: a fixed BPTT ----------------------------------------------------


@pytest.mark.parametrize("order", [1, 2])
def test_darts_ptb_search_uses_a_fixed_bptt_of_35_or_17(order):
    """quark0/darts rnn/train_search.py comments out the normal noise of the retraining: each
    batch is 35 tokens long, or int(35 / 2) = 17 with probability 0.05. The preset's search
    draws exactly those lengths, about 5 % of them short."""
    from pathlib import Path

    import yaml

    from dnas.data.tokens import sequence_length

    path = Path(__file__).resolve().parents[1] / "presets" / f"darts-v{order}-ptb.yaml"
    r = parse_params(yaml.safe_load(path.read_text())).search.rnn
    g = torch.Generator().manual_seed(0)
    lengths = [sequence_length(g, r.bptt, r.seq_std, r.max_seq_delta) for _ in range(4000)]
    assert set(lengths) == {35, 17}
    assert 0.03 < lengths.count(17) / len(lengths) < 0.07


# --- 3. the search-era FRC cell's BN is affine ----------------------------------------------


def test_frc_search_cell_has_affine_bn_that_trains():
    """The 2019 GDAS FRC search network's `Transition` builds every BN (its preprocessing's
    too) with affine=True, while the searched cells' BN is not affine. The fixed cell's
    scales and shifts exist, are weights of the weight step, and move in one."""
    from dnas.spaces.ops import FixedReductionCell

    s = parse_params({"search": {"channels": 8, "layers": 3, "fixed_reduction": True}}).search
    torch.manual_seed(0)
    net = DartsSupernet(1, 10, channels=8, layers=3, algorithm="gdas", fixed_reduction=True)
    frc = [c for c in net.cells if isinstance(c, FixedReductionCell)]
    assert len(frc) == 2 and all(c.version == "search" for c in frc)
    for cell in frc:
        bns = [m for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert len(bns) == 2 * 2 + 2 + 2 and all(bn.affine for bn in bns)  # + pre0, pre1
    searched = [m for c in net.cells if not isinstance(c, FixedReductionCell)
                for m in c.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # fmt: skip
    assert searched and not any(bn.affine for bn in searched)
    affine = [p for c in frc for m in c.modules() if isinstance(m, torch.nn.BatchNorm2d)
              for p in (m.weight, m.bias)]  # fmt: skip
    ids = {id(p) for p in net.weight_parameters()}
    assert all(id(p) in ids for p in affine)
    before = [p.detach().clone() for p in affine]
    w_opt, scheduler = sgd_cosine(net.weight_parameters(), s)
    st = SearchState(net, w_opt, scheduler, arch_optimizer(s, net))
    how = Steps.of(s, FastPath.resolve(parse_params({}).common, CPU), CPU)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 8, 8, generator=g)
    shard = dist.Shard(x, torch.randint(10, (8,), generator=g), 8)
    weight_step(st, how, shard, 5.0, (0, 0, 0))
    assert all(not torch.equal(a, p) for a, p in zip(before, affine))
