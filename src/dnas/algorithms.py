"""The search algorithms by name, and what each combines with: the one table that lists them
(docs/architecture.md#search-algorithms).

Each row names an algorithm, the module of `dnas.search` that holds its `Algorithm` subclass
(`dnas.search.algorithm`; `dnas.search.registry` imports them), and the facts the params
check needs before any of that code is imported: whether it samples at a Gumbel temperature,
which schedules fit it, whether it has DARTS's unrolled second-order step, whether it can
search the recurrent cell, whether it has a progressive (several partial-channel stages)
schedule, whether it is single level, whether it is a baseline that learns no architecture,
and which `search.*` knobs are its own. This module imports nothing of the search (it sits
beside `config`, which asks it), so checking params stays cheap.

Adding an algorithm: its module with one `Algorithm` subclass, one row here, a preset and a
test.
"""

from __future__ import annotations

from dataclasses import dataclass

# The search.* knobs of every algorithm (or of the search around it: the data, the space, the
# weights' optimiser, the NAS-Bench-201 lookup, the recurrent track's section).
SHARED_KNOBS = (
    "dataset", "space", "algorithm", "epochs", "batch_size", "channels", "layers", "lr",
    "lr_min", "momentum", "nesterov", "weight_decay", "grad_clip", "augment", "zero_grad",
    "drop_path", "fixed_reduction", "benchmark", "rnn",
)  # fmt: skip
# The knobs of the algorithms with an architecture step (all but random search).
ARCH_STEP_KNOBS = (
    "order", "arch_optimizer", "arch_lr", "arch_lr_schedule", "arch_betas", "arch_weight_decay",
    "arch_grad_clip", "step_order", "partial_channels",
)  # fmt: skip
TAU_KNOBS = ("tau_max", "tau_min", "tau_schedule")
LINEAR_SCHEDULES = ("to_last_epoch", "to_end")


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    module: str  # dnas.search.<module> holds its Algorithm subclass
    doc: str
    knobs: tuple[str, ...] = ()
    uses_tau: bool = False
    tau_schedules: tuple[str, ...] = LINEAR_SCHEDULES
    second_order: bool = False
    recurrent: bool = False
    progressive: bool = False
    single_level: bool = False
    baseline: bool = False


ALGORITHMS: dict[str, AlgorithmSpec] = {
    spec.name: spec
    for spec in (
        AlgorithmSpec(
            "gdas", "gdas", "one hard Gumbel sample per forward pass, only the sampled ops run",
            knobs=(*TAU_KNOBS, "sample_per", "unselected_grad", *ARCH_STEP_KNOBS),
            uses_tau=True, recurrent=True,
        ),
        AlgorithmSpec(
            "darts", "darts", "softmax(alpha) mixes every op, first or second order",
            knobs=ARCH_STEP_KNOBS, second_order=True, recurrent=True,
        ),
        AlgorithmSpec(
            "snas", "snas", "single level, soft Gumbel samples of every op, a resource penalty",
            knobs=(*TAU_KNOBS, "resource_lambda", "resource_log", *ARCH_STEP_KNOBS),
            uses_tau=True, tau_schedules=(*LINEAR_SCHEDULES, "snas"), single_level=True,
        ),
        AlgorithmSpec(
            "drnas", "drnas", "Dirichlet samples of every op, optionally progressive",
            knobs=("keep_ops", "arch_warmup", "drnas_reg", "reg_scale", *ARCH_STEP_KNOBS),
            second_order=True, progressive=True,
        ),
        AlgorithmSpec(
            "random", "random_search", "random search with weight sharing, the baseline",
            knobs=("random_samples", "random_score_batches", "random_finalists"),
            baseline=True,
        ),
    )
}  # fmt: skip


def able(flag: str) -> str:
    """The algorithms with `flag` set, for a message ("darts or drnas")."""
    return " or ".join(n for n, spec in ALGORITHMS.items() if getattr(spec, flag))
