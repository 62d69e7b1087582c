"""The search's architecture budget (docs/algorithms.md#the-architecture-step-size-arch_lr-auto):
`search.arch_lr: auto`, the alphas' step size derived from the number of architecture steps the
run will take, and whether the derived cells settled by the end of the search.

The rule: lr x steps held at the papers' value, 3e-4 over GDAS's 93,840 architecture steps (240
epochs of 391 batches of 64 from the 25k-image search-valid half of CIFAR-10), capped at
`MAX_AUTO_LR`. Adam moves each alpha by at most about lr per step, so lr x steps bounds how far
an alpha can travel in a search; holding it fixed gives a short search the same reach as the
papers' long one. A number given for `search.arch_lr` is used as it is.
"""

from __future__ import annotations

import math

from dnas import distributed as dist
from dnas.algorithms import ALGORITHMS
from dnas.spaces.registry import get_space

ANCHOR_LR = 3.0e-4
ANCHOR_STEPS = 240 * 391  # GDAS: 240 epochs x ceil(25,000 / 64) architecture steps
MOVEMENT = ANCHOR_LR * ANCHOR_STEPS  # 28.152: lr x steps of the papers' search
# Above this, a handful of noisy batches can flip an edge's ranking: a search this short cannot
# settle, and a larger step only makes its last epochs noisier (docs/algorithms.md).
MAX_AUTO_LR = 0.1
# `settled`: the derived genotype was the same after each of the last SETTLE_EPOCHS epochs as
# before them (the acceptance of issue 22: unchanged over the last two epochs).
SETTLE_EPOCHS = 2


def auto_arch_lr(steps: int) -> float:
    """The step size for a search of `steps` architecture steps: MOVEMENT / steps, at most
    MAX_AUTO_LR, to 3 significant digits (3e-4 at ANCHOR_STEPS; non-increasing in steps)."""
    lr = min(MAX_AUTO_LR, MOVEMENT / max(int(steps), 1))
    return float(f"{lr:.3g}")


def steps_per_epoch(s, card: dict) -> int:
    """Architecture steps in one epoch, from the prepared card's counts: one per search-train
    batch (bilevel), one per batch of the whole training split (SNAS, single level), or, for
    the recurrent search, one per bptt-long segment of a batch column of training tokens (the
    estimate its progress uses: sequence lengths vary around bptt)."""
    counts = card["counts"]
    if get_space(s.space).text:
        rows = counts["train"] // s.batch_size
        return max(math.ceil((rows - 2) / s.rnn.bptt), 1)
    split = "train" if ALGORITHMS[s.algorithm].single_level else "search_train"
    return max(math.ceil(counts[split] / s.batch_size), 1)


def moving_epochs(s) -> int:
    """Epochs in which the alphas take steps: all but DrNAS's `arch_warmup` epochs at the start
    of each stage (dnas.search.drnas.Schedule)."""
    stages = len(s.partial_channels)
    per = s.epochs // stages
    starts = [k * per for k in range(stages)]
    return sum(epoch - max(x for x in starts if x <= epoch) >= s.arch_warmup
               for epoch in range(s.epochs))  # fmt: skip


def arch_steps(s, card: dict) -> int:
    """The number of architecture steps the search `s` will take on the prepared data `card`."""
    return moving_epochs(s) * steps_per_epoch(s, card)


def resolve(p, data):
    """`p` with `search.arch_lr: auto` replaced by its number for `data` (a prepared dataset),
    printed once; `p` itself when arch_lr is a number or the algorithm has no alphas (a
    baseline: random search)."""
    s = p.search
    if s.arch_lr != "auto" or ALGORITHMS[s.algorithm].baseline:
        return p
    steps = arch_steps(s, data.card)
    lr = auto_arch_lr(steps)
    if dist.is_main():
        capped = f", capped at {MAX_AUTO_LR:g}" if lr >= MAX_AUTO_LR else ""
        print(
            f"search: arch_lr auto = {lr:g} for {steps} architecture steps"
            f" ({moving_epochs(s)} epochs x {steps_per_epoch(s, data.card)};"
            f" 3e-4 x {ANCHOR_STEPS:,} / steps{capped})",
            flush=True,
        )
    return p.model_copy(update={"search": s.model_copy(update={"arch_lr": lr})})


def unchanged_epochs(cells: list[dict]) -> int:
    """How many final epochs left the derived genotype as it was: `cells` holds the genotype
    after each epoch (any comparable per-epoch value, e.g. Genotype.brief())."""
    count = 0
    for before, after in zip(reversed(cells[:-1]), reversed(cells[1:])):
        if before != after:
            break
        count += 1
    return count


def node_changes(before: dict, after: dict, probs: list[dict]) -> list[tuple]:
    """The nodes whose edges differ between two genotypes (Genotype.brief(): nodes separated by
    ' | ', edges as op(input)), as (cell, node, gone, came): the node's index in the op
    probability rows (`probs`, after the later epoch, as record.arch_prob_rows writes them) and
    the edges only the earlier and only the later genotype has, each (op, input, its
    probability formatted or '?', edge name k<-j). Edge k<-j is input j of a cell's node k -
    first, its first node's index (the smallest k in the rows)."""
    p = {(r["cell"], r["edge"], r["op"]): r["prob"] for r in probs}
    out = []
    for cell in sorted(after):
        first = min((int(edge.split("<-")[0]) for c, edge, _ in p if c == cell), default=0)
        nodes = zip(before.get(cell, "").split(" | "), after[cell].split(" | "))
        for node, (a, b) in enumerate(nodes):
            at = (p, cell, first + node)
            gone = [_edge(*at, e) for e in sorted(set(a.split()) - set(b.split()))]
            came = [_edge(*at, e) for e in sorted(set(b.split()) - set(a.split()))]
            if gone or came:
                out.append((cell, first + node, gone, came))
    return out


def changed_edges(before: dict, after: dict, probs: list[dict]) -> list[str]:
    """`node_changes` as phrases, one per node, with each edge's op probability: an op that
    changed on an edge, e.g. `normal 2<-1: max_pool_3x3 0.022 -> dil_conv_3x3 0.022`, or an
    input a node swapped for another, e.g. `normal node 5: max_pool_3x3(2) 0.927 ->
    max_pool_3x3(1) 0.933`."""
    out = []
    for cell, node, gone, came in node_changes(before, after, probs):
        if len(gone) == len(came) == 1 and gone[0][1] == came[0][1]:  # an op, same input
            (op0, _, p0, edge), (op1, _, p1, _) = gone[0], came[0]
            out.append(f"{cell} {edge}: {op0} {p0} -> {op1} {p1}")
            continue
        was = ", ".join(f"{op}({j}) {pr}" for op, j, pr, _ in gone)
        now = ", ".join(f"{op}({j}) {pr}" for op, j, pr, _ in came)
        out.append(f"{cell} node {node}: {was} -> {now}")
    return out


def _edge(p: dict, cell: str, node: int, token: str) -> tuple[str, str, str, str]:
    """op(j) into `node` of `cell` -> (op, j, its probability in `p` or '?', the edge)."""
    op, j = token[:-1].split("(")
    edge = f"{node}<-{j}"
    value = p.get((cell, edge, op))
    return op, j, "?" if value is None else f"{value:.3g}", edge


def settled_report(cells: list[dict], epochs: int, probs: list[dict] | None = None) -> dict:
    """metrics/search.json's `settled` (the count of unchanged final epochs is in the note and
    in dvclive/search/genotypes.json: one metric column fewer in `dvc exp show`); prints a note
    when the cells did not settle: when they last changed, what changed then (with `probs`,
    the op probability rows of every epoch: each changed edge with its probabilities, so a
    near tie shows as one; docs/algorithms.md#what-keeps-the-cells-from-settling) and what to
    change."""
    unchanged = unchanged_epochs(cells)
    settled = unchanged >= SETTLE_EPOCHS
    if not settled and dist.is_main():
        n = len(cells)
        what = ""
        if probs is not None and n >= 2:
            epoch = n - unchanged - 1  # 0-based: the epoch after which it last changed
            rows = [r for r in probs if r["epoch"] == epoch]
            changes = changed_edges(cells[epoch - 1], cells[epoch], rows)
            more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
            what = f" ({'; '.join(changes[:3])}{more})" if changes else ""
        print(
            f"note: search: the cells did not settle: the genotype last changed in epoch"
            f" {n - unchanged} of {n}{what} (settled = unchanged over the last"
            f" {SETTLE_EPOCHS} epochs); search.arch_lr_schedule: cosine with"
            " search.arch_weight_decay: 0 (the default's) or more search.epochs change fewer"
            " edges per epoch; a larger search.arch_lr changes more (docs/algorithms.md)",
            flush=True,
        )
    return {"settled": settled}
