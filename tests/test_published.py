"""The published genotypes against the published sizes (docs/algorithms.md#published-genotypes), the
ImageNet mobile network, the name resolver and `dnas genotype info`."""

import json

import pytest
import torch

from dnas.cli import main as cli_main
from dnas.errors import UserError
from dnas.evaluate import count_macs, count_parameters
from dnas.models import build_network
from dnas.spaces.genotype import save_genotype
from dnas.spaces.published import PUBLISHED, published, resolve_genotype


def _cifar(name, classes=10):
    net = build_network(PUBLISHED[name].genotype, 3, classes, 36, 20, auxiliary=True)
    return count_parameters(net), count_macs(net, (3, 32, 32))


def _imagenet(name, channels):
    g = PUBLISHED[name].genotype
    net = build_network(g, 3, 1000, channels, 14, auxiliary=True, network="imagenet")
    return count_parameters(net), count_macs(net, (3, 224, 224))


@pytest.mark.parametrize(
    "name, params_m, macs_m",
    # docs/algorithms.md#published-genotypes: C=36, 20 cells, CIFAR-10 (the GDAS logs and the
    # analytic counter)
    [
        ("GDAS_V1", 3.369, 519),
        ("GDAS_F1", 2.543, 403),
        ("GDAS_GF", 3.000, None),
        ("GDAS_FG", 2.912, None),
        ("DARTS_V2", 3.349, 528),
    ],
)
def test_cifar_sizes_match_the_reference(name, params_m, macs_m):
    params, macs = _cifar(name)
    assert round(params / 1e6, 3) == params_m
    if macs_m is not None:
        assert round(macs / 1e6) == macs_m


@pytest.mark.parametrize(
    "name, channels, params_m, macs_m",
    # docs/algorithms.md#published-genotypes: the ImageNet mobile setting, 14 cells, 224x224,
    # 1000 classes
    [
        ("GDAS_V1", 50, 5.345, 581.0),
        ("GDAS_F1", 52, 4.430, 496.7),
        ("DARTS_V2", 48, 4.719, 529.9),
        ("DARTS_V2", 50, None, 573.5),
    ],
)
def test_imagenet_sizes_match_the_reference(name, channels, params_m, macs_m):
    params, macs = _imagenet(name, channels)
    if params_m is not None:
        assert round(params / 1e6, 3) == params_m
    assert round(macs / 1e6, 1) == macs_m


@pytest.mark.parametrize(
    "name, imagenet, params_m",
    [  # the papers' rounded figures: SNAS Table 2, DrNAS README (docs/algorithms.md#paper-numbers)
        ("SNAS_MODERATE", False, 2.8),
        ("SNAS_AGGRESSIVE", False, 2.3),
        ("DRNAS_CIFAR10", False, 4.1),
        ("DRNAS_IMAGENET", True, 5.7),
    ],
)
def test_other_published_cells_match_the_papers_rounded_sizes(name, imagenet, params_m):
    if imagenet:
        params, _ = _imagenet(name, PUBLISHED[name].imagenet_channels)
    else:
        params, _ = _cifar(name)
    assert round(params / 1e6, 1) == params_m


def test_darts_v1_is_v2_less_one_dil_conv_per_normal_cell():
    """DARTS_V1's normal cell has a skip where V2's has a dil_conv_3x3; their reduction cells
    differ by a pool type only. So V1 = V2 - 18 dil_conv_3x3 (6 normal cells at each of C=36,
    72, 144 and 32, 16, 8 pixels), counted by hand: depthwise 9C + pointwise C^2 + BN 2C
    parameters and H*W*(9C + C^2) multiply-adds each."""
    v1_params, v1_macs = _cifar("DARTS_V1")
    v2_params, v2_macs = _cifar("DARTS_V2")
    stages = [(36, 32), (72, 16), (144, 8)]
    assert v2_params - v1_params == sum(6 * (9 * c + c * c + 2 * c) for c, _ in stages)
    assert v2_macs - v1_macs == sum(6 * hw * hw * (9 * c + c * c) for c, hw in stages)


@pytest.mark.xfail(strict=True, reason="the papers' figures disagree with the published cells")
@pytest.mark.parametrize("name, params_m", [("SNAS_MILD", 2.9), ("DARTS_V1", 3.3)])
def test_known_disagreements_with_the_papers(name, params_m):
    """SNAS Table 2 gives mild 2.9M, the published mild edge_all cell gives 2.66M; the DARTS
    table gives 3.3M for the first-order cell, the published DARTS_V1 gives 3.17M (checked by
    hand above). Strict: if a change makes these pass, the counting changed."""
    assert round(_cifar(name)[0] / 1e6, 1) == params_m


def test_variants_are_the_stated_combinations():
    v1, f1 = PUBLISHED["GDAS_V1"].genotype, PUBLISHED["GDAS_F1"].genotype
    gf, fg = PUBLISHED["GDAS_GF"].genotype, PUBLISHED["GDAS_FG"].genotype
    assert set(f1.cells) == set(gf.cells) == {"normal"}  # fixed reduction cell
    assert gf.cells["normal"] == v1.cells["normal"]
    assert fg.cells == {"normal": f1.cells["normal"], "reduce": v1.cells["reduce"]}
    snas = PUBLISHED["SNAS_MODERATE"].genotype.cells["normal"]
    assert [len(node) for node in snas.nodes] == [2, 3, 4, 5]  # all 14 edges kept


def test_imagenet_network_outputs_and_auxiliary_head():
    torch.manual_seed(0)
    net = build_network(
        PUBLISHED["GDAS_F1"].genotype, 3, 7, 8, 5, auxiliary=True, network="imagenet"
    )
    x = torch.randn(2, 3, 224, 224)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (2, 7)
    assert net.eval()(x).shape == (2, 7)
    # The auxiliary head has no BN after its 768-channel conv (docs/algorithms.md#cnn-retraining).
    bns = [m for m in net.auxiliary.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [bn.num_features for bn in bns] == [128]


def test_resolver_accepts_names_strings_and_files(tmp_path):
    assert resolve_genotype("gdas_v1") == PUBLISHED["GDAS_V1"].genotype
    assert published("SNAS_mild_edge_all").name == "SNAS_MILD"  # the source file's spelling
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    g = resolve_genotype(arch)
    assert g.space == "nb201" and g.arch == arch
    save_genotype(tmp_path / "g.json", PUBLISHED["DARTS_V2"].genotype)
    assert resolve_genotype(str(tmp_path / "g.json")) == PUBLISHED["DARTS_V2"].genotype
    assert resolve_genotype("searched", tmp_path / "g.json") == PUBLISHED["DARTS_V2"].genotype


@pytest.mark.parametrize(
    "spec, message",
    [
        ("GDAS_V2", "did you mean 'GDAS_V1'"),
        ("|nor_conv_3x3~0|", "not a NAS-Bench-201 string"),
        ("missing.json", "no such genotype file"),
    ],
)
def test_resolver_errors_name_the_key(spec, message):
    with pytest.raises(UserError, match=message) as exc:
        resolve_genotype(spec)
    assert str(exc.value).startswith("train.genotype")


def test_genotype_info_cli(capsys):
    cli_main(["genotype", "info", "GDAS_V1", "--dataset", "imagenet", "--json"])
    counts = json.loads(capsys.readouterr().out)
    assert set(counts) == {"params", "macs"}
    assert (round(counts["params"] / 1e6, 3), round(counts["macs"] / 1e6, 1)) == (5.345, 581.0)
    cli_main(["genotype", "info", "GDAS_F1"])  # CIFAR-10, C=36, 20 cells by default
    assert "2.543M" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli_main(["genotype", "info", "GDAS_V1", "--dataset", "mnist"])
    assert exc.value.code == 2
    assert "--dataset 'mnist': unknown" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, dataset, size", [("GDAS_RNN", "ptb", 850), ("DARTS_V2_RNN", "wt2", 700)]
)
def test_genotype_info_counts_a_recurrent_cells_language_model(name, dataset, size, capsys):
    vocab = {"ptb": 10_000, "wt2": 33_278}[dataset]
    cli_main(["genotype", "info", name, "--dataset", dataset, "--json"])
    info = json.loads(capsys.readouterr().out)
    # tied embedding + decoder bias + W0 (2s x 2s) + 8 node matrices (s x 2s)
    assert info["params"] == vocab * size + vocab + 4 * size * size + 8 * 2 * size * size
    assert info["macs"] == 4 * size * size + 8 * 2 * size * size + size * vocab
