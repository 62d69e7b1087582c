"""The GDAS sampler and supernets: one-hot forward, soft gradient, Gumbel-max frequencies,
only the sampled op executed per edge, one sample per network or per cell."""

import math

import pytest
import torch
import torch.nn.functional as F

from dnas.search import gdas
from dnas.search.gdas import gumbel_noise, hard_gumbel_softmax, tau_at
from dnas.search.supernet import DartsSupernet, MixedEdge, Nb201Supernet

# 99.9% quantiles of the chi-square distribution (independent tables).
CHI2_999 = {4: 18.467, 7: 24.322}


def test_forward_is_one_hot_at_the_sampled_index():
    alpha = torch.randn(14, 8)
    weights, index = hard_gumbel_softmax(alpha, tau=3.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(weights.detach(), F.one_hot(index, 8).float())


def test_gradient_is_the_soft_samples_gradient():
    """Straight-through: d(sum c*hard)/d alpha equals d(sum c*y_soft)/d alpha for the same noise."""
    torch.manual_seed(1)
    alpha = torch.randn(6, 5, requires_grad=True)
    c = torch.randn(6, 5)
    tau = 2.0
    hard, _ = hard_gumbel_softmax(alpha, tau, torch.Generator().manual_seed(7))
    (grad_hard,) = torch.autograd.grad((hard * c).sum(), alpha)

    g = gumbel_noise(alpha.shape, torch.Generator().manual_seed(7), "cpu")
    y_soft = F.softmax((F.log_softmax(alpha, -1) + g) / tau, dim=-1)
    (grad_soft,) = torch.autograd.grad((y_soft * c).sum(), alpha)
    torch.testing.assert_close(grad_hard, grad_soft)
    assert grad_hard.abs().min() > 0  # every logit of every row gets a gradient


@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_sample_frequencies_follow_softmax_alpha(tau):
    """Gumbel-max: P(index = k) = softmax(alpha)_k whatever tau is (chi-square at 99.9%)."""
    alpha = torch.tensor([1.5, 0.0, -1.0, 0.5, 0.2, -0.3, 1.0, -2.0])
    n = 40_000
    _, index = hard_gumbel_softmax(
        alpha.expand(n, -1), tau, torch.Generator().manual_seed(int(tau * 10))
    )
    counts = torch.bincount(index, minlength=8).double()
    expected = n * torch.softmax(alpha.double(), 0)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < CHI2_999[7], (counts, expected)


def test_noise_stays_finite_at_the_extremes(monkeypatch):
    for value in (0.0, 1.0):
        monkeypatch.setattr(gdas.torch, "rand", lambda shape, v=value, **kw: torch.full(shape, v))
        g = gumbel_noise(torch.Size([3, 4]), None, "cpu")
        assert torch.isfinite(g).all()
        weights, _ = hard_gumbel_softmax(torch.zeros(3, 4), 0.1)
        assert torch.isfinite(weights).all()


def test_tau_decays_linearly_to_tau_min_at_the_last_epoch():
    taus = [tau_at(e, 5, 10.0, 0.1) for e in range(5)]
    assert taus[0] == 10.0 and math.isclose(taus[-1], 0.1)
    steps = [a - b for a, b in zip(taus, taus[1:])]
    assert all(math.isclose(s, steps[0]) for s in steps)


def _count_calls(net):
    calls = {}

    def hook(name):
        def fn(*_):
            calls[name] = calls.get(name, 0) + 1

        return fn

    for name, mod in net.named_modules():
        if isinstance(mod, MixedEdge):
            for k, op in enumerate(mod.ops):
                op.register_forward_hook(hook((name, k)))
    return calls


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_only_the_sampled_op_runs_on_each_edge(space):
    torch.manual_seed(0)
    net = DartsSupernet(1, 10, 4, 3) if space == "darts" else Nb201Supernet(1, 10, 4, 1)
    net.generator = torch.Generator().manual_seed(3)
    calls = _count_calls(net)
    sampled = []
    original = net.sample

    def recording_sample(*a, **kw):
        draws = original(*a, **kw)
        sampled.extend(draws)
        return draws

    net.sample = recording_sample
    net(torch.randn(2, 1, 8, 8))
    edges = [name for name, m in net.named_modules() if isinstance(m, MixedEdge)]
    ran = {}
    for (edge, k), n in calls.items():
        assert n == 1
        ran.setdefault(edge, []).append(k)
    assert sorted(ran) == sorted(edges)  # every edge ran ...
    assert all(len(ks) == 1 for ks in ran.values())  # ... exactly one op
    expected = [k for _, indices in sampled for k in indices]
    assert [ran[e][0] for e in edges] == expected  # ... the sampled one


def test_architecture_gradient_reaches_every_alpha_of_a_used_edge():
    """dL/dA_k = dL/dw_idx * dy_idx/dA_k: the whole row gets a gradient through the softmax,
    unless the sampled op is 'none' (its output, and so dL/dw_idx, is zero)."""
    torch.manual_seed(0)
    net = DartsSupernet(1, 10, 4, 3)  # cells: normal, reduce, reduce
    net.generator = torch.Generator().manual_seed(0)
    draws = net.sample()
    net.sample = lambda *a, **kw: draws
    F.cross_entropy(net(torch.randn(8, 1, 8, 8)), torch.arange(8)).backward()
    for cell_type, (_, indices) in zip(net.cell_sequence[:2], draws[:2]):
        grad = net.alphas[cell_type].grad
        for row, k in enumerate(indices):
            if k == 0:  # 'none'
                assert (grad[row] == 0).all()
            else:
                assert (grad[row] != 0).all()


def test_weight_step_leaves_alpha_without_gradient():
    net = DartsSupernet(1, 10, 4, 3)
    net(torch.randn(4, 1, 8, 8), detach_alpha=True).sum().backward()
    assert all(a.grad is None for a in net.arch_parameters())


def test_unselected_grad_keeps_the_value_and_adds_gradient():
    """AutoDL NB201: adding the zero weights of unselected ops changes gradients, not values."""
    x = torch.randn(4, 1, 8, 8)
    outs, grads = [], []
    for flag in (False, True):
        torch.manual_seed(0)
        net = Nb201Supernet(1, 10, 4, 1)
        net.unselected_grad = flag
        net.generator = torch.Generator().manual_seed(5)
        out = net(x)
        out.sum().backward()
        outs.append(out.detach())
        grads.append(net.alphas["cell"].grad.clone())
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("per, distinct", [("network", False), ("cell", True)])
def test_sample_per_network_or_per_cell(per, distinct):
    net = Nb201Supernet(1, 10, 4, 3)  # 9 cells of one type
    net.sample_per = per
    net.generator = torch.Generator().manual_seed(0)
    draws = net.sample()
    assert len(draws) == 9
    different = any(idx != draws[0][1] for _, idx in draws[1:])
    assert different == distinct
