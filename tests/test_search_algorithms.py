"""DARTS (first and second order), SNAS, DrNAS and GDAS-FRC against independent facts:
autograd's exact Hessian-vector product, the Dirichlet's moments, the ops' sizes."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dnas.config import parse_params
from dnas.models import build_network
from dnas.search import drnas
from dnas.search.architect import MomentumUnroll, arch_gradient
from dnas.search.drnas import DrNAS
from dnas.search.gdas import tau_at
from dnas.search.registry import make_algorithm
from dnas.search.snas import SNAS, op_costs, resource_penalty
from dnas.search.steps import cross_entropy_loss
from dnas.search.supernet import DartsSupernet, MixedEdge, Nb201Supernet
from dnas.spaces import darts
from dnas.spaces.ops import DARTS_OPS, FixedReductionCell


def _batch(n, seed, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(
        classes, (n,), generator=g
    )


def _exact_unrolled_grad(net, w_opt, xt, yt, xv, yv):
    """d/dalpha L_val(w - xi (mu m + dL_train/dw + lambda w), alpha), by double backward."""
    group = w_opt.param_groups[0]
    xi, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
    params = dict(net.named_parameters())
    alpha_names = [n for n in params if n.startswith("alphas.")]
    weight_names = [n for n in params if n not in alpha_names]
    train_loss = F.cross_entropy(functional_call(net, params, (xt,)), yt)
    grads = torch.autograd.grad(
        train_loss, [params[n] for n in weight_names], create_graph=True, allow_unused=True
    )
    unrolled = {}
    for name, g in zip(weight_names, grads):
        w = params[name]
        g = torch.zeros_like(w) if g is None else g
        m = w_opt.state.get(w, {}).get("momentum_buffer")
        step = g + wd * w if m is None else mu * m + g + wd * w
        unrolled[name] = w - xi * step
    alphas = {n: params[n] for n in alpha_names}
    val_loss = F.cross_entropy(functional_call(net, {**unrolled, **alphas}, (xv,)), yv)
    return torch.autograd.grad(val_loss, list(alphas.values()))


def _smooth(net: nn.Module) -> nn.Module:
    """ReLU -> softplus, max-pool -> average pool: the same net without kinks."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, name, nn.Softplus())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    return net


def _rel(a, b) -> float:
    num = math.sqrt(sum(((x - y) ** 2).sum().item() for x, y in zip(a, b)))
    return num / math.sqrt(sum((y**2).sum().item() for y in b))


# With DARTS's eps = 0.01 / ||v|| the central difference is accurate to O(eps^2) on a
# smooth network. On the ReLU / max-pool network of this size, a perturbation of norm 0.01
# crosses kinks and the difference is off by more than the term itself (measured: 3x), so the
# exact network is checked at a small eps, which tests the same formula.
@pytest.mark.parametrize("smooth, r, tol", [(True, 1e-2, 1e-3), (False, 1e-6, 1e-6)])
def test_second_order_gradient_matches_autograd_and_first_order_does_not(smooth, r, tol):
    torch.manual_seed(0)
    net = DartsSupernet(1, 10, channels=4, layers=3, algorithm=make_algorithm("darts")).double()
    if smooth:
        _smooth(net)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.5, momentum=0.9, weight_decay=3e-4)
    x0, y0 = _batch(8, 1)
    w_opt.zero_grad()
    F.cross_entropy(net(x0), y0).backward()
    w_opt.step()  # a momentum buffer now exists, so the virtual step uses it
    xt, yt = _batch(8, 2)
    xv, yv = _batch(8, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}

    unroll = MomentumUnroll(w_opt, r=r)
    approx, _, _ = arch_gradient(net, cross_entropy_loss, (xt, yt), (xv, yv), None, unroll)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN stats back

    exact = _exact_unrolled_grad(net, w_opt, xt, yt, xv, yv)
    first = torch.autograd.grad(F.cross_entropy(net(xv), yv), net.arch_parameters())
    assert _rel(approx, exact) < tol
    assert _rel(first, exact) > 0.5  # the second-order term matters here
    assert _rel(first, approx) > 0.5


def _cosine(a, b) -> float:
    dot = sum((x.double() * y.double()).sum().item() for x, y in zip(a, b))
    na = math.sqrt(sum((x.double() ** 2).sum().item() for x in a))
    nb = math.sqrt(sum((y.double() ** 2).sum().item() for y in b))
    return dot / (na * nb)


@pytest.mark.parametrize("algorithm", ["darts", "drnas"])
def test_second_order_gradient_is_float32_under_bf16_autocast(algorithm):
    """`common.bf16: true` wraps the architecture step in a bfloat16 autocast (the search
    loop's `fast.autocast`); the second-order gradient must still equal the float32 one. At the
    search size (C=16, 8 cells) a bfloat16 finite difference is mostly rounding noise."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    net = DartsSupernet(
        1, 10, channels=16, layers=8, algorithm=make_algorithm(algorithm), generator=gen
    )
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    xt, yt = (t.float() if t.is_floating_point() else t for t in _batch(32, 2))
    xv, yv = (t.float() if t.is_floating_point() else t for t in _batch(32, 3))

    def grads():
        torch.manual_seed(5)  # DrNAS's Dirichlet draws: the same in both runs
        net.generator.manual_seed(1)
        unroll = MomentumUnroll(w_opt)
        return arch_gradient(net, cross_entropy_loss, (xt, yt), (xv, yv), 10.0, unroll).grads

    fp32 = grads()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = grads()
    assert all(g.dtype == torch.float32 for g in bf16)
    assert _cosine(bf16, fp32) >= 0.99


def test_dirichlet_samples_lie_on_the_simplex_with_the_concentration_mean():
    torch.manual_seed(0)
    alpha = torch.tensor([[-0.5, 0.0, 1.0, 2.0]]).repeat(20000, 1)
    w = DrNAS().mix(alpha, tau=1.0)
    assert (w >= 0).all() and torch.allclose(w.sum(1), torch.ones(len(w)), atol=1e-6)
    beta = F.elu(alpha[0]) + 1  # 0.393, 1, 2, 3
    mean = beta / beta.sum()
    var = mean * (1 - mean) / (beta.sum() + 1)
    stderr = (var / len(w)).sqrt()
    assert ((w.mean(0) - mean).abs() < 5 * stderr).all()
    # Pruned ops get exactly 0; the rest is Dir(beta_kept) (subcomposition).
    mask = torch.tensor([True, False, True, True]).expand_as(alpha)
    wm = DrNAS().mix(alpha, 1.0, mask)
    kept = beta[[0, 2, 3]] / beta[[0, 2, 3]].sum()
    assert (wm[:, 1] == 0).all()
    assert torch.allclose(wm[:, [0, 2, 3]].mean(0), kept, atol=0.01)


def test_dirichlet_sample_is_reparameterised():
    alpha = torch.zeros(3, 5, requires_grad=True)
    (DrNAS().mix(alpha, 1.0)[:, 0]).sum().backward()
    assert alpha.grad.abs().sum() > 0


def test_snas_weights_are_soft_sum_to_one_and_every_op_runs():
    torch.manual_seed(0)
    alpha = 1 + 0.01 * torch.randn(14, len(DARTS_OPS))
    w = SNAS().mix(alpha, tau=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(w.sum(1), torch.ones(14)) and (w > 0).all()
    assert w.max() < 0.99  # soft: no edge is one-hot at tau 1
    net = DartsSupernet(1, 10, channels=4, layers=3, algorithm=make_algorithm("snas"))
    ran = []
    for m in net.modules():
        if isinstance(m, MixedEdge):
            for k, op in enumerate(m.ops):
                op.register_forward_hook(lambda *_, k=k: ran.append(k))
    net(torch.randn(2, 1, 8, 8), 10.0)
    n_edges = 3 * len(darts.edges())
    # every op but 'none' (it adds zeros) ran on every edge
    assert len(ran) == n_edges * (len(DARTS_OPS) - 1)


def test_resource_penalty_rises_with_heavier_ops():
    net = DartsSupernet(3, 10, channels=8, layers=3, algorithm=make_algorithm("snas"))
    costs = op_costs(net, torch.zeros(1, 3, 16, 16))
    for log in (False, True):
        penalty = {}
        for op in ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "sep_conv_5x5"):
            k = DARTS_OPS.index(op)
            w = {t: F.one_hot(torch.full((14,), k), len(DARTS_OPS)).float() for t in costs}
            penalty[op] = resource_penalty(w, costs, log).item()
        assert penalty["none"] == 0
        assert penalty["none"] < penalty["max_pool_3x3"] < penalty["sep_conv_3x3"]
        assert penalty["skip_connect"] < penalty["sep_conv_3x3"] < penalty["sep_conv_5x5"]


def test_resource_penalty_gradient_moves_alpha_towards_light_ops():
    net = DartsSupernet(3, 10, channels=8, layers=3, algorithm=make_algorithm("snas"))
    costs = op_costs(net, torch.zeros(1, 3, 16, 16))
    for log in (False, True):
        alpha = torch.zeros(14, len(DARTS_OPS), requires_grad=True)
        g = torch.Generator().manual_seed(1)
        weights = SNAS().mix(alpha, 1.0, generator=g)
        resource_penalty({"normal": weights}, {"normal": costs["normal"]}, log).backward()
        sep5, skip = DARTS_OPS.index("sep_conv_5x5"), DARTS_OPS.index("skip_connect")
        assert (alpha.grad[:, sep5] > alpha.grad[:, skip]).all()  # descent lowers sep5 most


def _snas_costs_by_hand(c: int, y: int) -> dict[str, tuple[float, float, float]]:
    """SNAS's (size, flops, mac) of each op on a stride-1 edge with C channels at y x y
    (its operations.py formulas, written out here independently of dnas.search.snas)."""
    y2 = y * y

    def sep(k):
        size = 2 * c * k * k + 2 * c * c
        return size, size * y2, y2 * 8 * c + size

    def dil(k):
        size = c * k * k + c * c
        return size, size * y2, y2 * 4 * c + size

    pool = (0, 9 * y2 * c, 2 * y2 * c)
    return {
        "none": (0, 0, 0),
        "max_pool_3x3": pool,
        "avg_pool_3x3": pool,
        "skip_connect": (0, 0, 2 * c * y2),
        "sep_conv_3x3": sep(3),
        "sep_conv_5x5": sep(5),
        "dil_conv_3x3": dil(3),
        "dil_conv_5x5": dil(5),
    }


def test_snas_log_penalty_orders_the_ops_as_snas_cost_tables_do():
    """The log penalty of an edge is mean_c log(sum_k w_k cost_kc), so at a uniform mixture its
    gradient for op k is mean_c cost_kc / sum_j w_j cost_jc: none < skip < pools < dil3 < dil5
    < sep3 < sep5 with SNAS's tables (pools count FLOPs, so they weigh more than skip)."""
    net = DartsSupernet(3, 10, channels=16, layers=8, algorithm=make_algorithm("snas"))
    costs = op_costs(net, torch.zeros(1, 3, 32, 32))
    hand = _snas_costs_by_hand(16, 32)  # the first cell's edges: C = 16 at 32 x 32
    table = costs["normal"][0]
    for e in range(14):
        for k, op in enumerate(DARTS_OPS):
            assert table[e, k].tolist() == pytest.approx(hand[op]), (e, op)
    # The gradient at the uniform mixture, computed here from the formula ...
    n = len(DARTS_OPS)
    sums = [sum(hand[op][c] for op in DARTS_OPS) / n for c in range(3)]
    expected = [sum(hand[op][c] / sums[c] for c in range(3)) / 3 for op in DARTS_OPS]
    w = torch.full((14, n), 1.0 / n, requires_grad=True)
    resource_penalty({"normal": w}, {"normal": costs["normal"][:1]}, log=True).backward()
    assert w.grad[0].tolist() == pytest.approx(expected, rel=1e-5)
    # ... and the ordering over every normal cell of the search network.
    w = torch.full((14, n), 1.0 / n, requires_grad=True)
    resource_penalty({"normal": w}, {"normal": costs["normal"]}, log=True).backward()
    order = ["none", "skip_connect", "max_pool_3x3", "dil_conv_3x3", "dil_conv_5x5",
             "sep_conv_3x3", "sep_conv_5x5"]  # fmt: skip
    for e in range(14):
        g = {op: w.grad[e, k].item() for k, op in enumerate(DARTS_OPS)}
        assert g["max_pool_3x3"] == pytest.approx(g["avg_pool_3x3"])
        assert all(g[a] < g[b] for a, b in zip(order, order[1:])), (e, g)


def test_snas_log_penalty_is_the_log_of_the_mixed_cost_not_a_mixture_of_logs():
    table = torch.tensor([[[0.0, 0.0, 0.0], [10.0, 1000.0, 100.0], [100.0, 1e4, 1e4]]])
    w = torch.tensor([[0.2, 0.5, 0.3]])
    mixed = [0.5 * 10 + 0.3 * 100, 0.5 * 1000 + 0.3 * 1e4, 0.5 * 100 + 0.3 * 1e4]
    expected = sum(math.log(v) for v in mixed) / 3
    got = resource_penalty({"normal": w}, {"normal": table.unsqueeze(0)}, log=True)
    assert got.item() == pytest.approx(expected)
    tiny = torch.tensor([[0.9, 0.1, 0.0]])  # every mixed cost below 1 counts as 1: log 1 = 0
    small = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 5.0, 5.0], [9.0, 9.0, 9.0]]]).unsqueeze(0)
    assert resource_penalty({"normal": tiny}, {"normal": small}, log=True).item() == 0.0


def test_drnas_pruning_keeps_exactly_the_top_k_ops_per_edge():
    torch.manual_seed(0)
    net = DartsSupernet(1, 10, channels=12, layers=3, algorithm=make_algorithm("drnas"), partial=6)
    assert net.ops == DARTS_OPS[1:]  # DrNAS's DARTS space has no 'none'
    with torch.no_grad():
        for a in net.arch_parameters():
            a.copy_(torch.randn_like(a))
    masks = drnas.prune_masks(net, 4)
    for t, mask in masks.items():
        assert (mask.sum(1) == 4).all()
        top = net.alphas[t].detach().topk(4, dim=1).indices
        assert torch.equal(mask, torch.zeros_like(mask).scatter(1, top, True))
    net.set_masks(masks)
    again = drnas.prune_masks(net, 2)  # a second round prunes among the kept ops only
    assert all(((again[t] & ~masks[t]).sum() == 0) for t in masks)


def test_drnas_advance_prunes_widens_and_keeps_the_alphas(digits_prepared):
    p = parse_params(
        {
            "search": {
                "algorithm": "drnas",
                "channels": 12,
                "layers": 3,
                "epochs": 4,
                "partial_channels": [6, 3],
                "keep_ops": [3],
            }
        }
    )
    from dnas.search.loop import make_supernet
    from dnas.search.steps import SearchState

    torch.manual_seed(0)
    net = make_supernet(p.search, digits_prepared, generator=torch.Generator())
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, 4)
    a_opt = torch.optim.Adam(net.arch_parameters())
    x = torch.randn(4, 1, 8, 8)
    F.cross_entropy(net(x), torch.arange(4)).backward()
    w_opt.step()
    sched.step()
    alphas = net.arch_parameters()
    new, new_opt, new_sched, _ = drnas.Schedule(p.search).advance(
        SearchState(net, w_opt, sched, a_opt), 1, digits_prepared, make_supernet
    )
    assert all(a is b for a, b in zip(new.arch_parameters(), alphas))
    assert new_sched.last_epoch == 1 and new_opt.param_groups[0]["lr"] == sched.get_last_lr()[0]
    edge = next(m for m in new.modules() if isinstance(m, MixedEdge))
    assert edge.partial == 3 and edge.ops[3][0][1].in_channels == 12 // 3
    # Net2Wider: each new channel copies an old one; a 1x1 conv reading copied channels
    # divides by the copy count, so its row sums are those of the old rows it copies.
    old_edge = next(m for m in net.modules() if isinstance(m, MixedEdge))
    old_w, new_w = old_edge.ops[3][0][2].weight, edge.ops[3][0][2].weight  # sep3's 1x1 conv
    assert old_w.shape[:2] == (2, 2) and new_w.shape[:2] == (4, 4)
    old_sums, new_sums = old_w.sum((1, 2, 3)), new_w.sum((1, 2, 3))
    assert torch.allclose(new_sums[:2], old_sums)
    assert all(torch.isclose(old_sums, s).any() for s in new_sums[2:])
    for p_new in new.weight_parameters():  # momentum buffers follow the weights' shapes
        buf = new_opt.state.get(p_new, {}).get("momentum_buffer")
        assert buf is None or buf.shape == p_new.shape
    ran = []
    for m in new.modules():
        if isinstance(m, MixedEdge):
            for k, op in enumerate(m.ops):
                op.register_forward_hook(lambda *_, k=k: ran.append(k))
    out = new(x)
    assert torch.isfinite(out).all()
    n_edges = 3 * len(darts.edges())
    assert len(ran) == n_edges * 3  # only the 3 kept ops run on each edge


def test_gdas_frc_searches_normal_cells_only():
    gen = torch.Generator().manual_seed(0)
    net = DartsSupernet(
        1,
        10,
        channels=8,
        layers=5,
        fixed_reduction=True,
        algorithm=make_algorithm("gdas"),
        generator=gen,
    )
    assert list(net.alphas) == ["normal"]
    assert sum(isinstance(c, FixedReductionCell) for c in net.cells) == 2
    net(torch.randn(2, 1, 8, 8), 10.0).sum().backward()
    genotype = net.derive()
    assert list(genotype.cells) == ["normal"]
    retrained = build_network(genotype, 1, 10, 8, 5)
    assert sum(isinstance(c, FixedReductionCell) for c in retrained.cells) == 2


def _frc_pool_inputs(cell: FixedReductionCell, s0, s1):
    """What the cell's X2 pool reads, next to pre0(s0) and X0 + X1 of the same pass."""
    seen = {}
    hooks = [
        cell.pool2[0].register_forward_hook(lambda m, a, o: seen.update(pool_in=a[0], out=o)),
        cell.pre0.register_forward_hook(lambda m, a, o: seen.update(pre0=o)),
        cell.branch0.register_forward_hook(lambda m, a, o: seen.update(x0=o)),
        cell.branch1.register_forward_hook(lambda m, a, o: seen.update(x1=o)),
    ]
    cell.eval()
    with torch.no_grad():
        cell(s0, s1)
    for h in hooks:
        h.remove()
    return seen


def test_frc_retraining_cell_pools_s0_with_stride_2_and_the_search_cell_x0_plus_x1():
    """The CVPR release's Transition (retraining: X2 = MaxPool(3, stride 2)(s0)) against the
    search-era one (the FRC search: X2 = MaxPool(3, stride 1)(X0 + X1)); same parameters."""
    torch.manual_seed(0)
    s0, s1 = torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8)
    release = FixedReductionCell(12, 12, 8, reduction_prev=False)
    search = FixedReductionCell(12, 12, 8, reduction_prev=False, version="search")
    r, s = _frc_pool_inputs(release, s0, s1), _frc_pool_inputs(search, s0, s1)
    assert release.pool2[0].stride == 2 and torch.equal(r["pool_in"], r["pre0"])
    assert r["out"].shape[-2:] == (4, 4)
    assert search.pool2[0].stride == 1 and torch.equal(s["pool_in"], s["x0"] + s["x1"])
    count = sum(p.numel() for p in release.parameters())
    assert count == sum(p.numel() for p in search.parameters())
    # Where each version is used: the FRC search network and the retrained GDAS_F1 network.
    net = DartsSupernet(
        1, 10, channels=8, layers=5, fixed_reduction=True, algorithm=make_algorithm("gdas")
    )
    assert {c.version for c in net.cells if isinstance(c, FixedReductionCell)} == {"search"}
    retrained = build_network(net.derive(), 1, 10, 8, 5)
    frc = [c for c in retrained.cells if isinstance(c, FixedReductionCell)]
    assert len(frc) == 2 and {c.version for c in frc} == {"release"}


def test_snas_keeps_every_edge_with_its_argmax_op():
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(14, len(DARTS_OPS)), 1).numpy()
    cell = darts.derive_cell_all_edges(probs)
    flat = [edge for node in cell.nodes for edge in node]
    assert [j for _, j in flat] == [j for _, j in darts.edges()]
    assert [op for op, _ in flat] == [DARTS_OPS[k] for k in probs.argmax(1)]


def test_nb201_all_ops_algorithms_run_and_derive():
    for algorithm in ("darts", "snas", "drnas"):
        gen = torch.Generator().manual_seed(0)
        net = Nb201Supernet(1, 10, 4, 1, algorithm=make_algorithm(algorithm), generator=gen)
        net(torch.randn(2, 1, 8, 8), 10.0).sum().backward()
        assert all(a.grad is not None for a in net.arch_parameters())
        assert net.derive().arch.count("~") == 6


def test_tau_to_end_stops_one_step_above_tau_min():
    assert tau_at(0, 150, 1.0, 0.03, "to_end") == 1.0
    last = tau_at(149, 150, 1.0, 0.03, "to_end")
    assert last == pytest.approx((1 - 149 / 150) * 0.97 + 0.03) and last > 0.03
    assert tau_at(149, 150, 1.0, 0.03, "to_last_epoch") == pytest.approx(0.03)


def test_snas_temperature_is_one_step_in_at_the_first_epoch():
    """SNAS's scheduler steps in its constructor and before every epoch
    (docs/algorithms.md#snas)."""
    from dnas.search.snas import temperature

    assert temperature(0, 150, 1.0, 0.03) == pytest.approx(1 - 0.97 / 150)
    assert temperature(149, 150, 1.0, 0.03) == pytest.approx(0.03)
    assert temperature(1, 150, 1.0, 0.03) == pytest.approx((1 - 2 / 150) * 0.97 + 0.03)


def test_search_drop_path_drops_whole_edges_skip_included():
    """One mask per example for the edge's mixed output: an identity-only edge is dropped too,
    and a mixed edge is either all zero or the whole mixture / keep."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 2, 1)
    edge = MixedEdge([nn.Identity(), conv], ("skip_connect", "conv"))
    edge.drop_prob = 0.5
    x = torch.randn(256, 2, 2, 2)
    out = edge(x, torch.tensor([1.0, 0.0]), None, active=[0])
    dropped = (out == 0).flatten(1).all(1)
    assert 0.35 < dropped.float().mean() < 0.65  # skip edges are dropped, at the rate
    assert torch.allclose(out[~dropped], x[~dropped] / 0.5)
    w = torch.tensor([0.3, 0.7])
    out = edge(x, w, None, active=[0, 1])
    dropped = (out == 0).flatten(1).all(1)
    mixed = (0.3 * x + 0.7 * conv(x)) / 0.5
    assert dropped.any() and torch.allclose(out[~dropped], mixed[~dropped], atol=1e-6)
    edge.eval()
    assert torch.equal(edge(x, w, None, active=[0, 1]), 0.3 * x + 0.7 * conv(x))


def test_snas_search_runs_a_constant_drop_path_and_its_temperature(
    digits_prepared, monkeypatch, tmp_path
):
    from dnas.search import loop as search_loop
    from dnas.search import record

    seen = []
    forward = MixedEdge.forward

    def spy(self, x, *args, **kwargs):
        if self.training:
            seen.append(self.drop_prob)
        return forward(self, x, *args, **kwargs)

    taus = []
    real_log = record.log_epoch

    def log_epoch(live, values, epoch, rows):
        taus.append(values["tau"])
        real_log(live, values, epoch, rows)

    monkeypatch.setattr(MixedEdge, "forward", spy)
    monkeypatch.setattr(record, "log_epoch", log_epoch)
    p = parse_params(
        {
            "search": {"algorithm": "snas", "epochs": 2, "channels": 4, "layers": 3,
                       "batch_size": 512, "drop_path": 0.3, "tau_max": 1.0, "tau_min": 0.03,
                       "tau_schedule": "snas", "arch_optimizer": "sgd"},
        }
    )  # fmt: skip
    search_loop.run_search(p, digits_prepared, torch.device("cpu"), tmp_path)
    assert seen and set(seen) == {0.3}  # from the first step on, every edge
    assert taus == pytest.approx([1 - 0.97 / 2, 0.03])


def test_both_tracks_take_the_first_order_gradient_through_one_contract():
    """`arch_gradient` without an unroll is d L_val / d alpha by autograd, for a CNN supernet
    (loss: cross-entropy of (x, y)) and the recurrent search (loss: the language model's
    cross-entropy of (x, y, hidden)); it returns the loss and output the loss function gave,
    detached, and leaves .grad alone."""
    from dnas.models.rnn_lm import lm_arch_loss
    from dnas.search.rnn import RNNSupernet

    torch.manual_seed(0)
    cnn = DartsSupernet(1, 10, channels=4, layers=3, algorithm=make_algorithm("darts")).double()
    rnn = RNNSupernet(12, 5, 5, "softmax").double()
    x, y = _batch(8, 1)
    tokens = torch.randint(0, 12, (4, 3))
    cases = [
        (cnn, cross_entropy_loss, (x, y)),
        (rnn, lm_arch_loss, (tokens, torch.randint(0, 12, (4, 3)), rnn.init_hidden(3))),
    ]
    for net, loss_fn, batch in cases:
        state = torch.get_rng_state()
        got = arch_gradient(net, loss_fn, batch, batch, None)
        torch.set_rng_state(state)  # the same dropout masks
        loss, out = loss_fn(net, batch, None)
        expected = torch.autograd.grad(loss, net.arch_parameters())
        assert len(got.grads) == len(expected)
        for g, e in zip(got.grads, expected):
            torch.testing.assert_close(g, e)
        torch.testing.assert_close(got.loss, loss.detach())
        torch.testing.assert_close(got.out, out.detach())
        assert not got.loss.requires_grad and not got.out.requires_grad
        assert all(a.grad is None for a in net.arch_parameters())


def test_every_sgd_of_the_weights_is_built_in_one_place():
    """The weights' SGD is built by dnas.optim (weight_sgd / sgd_cosine) for all loops."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "dnas"
    builders = [
        p.relative_to(src).as_posix()
        for p in src.rglob("*.py")
        if "optim.SGD(" in p.read_text(encoding="utf-8")
    ]
    assert builders == ["optim.py"]
