"""The `search` section (and the recurrent search's `search.rnn`): what each algorithm and
space combines with comes from their registries (`dnas.algorithms`, `dnas.spaces.registry`)."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from dnas.algorithms import ALGORITHMS, able
from dnas.config.base import (
    MAX_LIST,
    BatchSize,
    Channels,
    DatasetName,
    Fraction,
    Layers,
    NonNegFloat,
    Optim,
    PositiveFloat,
    PositiveInt,
    RnnModel,
    _short_repr,
    space_of,
)


class RnnSearch(RnnModel):
    """`search.rnn`: the recurrent (language-model) search, used when `search.space` is `rnn`
    (docs/algorithms.md#rnn-search). Defaults: DARTS's search settings, but for seq_std; the
    knobs shared with the retraining are `RnnModel`'s. seq_std: both papers' searches use no
    noise (0: DARTS's and GDAS's search code take 35, or 17 with probability 0.05; their
    presets set it); the retraining's (AWD-LSTM) 5 is kept as the default here."""

    emsize: Channels = 300
    nhid: Channels = 300
    dropoute: Fraction = 0.0
    # GDAS: hard = one sampled op per edge, straight-through (the GDAS paper); soft = the soft
    # Gumbel-softmax weights the GDAS RNN code used (docs/algorithms.md#rnn-search).
    gumbel: Literal["hard", "soft"] = "hard"
    # Derivation: one predecessor per node; 'none' excluded (DARTS) or allowed (GDAS RNN code).
    keep_none: bool = False


class Search(Optim):
    """The search stage. Which reference each option follows is in the README's compatibility
    table and in the docstrings of `dnas.search` (docs/algorithms.md)."""

    # The defaults are params.yaml's (tests/test_config.py compares them).
    epochs: PositiveInt = 20
    batch_size: BatchSize = 32
    channels: Channels = 8
    layers: Layers = 3
    dataset: DatasetName = "digits"
    space: Literal["darts", "nb201", "rnn"] = "darts"
    # random: random search with weight sharing, the baseline (docs/algorithms.md#random-search)
    # One of dnas.search.registry's (gdas, darts, snas, drnas, random).
    algorithm: Annotated[str, Field(min_length=1)] = "gdas"
    # DARTS: 1 = first order, 2 = the unrolled second-order step
    # (docs/algorithms.md#darts-first-and-second-order). Also DrNAS.
    order: Literal[1, 2] = 1
    # GDAS-FRC: the fixed reduction cell, only normal cells searched
    # (docs/algorithms.md#gdas-frc-fixed-reduction-cell).
    fixed_reduction: bool = False
    # auto: derived from the number of architecture steps (dnas.search.budget,
    # docs/algorithms.md#the-architecture-step-size-arch_lr-auto); a number is used as it is.
    arch_lr: PositiveFloat | Literal["auto"] = "auto"
    # constant (the papers') | cosine: the alphas' step falls from arch_lr towards 0 over the
    # epochs, as the weights' does (docs/algorithms.md#what-keeps-the-cells-from-settling)
    arch_lr_schedule: Literal["constant", "cosine"] = "cosine"
    arch_betas: Annotated[list[Fraction], Field(min_length=2, max_length=2)] = [0.5, 0.999]
    # The papers' 1e-3; the default's 0 (the decay holds a short search's alphas near uniform,
    # docs/algorithms.md#what-keeps-the-cells-from-settling)
    arch_weight_decay: NonNegFloat = 0.0
    # adam (GDAS, DARTS, DrNAS) | sgd (SNAS on one GPU: plain SGD, no weight decay,
    # docs/algorithms.md#snas)
    arch_optimizer: Literal["adam", "sgd"] = "adam"
    arch_grad_clip: NonNegFloat = 0.0  # SNAS clips the alpha gradient norm to 10; 0 = off
    # GDAS's hard and SNAS's soft Gumbel temperature, decayed linearly per epoch from tau_max:
    # to_last_epoch reaches tau_min at the last epoch (AutoDL); to_end ends one step above it
    # (GDAS CVPR code, SNAS).
    tau_max: PositiveFloat = 5.0
    tau_min: PositiveFloat = 0.1
    # snas: one step in at the first epoch, tau_min at the last (SNAS's scheduler steps once
    # before the first epoch, docs/protocols.md).
    tau_schedule: Literal["to_last_epoch", "to_end", "snas"] = "to_last_epoch"
    # One Gumbel sample per forward pass for all cells (AutoDL) or a new one per cell (CVPR code).
    sample_per: Literal["network", "cell"] = "network"
    # Weight step then architecture step (AutoDL) or the other way round (CVPR code, DARTS).
    step_order: Literal["weights_first", "arch_first"] = "weights_first"
    # Add the unselected ops' zero weights as scalars so every alpha gets a gradient (AutoDL
    # NB201, docs/algorithms.md#gdas-sampler). auto = on for nb201, off for darts.
    unselected_grad: bool | Literal["auto"] = "auto"
    # How a weight step clears the weights' gradients (docs/algorithms.md#gradients-of-unused-
    # weights): zeros = every weight gets a zero gradient each step, so weight decay and
    # momentum also move the ops the step did not use (GDAS's unsampled ops), as the authors'
    # code did; none = set to None, and SGD skips those weights.
    zero_grad: Literal["zeros", "none"] = "zeros"
    # Search-time drop-path, constant, on the whole output of every edge (SNAS: 0.3).
    drop_path: Fraction = 0.0
    # SNAS resource penalty weight (0 = off) and its log form (docs/algorithms.md#snas).
    resource_lambda: NonNegFloat = 0.0
    resource_log: bool = True
    # DrNAS (docs/algorithms.md#drnas-progressive): partial-channel K per stage ([1] = off; [6, 3] =
    # progressive), ops kept per edge after each stage but the last, epochs per stage before alpha
    # moves, and the regulariser: l2 (Adam weight decay = reg_scale) or kl (to Dirichlet(1)).
    partial_channels: Annotated[list[PositiveInt], Field(min_length=1, max_length=MAX_LIST)] = [1]
    keep_ops: Annotated[list[PositiveInt], Field(max_length=MAX_LIST)] = []
    arch_warmup: Annotated[int, Field(ge=0)] = 0
    drnas_reg: Literal["l2", "kl"] = "l2"
    reg_scale: NonNegFloat = 1.0e-3
    # NAS-Bench-201 only: the NATS-Bench topology "simple" directory
    # (NATS-tss-v1_0-3ffb9-simple/). With it, the searched cell's recorded accuracies go into
    # metrics/search.json and the current cell's are logged every epoch (docs/nb201-benchmark.md).
    benchmark: str | None = None
    # Random search (algorithm random, docs/algorithms.md#random-search): after the uniform
    # single-path training, `random_samples` uniformly drawn architectures are scored with the
    # shared weights on `random_score_batches` search-valid batches each (0 = the whole split;
    # AutoDL: 100 on one batch of 512; Li & Talwalkar: 1000 on 10 batches of 64), then the
    # best `random_finalists` of them on the whole split (0 = none; Li & Talwalkar: 10).
    random_samples: PositiveInt = 100
    random_score_batches: Annotated[int, Field(ge=0)] = 1
    random_finalists: Annotated[int, Field(ge=0)] = 0
    # The recurrent search (space rnn). Left out of model_dump, so the CNN checkpoints'
    # fingerprints stay as they were.
    rnn: RnnSearch = Field(default_factory=RnnSearch, exclude=True)

    @field_validator("arch_lr", mode="before")
    @classmethod
    def _arch_lr(cls, value: Any) -> Any:  # one message, not one per member of the union
        if isinstance(value, str) and value.strip() == "auto":
            return "auto"
        try:
            number = float(value) if isinstance(value, (str, int, float)) else None
        except ValueError:
            number = None
        if isinstance(value, bool) or number is None or not 0 < number < float("inf"):
            raise ValueError(
                f"{_short_repr(value)} is not a step size; expected a number > 0 or auto"
            )
        return number  # beyond float32: refused by _fits_the_arithmetic

    @model_validator(mode="after")
    def _tau_order(self) -> Search:
        if self.tau_min >= self.tau_max:
            raise ValueError(
                f"tau_min ({self.tau_min}) must be smaller than tau_max ({self.tau_max})"
            )
        return self

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, name: str) -> str:
        if name not in ALGORITHMS:
            close = difflib.get_close_matches(name, ALGORITHMS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown algorithm {_short_repr(name)}; known:"
                f" {', '.join(map(repr, ALGORITHMS))}{hint}"
            )
        return name

    @model_validator(mode="after")
    def _algorithm_options(self) -> Search:
        algorithm = ALGORITHMS[self.algorithm]  # what it combines with (dnas.algorithms)
        if self.order == 2 and not algorithm.second_order:
            raise ValueError(
                f"order 2 (the unrolled step) needs algorithm {able('second_order')}, not "
                f"{self.algorithm!r}; set search.order to 1"
            )
        if space_of(self.space).text and not algorithm.recurrent:
            raise ValueError(
                f"space {self.space} is searched with algorithm {able('recurrent')}, not"
                f" {self.algorithm!r}"
            )
        if self.benchmark is not None and not space_of(self.space).benchmark:
            raise ValueError(
                f"benchmark (a NAS-Bench-201 lookup) needs space nb201, not {self.space!r};"
                " set search.benchmark to null"
            )
        if self.tau_schedule not in algorithm.tau_schedules:
            raise ValueError(
                f"tau_schedule {self.tau_schedule} is not a schedule of algorithm"
                f" {self.algorithm!r}: use {' or '.join(algorithm.tau_schedules)}"
            )
        if self.random_finalists > self.random_samples:
            raise ValueError(
                f"random_finalists ({self.random_finalists}) must not exceed random_samples"
                f" ({self.random_samples})"
            )
        if self.fixed_reduction and space_of(self.space).fixed_cell is None:
            raise ValueError("fixed_reduction needs space darts (NB201 has no reduction cell)")
        stages = len(self.partial_channels)
        if stages > 1 and not algorithm.progressive:
            raise ValueError(
                "partial_channels with more than one stage is a progressive schedule"
                f" (DrNAS's); set search.algorithm to {able('progressive')} or"
                " partial_channels to [1]"
            )
        if len(self.keep_ops) != stages - 1:
            raise ValueError(
                f"keep_ops needs one entry per stage but the last ({stages - 1}, from"
                f" partial_channels {self.partial_channels}), got {self.keep_ops}"
            )
        if self.epochs < stages:
            raise ValueError(f"epochs ({self.epochs}) must be at least the stages ({stages})")
        for k in self.partial_channels:
            if self.channels % k:
                raise ValueError(
                    f"channels ({self.channels}) must be a multiple of each partial_channels"
                    f" entry ({k}): an edge's ops see channels / K of them"
                )
        return self
