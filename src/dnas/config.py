"""Typed, validated params: one section per stage, loaded from `params.yaml`.

Every stage validates the whole file before it does anything, so `-S search.tau_max=abc` or an
unknown key stops with one message that names the key, the bad value and what is allowed.
Numbers are cast here: `dvc exp run -S search.tau_max=10` writes the int 10, PyYAML reads
`3e-4` as a string (reference/dvc-conventions.md §3.5, §3.14), and both end up as floats.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dnas.errors import UserError

DATASETS = ("digits", "cifar10")

PositiveInt = Annotated[int, Field(ge=1)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
DatasetName = Literal["digits", "cifar10"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Common(Section):
    seed: Annotated[int, Field(ge=0)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Save a resumable checkpoint every this many epochs (and on SIGTERM / SIGINT).
    checkpoint_every: PositiveInt = 1


class Prepare(Section):
    datasets: Annotated[list[DatasetName], Field(min_length=1)] = ["digits"]
    seed: Annotated[int, Field(ge=0)] = 0  # split seed, separate from common.seed
    raw_dir: str = "data/raw"
    # Local directory or archive to read a dataset from instead of downloading it.
    paths: dict[DatasetName, str] = {}
    # Fraction of the examples held out as the test set, for datasets that ship without one.
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    # How the training set is halved into search-train / search-valid:
    # stratified = seeded, class-balanced; halves = first / last half (DARTS, reference §2.1).
    search_split: Literal["stratified", "halves"] = "stratified"


class Optim(Section):
    """SGD with cosine annealing from `lr` to `lr_min`, per epoch (reference §1.4)."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    channels: PositiveInt = 16
    layers: PositiveInt = 8
    lr: PositiveFloat = 0.025
    lr_min: NonNegFloat = 0.001
    momentum: Fraction = 0.9
    nesterov: bool = False
    weight_decay: NonNegFloat = 3.0e-4
    grad_clip: NonNegFloat = 5.0  # 0 disables clipping
    augment: bool = True

    @model_validator(mode="after")
    def _lr_order(self) -> Optim:
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        return self


class Search(Optim):
    dataset: DatasetName = "digits"
    space: Literal["darts", "nb201"] = "darts"
    algorithm: Literal["gdas"] = "gdas"
    arch_lr: PositiveFloat = 3.0e-4
    arch_betas: Annotated[list[Fraction], Field(min_length=2, max_length=2)] = [0.5, 0.999]
    arch_weight_decay: NonNegFloat = 1.0e-3
    tau_max: PositiveFloat = 10.0
    tau_min: PositiveFloat = 0.1
    # One Gumbel sample per forward pass for all cells (AutoDL) or a new one per cell (CVPR code).
    sample_per: Literal["network", "cell"] = "network"
    # Weight step then architecture step (AutoDL) or the other way round (CVPR code, DARTS).
    step_order: Literal["weights_first", "arch_first"] = "weights_first"
    # Add the unselected ops' zero weights as scalars so every alpha gets a gradient (AutoDL
    # NB201, reference §1.6). auto = on for nb201, off for darts.
    unselected_grad: bool | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _tau_order(self) -> Search:
        if self.tau_min >= self.tau_max:
            raise ValueError(
                f"tau_min ({self.tau_min}) must be smaller than tau_max ({self.tau_max})"
            )
        return self


class Train(Optim):
    """Retraining. The recipes of the papers are presets (presets/*.yaml, reference §1.8)."""

    dataset: DatasetName = "digits"
    # What to retrain: `searched` (genotype.json), a published name (GDAS_V1, DARTS_V2, ...),
    # a NAS-Bench-201 architecture string or a genotype JSON file (dnas.spaces.published).
    genotype: Annotated[str, Field(min_length=1)] = "searched"
    # Stem and head of a DARTS-space network: the CIFAR one, or the ImageNet mobile one
    # (reference §1.8); auto = imagenet when the dataset is imagenet.
    network: Literal["auto", "cifar", "imagenet"] = "auto"
    auxiliary_weight: NonNegFloat = 0.0  # 0 = no auxiliary head
    drop_path: Fraction = 0.0  # ramped linearly from 0 over the epochs (reference §1.8)
    cutout: Annotated[int, Field(ge=0)] = 0
    label_smoothing: Fraction = 0.0
    lr_min: NonNegFloat = 0.0
    # LR per epoch: cosine from lr to lr_min (CIFAR recipes); step = lr * lr_gamma^epoch
    # (ImageNet, StepLR(1, 0.97)); linear = DrNAS ImageNet's linear decay to 0, slower in the
    # last 5 epochs (reference §4).
    schedule: Literal["cosine", "step", "linear"] = "cosine"
    lr_gamma: Annotated[float, Field(gt=0, le=1)] = 0.97
    # Epochs of linear warm-up, lr * (epoch + 1) / warmup_epochs (DrNAS ImageNet: 5).
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    # The test accuracy reported: final (DARTS, "at the end of training") or best over all
    # epochs (the GDAS code's `obtain_best`, reference §5 item 11); best adds best_test_acc.
    report: Literal["final", "best"] = "final"

    @model_validator(mode="after")
    def _warmup_fits(self) -> Train:
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})"
            )
        return self


class Evaluate(Section):
    batch_size: PositiveInt = 256


class Plots(Section):
    dpi: Annotated[int, Field(ge=30, le=600)] = 120


class Params(Section):
    common: Common = Common()
    prepare: Prepare = Prepare()
    search: Search = Search()
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    plots: Plots = Plots()

    @model_validator(mode="after")
    def _datasets_prepared(self) -> Params:
        for stage in ("search", "train"):
            name = getattr(self, stage).dataset
            if name not in self.prepare.datasets:
                raise ValueError(
                    f"{stage}.dataset is {name!r} but prepare.datasets {self.prepare.datasets}"
                    f" does not prepare it; add it there"
                )
        return self


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc` (for 'did you mean' hints)."""
    model: Any = Params
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return None
        model = field.annotation
    return model


def _describe(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if p not in ("function-after[_tau_order()]",))
    key = ".".join(str(p) for p in loc)
    if err["type"] == "extra_forbidden":
        owner = _model_at(loc[:-1])
        valid = sorted(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean {'.'.join(map(str, loc[:-1] + (close[0],)))!r}? " if close else ""
        return f"{key}: unknown key; {hint}valid keys here: {', '.join(valid)}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error" or not loc:
        return f"{key}: {msg}" if key else msg
    return f"{key} = {err['input']!r}: {msg}"


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [_describe(e) for e in exc.errors()]
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    return f"{source}: {len(lines)} problems\n" + "\n".join(f"  - {line}" for line in lines)


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; raise `UserError` with one readable message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found (run from the project root)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw, str(path))
