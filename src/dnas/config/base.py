"""What every params section shares: the base model (strict keys, no booleans for numbers,
floats within float32), the bounded types, the built-in dataset names, and the weights'
optimiser knobs the search and the retraining both have."""

from __future__ import annotations

import reprlib
import typing
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

PositiveInt = Annotated[int, Field(ge=1)]

# Values with a real bound (docs/failure-modes.md): numpy seeds are 32-bit; widths and batch
# sizes far beyond any published setting are typing errors that would otherwise end in an
# allocation of hundreds of gigabytes (the papers' widest network is C=52, batch 768).
Seed = Annotated[int, Field(ge=0, lt=2**32)]

MAX_CHANNELS = 2048

MAX_BATCH = 65536

MAX_LAYERS = 100

Channels = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]

BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH)]

Layers = Annotated[int, Field(ge=1, le=MAX_LAYERS)]

FLOAT32_MAX = 3.4028234663852886e38

# Lists have a length bound: a list of a million items is a typing error, and would take
# minutes to check (DrNAS's longest schedule has 3 stages; there are 11 built-in datasets).
MAX_LIST = 64

NonNegFloat = Annotated[float, Field(ge=0)]

PositiveFloat = Annotated[float, Field(gt=0)]

Fraction = Annotated[float, Field(ge=0, lt=1)]

# Built-in datasets (src/dnas/data); a user's own are declared under prepare.custom.
IMAGE_DATASETS = (
    "digits",
    "cifar10",
    "cifar100",
    "imagenet16",
    "imagenet16-120",
    "imagenet16-150",
    "imagenet16-200",
    "imagenet",
)

# Language-model corpora: prepared here, used by the language-model track, refused by the CNNs.
TEXT_DATASETS = ("ptb", "wt2", "pydoc")

DATASETS = IMAGE_DATASETS + TEXT_DATASETS


# A dataset name: built in, or a key of prepare.custom (checked against them in `Params`).
DATASET_NAME_PATTERN = r"[a-z0-9][a-z0-9_.-]*"  # the whole name (re.fullmatch)

DatasetName = Annotated[str, Field(min_length=1)]


def _admits_bool(annotation: Any) -> bool:
    """Whether a field's type lists `bool` anywhere (bool, bool | Literal["auto"], ...)."""
    if annotation is bool:
        return True
    return any(_admits_bool(a) for a in typing.get_args(annotation))


def _wants_number(annotation: Any) -> bool:
    """Whether a field's type is (or holds) an int, a float or a Literal of numbers."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(a, (int, float)) for a in typing.get_args(annotation))
    return any(_wants_number(a) for a in typing.get_args(annotation))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)


class Section(BaseModel):
    # allow_inf_nan=False: `.inf`, `1e999` and `.nan` are refused for every float.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic reads true as 1 for an int, float or Literal[1, 2]: `train.epochs: true`
        would silently train one epoch. A boolean is accepted only where the type says bool."""
        field = cls.model_fields.get(info.field_name)
        if (
            field is not None
            and _holds_bool(value)
            and _wants_number(field.annotation)
            and not _admits_bool(field.annotation)
        ):
            shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...")
            what = "holds a boolean" if isinstance(value, (list, tuple)) else "is a boolean"
            raise ValueError(f"{shown.strip()} {what}, expected a number")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _fits_the_arithmetic(cls, value: Any) -> Any:
        """A float beyond float32 (`search.lr: 1e300`) cannot reach a tensor: torch stops
        with `value cannot be converted ... without overflow` in the middle of a step, not
        with the finite-loss guard's line. An int beyond 64 bits cannot reach NumPy or torch."""
        for v in value if isinstance(value, list) else (value,):
            if isinstance(v, float) and abs(v) > FLOAT32_MAX:
                raise ValueError(
                    f"{v:g} is too large: the steps compute in float32, whose largest value is"
                    f" {FLOAT32_MAX:.1e}"
                )
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 2**63:
                raise ValueError(f"{v} is too large for a 64-bit integer")
        return value


class Optim(Section):
    """SGD with cosine annealing from `lr` to `lr_min`, per epoch
    (docs/algorithms.md#gdas-schedules)."""

    epochs: PositiveInt = 10
    batch_size: BatchSize = 64
    channels: Channels = 16
    layers: Layers = 8
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


class RnnModel(Section):
    """What the recurrent language model's search (`search.rnn`) and retraining (`train.rnn`)
    share: the sequence lengths, the tied embedding's size, the dropouts and AR/TAR
    (docs/algorithms.md#rnn-search, docs/algorithms.md#rnn-retraining). Defaults: the PTB
    retraining recipe (AWD-LSTM); the search's own are in `RnnSearch`."""

    bptt: PositiveInt = 35
    # Sequence length of each batch: bptt (halved with probability 0.05), plus normal noise of
    # this std, clipped to [5, bptt + max_seq_delta]. 0 = no noise.
    seq_std: NonNegFloat = 5.0
    max_seq_delta: Annotated[int, Field(ge=0)] = 20
    emsize: Channels = 850
    nhid: Channels = 850
    dropout: Fraction = 0.75  # output (locked)
    dropouth: Fraction = 0.25  # states before each W (variational)
    dropoutx: Fraction = 0.75  # input x_t before W0 (variational)
    dropouti: Fraction = 0.2  # embedded input (locked)
    dropoute: Fraction = 0.1  # whole words of the embedding
    alpha: NonNegFloat = 0.0  # activation regularisation (AR) weight, on the dropped outputs
    beta: NonNegFloat = 1.0e-3  # temporal activation regularisation (TAR), on the raw outputs

    @model_validator(mode="after")
    def _tied(self) -> RnnModel:
        if self.emsize != self.nhid:
            raise ValueError(
                f"emsize ({self.emsize}) must equal nhid ({self.nhid}): the decoder shares the "
                "embedding's weights"
            )
        return self


def spaces() -> dict:
    """The search spaces by name (dnas.spaces.registry; lazy: the spaces import torch)."""
    from dnas.spaces.registry import SPACES

    return SPACES


def space_of(name: str):
    """The search space `name` (`dnas.spaces.space.Space`): what a check asks of it."""
    from dnas.spaces.registry import get_space

    return get_space(name)


def _short_repr(value: Any) -> str:
    """`repr` cut to a readable length (a value may be a list of a million items)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict = 3, 8, 8
    short.maxstring = short.maxother = short.maxlong = 80
    return short.repr(value)
