"""Discrete networks against published parameter and multiply-add counts, and their file."""

import math

import pytest
import torch

from dnas.errors import UserError
from dnas.evaluate import count_macs, count_parameters
from dnas.models import build_network, load_model, save_model
from dnas.models.rnn_lm import BUILD_KEYS, RNNLanguageModel, build_lm
from dnas.spaces import nb201
from dnas.spaces.genotype import Genotype
from dnas.spaces.published import PUBLISHED

# The published cells live in the library (docs/algorithms.md#published-genotypes);
# tests/test_published.py checks every one of them against the published sizes.
DARTS_V2 = PUBLISHED["DARTS_V2"].genotype
GDAS_V1 = PUBLISHED["GDAS_V1"].genotype


@pytest.mark.parametrize(
    "genotype, params_m, macs_m",
    [(DARTS_V2, 3.349, 528), (GDAS_V1, 3.369, 519)],
)
def test_cifar_network_matches_published_counts(genotype, params_m, macs_m):
    """C=36, 20 cells, CIFAR-10: parameters without the auxiliary head and conv+linear
    multiply-adds as docs/algorithms.md#published-genotypes lists them."""
    net = build_network(genotype, 3, 10, channels=36, layers=20, auxiliary=True)
    assert round(count_parameters(net) / 1e6, 3) == params_m
    assert count_parameters(net) < sum(p.numel() for p in net.parameters())  # head excluded
    assert round(count_macs(net, (3, 32, 32)) / 1e6) == macs_m


@pytest.mark.parametrize(
    "arch, params, mflops",
    [
        # The NAS-Bench-201 paper's range over the 15,625 cells: 0.073M-1.531M parameters,
        # 7.78-220.11 MFLOPs on CIFAR-10 (figures truncated, not rounded).
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 0.073, 7.78),
        (
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
            "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
            1.531,
            220.11,
        ),
    ],
)
def test_nb201_network_spans_the_published_range(arch, params, mflops):
    g = Genotype("nb201", {"cell": nb201.from_string(arch)}, arch=arch)
    net = build_network(g, 3, 10, channels=16, layers=5)
    assert math.floor(count_parameters(net) / 1e3) / 1e3 == params
    assert math.floor(count_macs(net, (3, 32, 32)) / 1e4) / 1e2 == mflops


def test_auxiliary_head_and_drop_path_in_training_only():
    torch.manual_seed(0)
    net = build_network(DARTS_V2, 1, 10, channels=8, layers=5, auxiliary=True)
    x = torch.randn(4, 1, 8, 8)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (4, 10)
    net.eval()
    assert net(x).shape == (4, 10)
    net.set_drop_prob(0.5)
    torch.testing.assert_close(net(x), net(x))  # no drop-path in eval mode
    net.train()
    torch.manual_seed(1)
    a, _ = net(x)
    torch.manual_seed(2)
    b, _ = net(x)
    assert not torch.allclose(a, b)


def test_model_file_round_trip(tmp_path):
    torch.manual_seed(0)
    net = build_network(GDAS_V1, 1, 10, channels=4, layers=3).eval()
    cfg = {"in_channels": 1, "num_classes": 10, "channels": 4, "layers": 3, "auxiliary": False}
    save_model(tmp_path / "model.pt", net, GDAS_V1, cfg)
    save_model(tmp_path / "again.pt", net, GDAS_V1, cfg)
    assert (tmp_path / "model.pt").read_bytes() == (tmp_path / "again.pt").read_bytes()
    loaded, info = load_model(tmp_path / "model.pt")
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(loaded.eval()(x), net(x))
    assert info["genotype"] == GDAS_V1 and info["channels"] == 4


# A tiny language model's config, every dropout 0.1.
LM_CFG = {"vocab_size": 30, "emsize": 6, "nhid": 6, "bptt": 5, "eval_batch_size": 2,
          "test_batch_size": 1, **dict.fromkeys(BUILD_KEYS[3:], 0.1)}  # fmt: skip


def test_a_language_model_uses_the_same_file_and_loader(tmp_path):
    """One format for both tracks: the genotype's space tells load_model what to build."""
    genotype = PUBLISHED["DARTS_V2_RNN"].genotype
    cfg = LM_CFG
    torch.manual_seed(0)
    lm = build_lm(genotype, cfg).eval()
    save_model(tmp_path / "lm.pt", lm, genotype, cfg)
    cnn_cfg = {"in_channels": 1, "num_classes": 10, "channels": 4, "layers": 3}
    save_model(tmp_path / "cnn.pt", build_network(GDAS_V1, 1, 10, 4, 3), GDAS_V1, cnn_cfg)
    lm_file, cnn_file = (torch.load(tmp_path / f, weights_only=True) for f in ("lm.pt", "cnn.pt"))
    assert lm_file.keys() == cnn_file.keys() == {"genotype", "config", "state_dict"}
    loaded, info = load_model(tmp_path / "lm.pt")
    assert isinstance(loaded, RNNLanguageModel) and info["genotype"] == genotype
    assert info["bptt"] == 5 and info["dropouth"] == 0.1
    tokens = torch.randint(0, 30, (4, 2))
    hidden = lm.init_hidden(2)
    torch.testing.assert_close(loaded.eval()(tokens, hidden)[0], lm(tokens, hidden)[0])


def test_a_loaded_model_is_in_eval_mode(tmp_path):
    """load_model returns a network ready to predict (docs/api.md): every module in eval mode,
    so a call uses batch-norm's saved running statistics and leaves them as they are, drops no
    path or unit and returns the logits alone (no auxiliary head). Two loads, two calls each on
    one input: all four outputs are the same tensor as the saved network's in eval mode."""
    torch.manual_seed(0)
    net = build_network(DARTS_V2, 1, 10, channels=4, layers=5, auxiliary=True)
    with torch.no_grad():
        for _ in range(3):  # as training does: running statistics away from their start
            net(torch.randn(16, 1, 8, 8) * 3 + 1)
    cfg = {"in_channels": 1, "num_classes": 10, "channels": 4, "layers": 5, "auxiliary": True}
    save_model(tmp_path / "model.pt", net, DARTS_V2, cfg)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        expected = net.eval()(x)
    outputs = []
    for _ in range(2):
        loaded, _ = load_model(tmp_path / "model.pt")
        assert loaded.training is False
        assert not any(m.training for m in loaded.modules())
        loaded.set_drop_prob(0.5)  # what the train stage sets: only training drops paths
        saved = {k: v.clone() for k, v in loaded.state_dict().items()}
        with torch.no_grad():
            outputs += [loaded(x), loaded(x)]
        for k, v in loaded.state_dict().items():  # running mean, var and batch count as saved
            assert torch.equal(v, saved[k]), k
    for out in outputs:
        assert isinstance(out, torch.Tensor) and torch.equal(out, expected)
    # the language model: no dropout either
    genotype = PUBLISHED["DARTS_V2_RNN"].genotype
    lm = build_lm(genotype, LM_CFG).eval()
    save_model(tmp_path / "lm.pt", lm, genotype, LM_CFG)
    loaded, _ = load_model(tmp_path / "lm.pt")
    assert not any(m.training for m in loaded.modules())
    tokens, hidden = torch.randint(0, 30, (8, 2)), lm.init_hidden(2)
    with torch.no_grad():
        first, second, want = loaded(tokens, hidden), loaded(tokens, hidden), lm(tokens, hidden)
    for out in (first, second):
        assert torch.equal(out[0], want[0]) and torch.equal(out[1], want[1])


def test_broken_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a zip file")
    with pytest.raises(UserError, match="not a valid dnas model"):
        load_model(tmp_path / "bad.pt")
