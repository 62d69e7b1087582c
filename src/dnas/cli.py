"""The `dnas` command.

dnas params check [FILE]     validate a params file (default: params.yaml)
dnas params use PRESET       a preset (presets/<PRESET>.yaml, or a file) into params.yaml and
                             advanced.yaml, each knob in the file it lives in
dnas genotype show [NAME|FILE|NB201-STRING]
                             print a genotype's cells (default: genotype.json)
dnas genotype info NAME|FILE|NB201-STRING [--dataset D] [--channels C] [--layers L] [--json]
                             parameters (without the auxiliary head) and multiply-adds
dnas genotype table [--input FILE]
                             the genotypes this commit's experiments found, with metrics
dnas plots html [REV ...] [--out DIR]
                             the dvc plots as one page that renders offline
dnas report [--input FILE] [--all-commits] [--out MD] [--png PNG]
                             experiments grouped by preset, mean ± std against the papers
dnas nb201 lookup ARCH|GENOTYPE-FILE [--benchmark DIR] [--json]
                             a cell's recorded accuracies in NAS-Bench-201 (NATS-Bench)
dnas export DIR [--model FILE] [--data DIR]
                             DIR/model.pt2 (torch.export), model.ts (TorchScript) and
                             genotype.py, for use elsewhere
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dnas.errors import UserError, run_main


def _params_use(args: argparse.Namespace) -> None:
    from dnas.preset import use_preset

    top, rest = use_preset(args.preset)
    print(f"wrote {top} and {rest} from {args.preset}")


def _params_check(args: argparse.Namespace) -> None:
    from dnas.config import load_params

    p = load_params(args.file, complete=True)
    print(f"{args.file}: ok (search {p.search.algorithm} on {p.search.space}/{p.search.dataset})")


def _genotype_show(args: argparse.Namespace) -> None:
    """The cells of what `genotype info` takes: a published name, an NB201 string, a genotype
    file; without one, the searched genotype.json."""
    from dnas.spaces.published import SEARCHED, resolve_genotype

    g = resolve_genotype(args.genotype or SEARCHED, key="genotype")
    print(f"space: {g.space}")
    if g.arch:
        print(f"arch: {g.arch}")
    for name, cell in g.cells.items():
        print(f"{name}:")
        for i, node in enumerate(cell.nodes):
            edges = ", ".join(f"{op}({j})" for op, j in node)
            print(f"  node {cell.inputs + i} <- {edges}")
        print(f"  output = {'concat' if len(cell.concat) > 1 else 'node'} {list(cell.concat)}")


def default_size(name: str, space: str, dataset: str) -> tuple[int, int]:
    """(channels, layers) of the papers' evaluation networks
    (docs/algorithms.md#nas-bench-201-space, docs/algorithms.md#cnn-retraining): the space's
    `paper_size` (NB201 C=16 with 5 cells per stage; DARTS space C=36 and 20 cells) on small
    images; for a space with the ImageNet network (DARTS) on ImageNet, the genotype's published
    ImageNet width (48 if it has none) and 14 cells."""
    from dnas.spaces.published import published
    from dnas.spaces.registry import get_space

    kind = get_space(space)
    if kind.imagenet and dataset == "imagenet":
        entry = published(name)
        return (entry.imagenet_channels if entry else 48), 14
    return kind.paper_size


def _genotype_info(args: argparse.Namespace) -> None:
    from dnas.evaluate import DATASET_SHAPES, count_macs, count_parameters
    from dnas.models import build_network
    from dnas.spaces.published import resolve_genotype
    from dnas.spaces.registry import get_space

    g = resolve_genotype(args.genotype, key="genotype")
    space = get_space(g.space)
    if space.text:
        return _recurrent_info(args, g)
    args.dataset = args.dataset or "cifar10"
    if args.dataset not in DATASET_SHAPES:
        raise UserError(f"--dataset {args.dataset!r}: unknown; known: {', '.join(DATASET_SHAPES)}")
    shape = DATASET_SHAPES[args.dataset]
    channels, layers = default_size(args.genotype, g.space, args.dataset)
    channels = args.channels or channels
    layers = args.layers or layers
    from dnas.config import MAX_CHANNELS, MAX_LAYERS

    for flag, value, top in (
        ("--channels", channels, MAX_CHANNELS),
        ("--layers", layers, MAX_LAYERS),
    ):
        if not 1 <= value <= top:
            raise UserError(f"{flag} {value}: give 1 to {top} (the limits of params.yaml)")
    network = "imagenet" if args.dataset == "imagenet" else "cifar"
    try:
        net = build_network(g, shape.channels, shape.num_classes, channels, layers, False, network)
        params, macs = count_parameters(net), count_macs(net, shape.input_shape)
    except (ValueError, RuntimeError) as exc:
        where = f"C={channels}, {layers} cells"
        raise UserError(f"cannot build {args.genotype} at {where}: {exc}") from None
    if args.json:
        print(json.dumps({"params": params, "macs": macs}, sort_keys=True))
        return
    size = space.size_text(layers, network)
    print(f"{args.genotype} on {args.dataset} (C={channels}, {size})")
    print(f"  parameters:     {params:,} ({params / 1e6:.3f}M, without the auxiliary head)")
    print(f"  multiply-adds:  {macs:,} ({macs / 1e6:.1f}M, conv + linear, one image)")


# Vocabulary and the papers' emsize = nhid for the language-model corpora
# (docs/algorithms.md#rnn-retraining).
LM_SIZES = {"ptb": (10_000, 850), "wt2": (33_278, 700)}


def _recurrent_info(args: argparse.Namespace, g) -> None:
    """A recurrent cell's language model: parameters (tied embedding and decoder) and the
    multiply-adds per token (W0, the 8 node matrices, the decoder)."""
    from dnas.models.rnn_lm import lm_parameters

    dataset = args.dataset or "ptb"
    if dataset not in LM_SIZES:
        raise UserError(
            f"--dataset {dataset!r}: a recurrent cell needs one of {', '.join(LM_SIZES)}"
        )
    vocab, size = LM_SIZES[dataset]
    size = args.channels or size
    from dnas.config import MAX_CHANNELS

    if not 1 <= size <= MAX_CHANNELS:
        raise UserError(f"--channels {size}: give 1 to {MAX_CHANNELS} (the limits of params.yaml)")
    params = lm_parameters(g, vocab, size)
    steps = len(g.cells["rnn"].nodes)
    macs = 2 * size * 2 * size + steps * size * 2 * size + size * vocab
    if args.json:
        print(json.dumps({"params": params, "macs": macs}, sort_keys=True))
        return
    print(f"{args.genotype} on {dataset} (emsize = nhid = {size}, vocabulary {vocab:,})")
    print(f"  parameters:     {params:,} ({params / 1e6:.2f}M, tied embedding and decoder)")
    print(f"  multiply-adds:  {macs:,} ({macs / 1e6:.1f}M per token)")


def _report(args: argparse.Namespace) -> None:
    from pathlib import Path

    from dnas.report import exp_show_json, report

    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise UserError(f"--input {path}: file not found")
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            hint = "save the output of `dvc exp show --json`"
            raise UserError(f"--input {path}: not JSON ({exc}); {hint}") from None
    else:
        rows = exp_show_json(all_commits=args.all_commits)
    text = report(
        rows,
        Path(args.presets),
        Path(args.out) if args.out else None,
        Path(args.png) if args.png else None,
    )
    print(text, end="")


def _plots_html(args: argparse.Namespace) -> None:
    from dnas.plots_html import write_offline_html

    print(f"wrote {write_offline_html(args.revs, Path(args.out))}")


def _genotype_table(args: argparse.Namespace) -> None:
    from dnas.genotype_table import markdown, rows_from_exp_show
    from dnas.report import exp_show_json

    rows = json.loads(Path(args.input).read_text()) if args.input else exp_show_json(False)
    print(markdown(rows_from_exp_show(rows)), end="")


def _nb201_lookup(args: argparse.Namespace) -> None:
    """The benchmark row of a cell: an architecture string or a genotype file (genotype.json);
    the benchmark from --benchmark or params.yaml's search.benchmark."""
    from pathlib import Path

    from dnas.benchmarks.nb201 import DATASETS, HPS, Benchmark

    root = args.benchmark
    if root is None:
        from dnas.config import load_params

        root = load_params().search.benchmark if Path("params.yaml").is_file() else None
        if root is None:
            raise UserError("no benchmark: give --benchmark DIR or set search.benchmark")
    arch = args.arch
    if "|" not in arch:  # a genotype file
        from dnas.spaces.genotype import load_genotype
        from dnas.spaces.registry import get_space

        g = load_genotype(arch)
        if not get_space(g.space).benchmark or not g.arch:
            raise UserError(f"{arch}: a {g.space} genotype; the benchmark holds NB201 cells")
        arch = g.arch
    row = Benchmark.open(root).lookup(arch)
    if args.json:
        print(json.dumps(row, sort_keys=True))
        return
    print(f"{row['arch']}: index {row['index']} in {root}")
    print(f"{'dataset':<15} {'epochs':>6} {'train':>7} {'valid':>7} {'test':>7}   params   FLOPs")
    for dataset in DATASETS:
        entry = row[dataset]
        for hp in HPS:
            accs = [entry[f"hp{hp}"].get(f"{s}_acc") for s in ("train", "valid", "test")]
            cols = " ".join(f"{a:7.2f}" if a is not None else f"{'-':>7}" for a in accs)
            cost = f"   {entry['params']:.3f}M {entry['flops']:.1f}M" if hp == HPS[0] else ""
            print(f"{dataset:<15} {hp:>6} {cols}{cost}")


def _export(args: argparse.Namespace) -> None:
    """The trained model as a torch.export program and TorchScript, its cells as Python
    (dnas.export, docs/api.md);
    the card from --data or params.yaml's train.dataset."""
    from dnas.export import export

    data = args.data
    if data is None:
        from dnas.config import load_params
        from dnas.data import PREPARED_ROOT

        if not Path("params.yaml").is_file():
            raise UserError("no params.yaml here: give --data DIR, the prepared dataset's folder")
        data = PREPARED_ROOT / load_params().train.dataset
    paths = export(args.dir, args.model, data)
    print(f"wrote {paths['program']}, {paths['model']} and {paths['genotype']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dnas", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    params = sub.add_parser("params", help="params files").add_subparsers(
        dest="action", required=True
    )
    check = params.add_parser("check", help="validate a params file")
    check.add_argument("file", nargs="?", default="params.yaml")
    check.set_defaults(func=_params_check)
    use = params.add_parser("use", help="write a preset into params.yaml and advanced.yaml")
    use.add_argument("preset", help="a name of presets/ (gdas-cifar10) or a params file")
    use.set_defaults(func=_params_use)
    genotype = sub.add_parser("genotype", help="genotypes").add_subparsers(
        dest="action", required=True
    )
    show = genotype.add_parser("show", help="print a genotype's cells")
    show.add_argument(
        "genotype",
        nargs="?",
        help="a published name (GDAS_V1, ...), a genotype file or an NB201 string "
        "(default: genotype.json)",
    )
    show.set_defaults(func=_genotype_show)
    info = genotype.add_parser("info", help="parameters and multiply-adds of a genotype's network")
    info.add_argument(
        "genotype", help="a published name (GDAS_V1, ...), a genotype file or an NB201 string"
    )
    info.add_argument(
        "--dataset", default=None, help="input size and classes (default cifar10; ptb for rnn)"
    )
    info.add_argument("--channels", type=int, default=None, help="C (default: the paper's)")
    info.add_argument("--layers", type=int, default=None, help="cells (default: the paper's)")
    info.add_argument("--json", action="store_true", help="print {params, macs} as JSON")
    info.set_defaults(func=_genotype_info)
    table = genotype.add_parser(
        "table", help="the genotypes this commit's experiments found, with their metrics"
    )
    table.add_argument("--input", help="saved `dvc exp show --json` output (default: run it)")
    table.set_defaults(func=_genotype_table)
    plots = sub.add_parser("plots", help="plots").add_subparsers(dest="action", required=True)
    page = plots.add_parser(
        "html", help="the dvc plots as one HTML page that renders offline (no CDN)"
    )
    page.add_argument("revs", nargs="*", help="revisions to compare (dvc plots diff); none: show")
    page.add_argument("--out", default="dvc_plots_offline", help="folder for index.html")
    page.set_defaults(func=_plots_html)
    rep = sub.add_parser(
        "report", help="experiments grouped by preset: mean ± std against the papers"
    )
    rep.add_argument("--input", help="saved `dvc exp show --json` output (default: run it)")
    rep.add_argument(
        "--all-commits",
        action="store_true",
        help="the experiments of every commit (default: those of the current HEAD)",
    )
    rep.add_argument("--presets", default="presets", help="presets and papers.yaml")
    rep.add_argument("--out", default="reports/reproduction.md", help="markdown table")
    rep.add_argument("--png", default="reports/reproduction.png", help="figure")
    rep.set_defaults(func=_report)
    nb = sub.add_parser("nb201", help="NAS-Bench-201").add_subparsers(dest="action", required=True)
    lookup = nb.add_parser("lookup", help="a cell's recorded accuracies in the benchmark")
    lookup.add_argument("arch", help="an NB201 architecture string or a genotype file")
    lookup.add_argument(
        "--benchmark",
        default=None,
        help="the NATS-tss-v1_0-3ffb9-simple directory (default: params.yaml search.benchmark)",
    )
    lookup.add_argument("--json", action="store_true", help="print the row as JSON")
    lookup.set_defaults(func=_nb201_lookup)
    exp = sub.add_parser(
        "export", help="the trained model as torch.export and TorchScript, its cells as Python"
    )
    exp.add_argument("dir", help="output folder for model.pt2, model.ts and genotype.py")
    exp.add_argument("--model", default="models/model.pt", help="the model file")
    exp.add_argument(
        "--data",
        default=None,
        help="the prepared dataset whose card.json has the input's mean and std (default: "
        "data/prepared/<train.dataset of params.yaml>)",
    )
    exp.set_defaults(func=_export)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_main(lambda: args.func(args))


if __name__ == "__main__":
    main()
