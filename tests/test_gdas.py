"""The GDAS sampler and supernets: one-hot forward, soft gradient, Gumbel-max frequencies,
only the sampled op executed per edge, one sample per network or per cell."""

import math

import pytest
import torch
import torch.nn.functional as F

from dnas.search import gdas
from dnas.search.gdas import GDAS, tau_at
from dnas.search.gumbel import gumbel_noise, hard_gumbel_softmax
from dnas.search.registry import make_algorithm
from dnas.search.supernet import DartsSupernet, MixedEdge, Nb201Supernet
from tests.straight_through import straight_through

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
    taus = [tau_at(e, 5, 10.0, 0.1, "to_last_epoch") for e in range(5)]
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
    gen = torch.Generator().manual_seed(3)
    net = (
        DartsSupernet(1, 10, 4, 3, algorithm=make_algorithm("gdas"), generator=gen)
        if space == "darts"
        else Nb201Supernet(1, 10, 4, 1, algorithm=make_algorithm("gdas"), generator=gen)
    )
    calls = _count_calls(net)
    sampled = []
    original = net.draws

    def recording_draws(*a, **kw):
        draws = original(*a, **kw)
        sampled.extend((w, idx) for w, idx, _ in draws)
        return draws

    net.draws = recording_draws
    net(torch.randn(2, 1, 8, 8), 10.0)
    edges = [name for name, m in net.named_modules() if isinstance(m, MixedEdge)]
    ran = {}
    for (edge, k), n in calls.items():
        assert n == 1
        ran.setdefault(edge, []).append(k)
    assert all(len(ks) == 1 for ks in ran.values())  # no edge ran more than one op ...
    expected = [k for _, indices in sampled for k in indices]
    assert len(expected) == len(edges)
    for edge, k in zip(edges, expected):  # ... the sampled one; a sampled 'none' is skipped
        assert ran.get(edge, [k]) == [k]
        assert edge in ran or k == 0, edge  # (0 is 'none' in both spaces)
    assert any(k != 0 for k in expected)


def test_architecture_gradient_reaches_every_alpha_of_a_used_edge():
    """dL/dA_k = dL/dw_idx * dy_idx/dA_k: the whole row gets a gradient through the softmax,
    unless the sampled op is 'none' (its output, and so dL/dw_idx, is zero)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = DartsSupernet(
        1, 10, 4, 3, algorithm=make_algorithm("gdas"), generator=gen
    )  # normal, reduce, reduce
    draws = net.draws(10.0)
    net.draws = lambda *a, **kw: draws
    F.cross_entropy(net(torch.randn(8, 1, 8, 8), 10.0), torch.arange(8)).backward()
    for cell_type, (_, indices, _) in zip(net.cell_sequence[:2], draws[:2]):
        grad = net.alphas[cell_type].grad
        for row, k in enumerate(indices):
            if k == 0:  # 'none'
                assert (grad[row] == 0).all()
            else:
                assert (grad[row] != 0).all()


def test_weight_step_leaves_alpha_without_gradient():
    net = DartsSupernet(1, 10, 4, 3, algorithm=make_algorithm("gdas"))
    net(torch.randn(4, 1, 8, 8), 10.0, detach_alpha=True).sum().backward()
    assert all(a.grad is None for a in net.arch_parameters())


def test_unselected_grad_keeps_the_value_and_adds_gradient():
    """AutoDL NB201: adding the zero weights of unselected ops changes gradients, not values."""
    x = torch.randn(4, 1, 8, 8)
    outs, grads = [], []
    for flag in (False, True):
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(5)
        net = Nb201Supernet(1, 10, 4, 1, algorithm=GDAS(unselected_grad=flag), generator=gen)
        out = net(x, 10.0)
        out.sum().backward()
        outs.append(out.detach())
        grads.append(net.alphas["cell"].grad.clone())
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("per, distinct", [("network", False), ("cell", True)])
def test_sample_per_network_or_per_cell(per, distinct):
    gen = torch.Generator().manual_seed(0)
    net = Nb201Supernet(1, 10, 4, 3, algorithm=GDAS(sample_per=per), generator=gen)  # 9 cells
    draws = [(w, idx) for w, idx, _ in net.draws(10.0)]
    assert len(draws) == 9
    different = any(idx != draws[0][1] for _, idx in draws[1:])
    assert different == distinct


# --- the node function against the straight-through formula it replaces -----------------------


def _run(net, x, y, generator_seed, detach_alpha, tau=2.0):
    net.zero_grad(set_to_none=True)
    net.generator.manual_seed(generator_seed)
    out = net(x, tau, detach_alpha=detach_alpha)
    F.cross_entropy(out, y).backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    return out.detach(), grads


@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("unselected_grad", [False, True])
@pytest.mark.parametrize("sample_per", ["network", "cell"])
@pytest.mark.parametrize("partial", [1, 2])
def test_sampled_sum_gradients_equal_the_straight_through_formula(
    space, unselected_grad, sample_per, partial
):
    """float64: outputs and the gradients of every weight and alpha equal those of
    op(x) * hard[k] (+ unselected) summed per node, for several seeds and draws, including
    draws that sample 'none' on whole nodes (alphas biased towards it)."""
    torch.manual_seed(0)
    gdas = GDAS(sample_per=sample_per, unselected_grad=unselected_grad)
    kw = {"partial": partial, "algorithm": gdas, "generator": torch.Generator()}
    if space == "darts":
        net = DartsSupernet(2, 5, 4, 3, **kw)
    else:
        net = Nb201Supernet(2, 5, 4, 1, **kw)
    net = net.double()
    x = torch.randn(6, 2, 8, 8, dtype=torch.float64)
    y = torch.arange(6) % 5
    nones = 0
    for seed in range(4):
        with torch.no_grad():  # new alphas each round; the last two favour 'none'
            for a in net.arch_parameters():
                a.normal_(0, 1).add_(torch.eye(1, a.shape[1])[0] * 2.5 * (seed >= 2))
        for detach_alpha in (False, True):
            out, grads = _run(net, x, y, seed, detach_alpha)
            with straight_through():
                ref_out, ref_grads = _run(net, x, y, seed, detach_alpha)
            torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
            assert grads.keys() == ref_grads.keys()
            alphas = {f"alphas.{t}" for t in net.cell_types}
            assert (alphas <= grads.keys()) != detach_alpha
            for name in grads:
                torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-9, atol=1e-12)
        net.generator.manual_seed(seed)
        nones += sum(k == 0 for _, indices, _ in net.draws(2.0) for k in indices)
    assert nones > 0


def test_a_sampled_none_is_not_run_unless_its_node_has_nothing_else():
    """NB201 node 1 has one edge: a 'none' there is run (the node is its zeros); elsewhere a
    'none' costs nothing, and its gradient (the unselected weights' sum(dL/d node)) still
    arrives."""
    torch.manual_seed(0)
    net = Nb201Supernet(1, 10, 4, 1, algorithm=GDAS(unselected_grad=True))
    calls = _count_calls(net)
    indices = [0, 0, 3, 0, 1, 2]  # 1<-0 none, 2<-0 none, 2<-1 conv3, 3<-0 none, 3<-1 skip, ...
    soft = torch.softmax(net.alphas["cell"], -1)
    hard = F.one_hot(torch.tensor(indices), 5) - soft.detach() + soft
    net.draws = lambda *a, **kw: [(hard, indices, None)] * 3
    F.cross_entropy(net(torch.randn(4, 1, 8, 8), 10.0), torch.arange(4)).backward()
    cells = [i for i, is_cell in enumerate(net.is_cell) if is_cell]
    assert len(cells) == 3
    for cell in cells:
        edge = f"cells.{cell}.edges"
        ran = {name: k for (name, k) in calls if name.startswith(edge + ".")}
        assert ran == {f"{edge}.0": 0, f"{edge}.2": 3, f"{edge}.4": 1, f"{edge}.5": 2}
    grad = net.alphas["cell"].grad
    assert (grad[[1, 3]] != 0).all()  # skipped 'none' edges: the unselected weights' gradient


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "mixed"])
def test_sampled_sum_matches_the_formula_for_any_memory_layout(layout):
    """The inner products <dL/d node, h> take a one-pass route for matching dense layouts and
    a general one otherwise; both give the formula's gradients (float64, autograd)."""
    torch.manual_seed(3)
    alpha = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    hs_leaf = [torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    cl = torch.channels_last
    hs = [
        h if layout == "contiguous" or (layout == "mixed" and i == 0) else h.to(memory_format=cl)
        for i, h in enumerate(hs_leaf)
    ]
    target = torch.randn(2, 3, 5, 5, dtype=torch.float64).to(memory_format=cl)
    terms = [(0, 2, hs[0]), (1, 0, None), (2, 1, hs[1])]
    soft = torch.softmax(alpha, -1)
    hard = F.one_hot(torch.tensor([2, 0, 1]), 4) - soft.detach() + soft  # one-hot in value
    for unselected in (False, True):
        got = gdas.sampled_sum(hard, terms, unselected)
        grads = torch.autograd.grad((got * target).sum(), [alpha, *hs_leaf], retain_graph=True)
        ref = 0
        for row, k, h in terms:
            if h is not None:
                ref = ref + h * hard[row, k]
            if unselected:
                ref = ref + torch.cat([hard[row, :k], hard[row, k + 1 :]]).sum()
        ref_grads = torch.autograd.grad((ref * target).sum(), [alpha, *hs_leaf], retain_graph=True)
        torch.testing.assert_close(got, hs[0] + hs[1], rtol=0, atol=0)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_the_temperature_is_an_argument_of_the_forward_pass():
    """tau reaches the sampler through the forward pass, not through a stored attribute: one
    draw (same generator state) at two temperatures has the same one-hot value, and the
    straight-through gradients of alpha differ; a GDAS forward pass without tau is an error."""
    torch.manual_seed(0)
    net = DartsSupernet(1, 10, 4, 3, algorithm=make_algorithm("gdas"), generator=torch.Generator())
    assert not hasattr(net, "tau")
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    outs, grads = [], []
    for tau in (1.0, 5.0):
        net.zero_grad(set_to_none=True)
        net.generator.manual_seed(1)
        out = net(x, tau)
        F.cross_entropy(out, y).backward()
        outs.append(out.detach())
        grads.append(net.alphas["normal"].grad.clone())
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match="pass tau"):
        net(x)
