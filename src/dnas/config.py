"""Typed, validated params: one section per stage, loaded from `params.yaml`.

Every stage validates the whole file before it does anything, so `-S search.tau_max=abc` or an
unknown key stops with one message that names the key, the bad value and what is allowed.
Numbers are cast here: `dvc exp run -S search.tau_max=10` writes the int 10, PyYAML reads
`3e-4` as a string (docs/architecture.md#the-pipeline), and both end up as floats.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dnas.errors import UserError, first_line

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


def is_text(name: str, prepare: Prepare) -> bool:
    """Whether dataset `name` is a text corpus (for the language-model track): a built-in one
    or the user's own `format: text`."""
    spec = prepare.custom.get(name)
    return name in TEXT_DATASETS or (spec is not None and spec.format == "text")


def text_datasets(prepare: Prepare) -> list[str]:
    """The text corpora: the built-in ones and the user's own."""
    return [*TEXT_DATASETS, *(n for n, c in prepare.custom.items() if c.format == "text")]
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


# torch starts this many threads when asked: a count past any machine's cores only costs memory
# and start-up (100,000 threads exhaust a process), so it is refused.
MAX_THREADS = 1024


class Common(Section):
    seed: Seed = 0
    # torch's CPU threads per process (torch.set_num_threads, dnas.runtime.pick_device); auto =
    # torch's own default, one per core. 1 measured fastest on a shared 2-core CPU
    # (docs/speed.md#threads); other counts can change the last digits of results.
    threads: PositiveInt | Literal["auto"] = 1
    # auto | cpu | cuda | cuda:N (GPU N: one GPU per queued experiment, README "Many GPUs")
    device: str = "auto"
    # Save a resumable checkpoint every this many epochs (and on SIGTERM / SIGINT).
    checkpoint_every: PositiveInt = 1
    # The fast path (docs/speed.md, dnas.runtime.FastPath): auto = on with CUDA, off on
    # the CPU, where the outputs stay byte-identical to the plain path.
    compile: bool | Literal["auto"] = "auto"  # torch.compile the retrained network
    bf16: bool | Literal["auto"] = "auto"  # bfloat16 autocast in search and retraining
    channels_last: bool | Literal["auto"] = "auto"  # NHWC memory layout
    cudnn_benchmark: bool | Literal["auto"] = "auto"  # cuDNN autotuning

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:  # one message, not one per member of the union
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if value == "auto" or (type(value) is int and 1 <= value <= MAX_THREADS):
            return value
        raise ValueError(
            f"{_short_repr(value)} is not a thread count; expected 1, 2, ... {MAX_THREADS} or auto"
        )

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device):
            return device
        raise ValueError("Input should be 'auto', 'cpu' or 'cuda' (or cuda:N for GPU N)")


class Custom(Section):
    """A user's own dataset, images or a text corpus (docs/data.md#custom-datasets)."""

    path: Annotated[str, Field(min_length=1)]
    # folder: one subfolder of images per class (or train/ and test/ holding such subfolders);
    # npz: arrays x (N, H, W[, C]) uint8 and y (N,) int, optionally x_test and y_test;
    # text: a corpus for the language-model track, a folder with train.txt, valid.txt and
    # test.txt, or one UTF-8 file cut into train, valid and test by `split`.
    format: Literal["folder", "npz", "text"]
    # Resize every image of a folder to size x size (needed when their sizes differ).
    size: Annotated[int, Field(ge=1, le=4096)] | None = None
    flip: bool = True  # horizontal flips are a valid augmentation for these images
    pad: Annotated[int, Field(ge=0)] | None = None  # pad-and-crop; default: side // 8
    # What transparent pixels (RGBA, LA, a palette's transparent colour) are composited onto:
    # white (icons are mostly dark shapes on a transparent ground), black, or [r, g, b].
    background: str | list[int] = "white"
    # format text, one file: the fractions of its lines (in order) for train, valid and test.
    split: list[float] | None = None

    @field_validator("split")
    @classmethod
    def _split(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != 3 or any(f <= 0 for f in v) or abs(sum(v) - 1) > 1e-6:
            raise ValueError(
                f"{v}: expected three positive fractions of the lines, train, valid and test, "
                "adding up to 1, e.g. [0.8, 0.1, 0.1]"
            )
        return v

    @model_validator(mode="after")
    def _text_keys(self) -> Custom:
        # by value, not by the keys given, so that a dumped and re-read spec stays valid
        defaults = {"size": None, "flip": True, "pad": None, "background": "white"}
        image_keys = [k for k, v in defaults.items() if getattr(self, k) != v]
        if self.format == "text" and image_keys:
            raise ValueError(
                f"{', '.join(image_keys)}: for images; a format: text corpus takes path and, "
                "for one file, split"
            )
        if self.format != "text" and self.split is not None:
            raise ValueError(
                f"split: for a format: text corpus in one file; format: {self.format} holds "
                "out prepare.test_fraction instead"
            )
        return self

    @property
    def text_split(self) -> list[float]:
        """The line fractions of a one-file corpus (default 80/10/10, as the pydoc corpus)."""
        return self.split or [0.8, 0.1, 0.1]

    @field_validator("background", mode="before")
    @classmethod
    def _background(cls, v: Any) -> Any:
        if v in ("white", "black"):
            return v
        ok = isinstance(v, (list, tuple)) and len(v) == 3
        if ok and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in v):
            return list(v)
        raise ValueError(f"{v!r}: expected white, black or [r, g, b] with each 0..255")

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        named = {"white": (255, 255, 255), "black": (0, 0, 0)}
        bg = self.background
        return named[bg] if isinstance(bg, str) else tuple(bg)


SplitProtocol = Literal["stratified", "halves", "random", "file", "test_half"]


class Prepare(Section):
    # Declared before `datasets`, whose validator needs it: name -> source of a user's dataset.
    custom: Annotated[dict[DatasetName, Custom], Field(max_length=MAX_LIST)] = {}
    datasets: Annotated[list[DatasetName], Field(min_length=1, max_length=MAX_LIST)] = ["digits"]
    seed: Seed = 0  # split seed, separate from common.seed
    raw_dir: str = "data/raw"
    # Local directory or archive to read a dataset from instead of downloading it.
    paths: Annotated[dict[DatasetName, str], Field(max_length=MAX_LIST)] = {}
    # Fraction of the examples held out as the test set, for datasets that ship without one.
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    # How search-train (weights) and search-valid (architecture) are made
    # (docs/data.md#split-protocols): stratified = seeded class-balanced halves of the train set;
    # halves = first / last half (DARTS); random = seeded random halves (GDAS 2019 code);
    # file = the `train` / `valid` indices of split_file (AutoDL format, e.g. cifar-split.txt);
    # test_half = the whole train set for weights and half the test set for the architecture
    # (AutoDL CIFAR-100 / ImageNet16-120: `xvalid` of split_file, else a seeded stratified half).
    # Either one protocol (and file) for every dataset, or a mapping dataset -> protocol (and
    # dataset -> file); a dataset the mapping leaves out is split `stratified`. NAS-Bench-201's
    # CIFAR-100 rows, e.g., search on cifar10 (file) and score cifar100 on its x-test half
    # (test_half), docs/protocols.md.
    search_split: (
        SplitProtocol | Annotated[dict[DatasetName, SplitProtocol], Field(max_length=MAX_LIST)]
    ) = "stratified"
    split_file: (
        str | None | Annotated[dict[DatasetName, str | None], Field(max_length=MAX_LIST)]
    ) = None

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, names: list[str], info: ValidationInfo) -> list[str]:
        custom = info.data.get("custom") or {}
        known = [*DATASETS, *custom]
        for name in names:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"unknown dataset {name!r}; {hint}built in: {', '.join(DATASETS)}; "
                    "declare your own under prepare.custom"
                )
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"{', '.join(dupes)} listed more than once")
        return names

    @field_validator("custom")
    @classmethod
    def _custom_names(cls, custom: dict[str, Custom]) -> dict[str, Custom]:
        for name in custom:
            if not re.fullmatch(DATASET_NAME_PATTERN, name):
                raise ValueError(
                    f"{name!r}: a dataset name is lower-case letters, digits, '_', '.' and '-'"
                    ", starting with a letter or digit (it names data/prepared/<name>)"
                )
        clash = sorted(set(custom) & set(DATASETS))
        if clash:
            raise ValueError(f"{', '.join(clash)} is a built-in dataset; choose another name")
        return custom

    @field_validator("paths")
    @classmethod
    def _paths_builtin(cls, paths: dict[str, str]) -> dict[str, str]:
        for name in paths:
            if name not in DATASETS:
                close = difflib.get_close_matches(name, DATASETS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ValueError(
                    f"{name!r} is not a built-in dataset; {hint}a dataset of your own takes its "
                    "path from prepare.custom.<name>.path"
                )
        return paths

    @model_validator(mode="after")
    def _split_file_needed(self) -> Prepare:
        for key in ("search_split", "split_file"):
            value = getattr(self, key)
            if isinstance(value, dict):
                extra = sorted(set(value) - set(self.datasets))
                if extra:
                    raise ValueError(
                        f"{key} names {', '.join(extra)}, which prepare.datasets"
                        f" {self.datasets} does not list"
                    )
        for name in self.datasets:
            protocol, split_file = self.split_for(name)
            if protocol == "file" and not split_file:
                mapped = isinstance(self.search_split, dict)
                where = f"split_file.{name}" if mapped else "split_file"
                raise ValueError(
                    f"search_split 'file' needs prepare.{where} (AutoDL format: "
                    '{"train": ["int", [...]], "valid": ["int", [...]]})'
                )
        return self

    def split_for(self, name: str) -> tuple[str, str | None]:
        """The split protocol and split file of dataset `name`."""
        protocol = self.search_split
        if isinstance(protocol, dict):
            protocol = protocol.get(name, "stratified")
        split_file = self.split_file
        if isinstance(split_file, dict):
            split_file = split_file.get(name)
        return protocol, split_file


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


class RnnSearch(Section):
    """`search.rnn`: the recurrent (language-model) search, used when `search.space` is `rnn`
    (docs/algorithms.md#rnn-search). Defaults: DARTS's search settings, but for seq_std."""

    bptt: PositiveInt = 35
    # Sequence length of each batch: bptt (halved with probability 0.05), plus normal noise of
    # this std, clipped to [5, bptt + max_seq_delta]. 0 = no noise, as both papers' searches
    # (DARTS's and GDAS's search code: 35, or 17 with probability 0.05; their presets set it);
    # the noise (5) is the retraining's (AWD-LSTM), kept as the default here.
    seq_std: NonNegFloat = 5.0
    max_seq_delta: Annotated[int, Field(ge=0)] = 20
    emsize: Channels = 300
    nhid: Channels = 300
    dropout: Fraction = 0.75  # output (locked)
    dropouth: Fraction = 0.25  # states before each W (variational)
    dropoutx: Fraction = 0.75  # input x_t before W0 (variational)
    dropouti: Fraction = 0.2  # embedded input (locked)
    dropoute: Fraction = 0.0  # whole words of the embedding
    alpha: NonNegFloat = 0.0  # activation regularisation (AR) weight
    beta: NonNegFloat = 1.0e-3  # temporal activation regularisation (TAR) weight
    # GDAS: hard = one sampled op per edge, straight-through (the GDAS paper); soft = the soft
    # Gumbel-softmax weights the GDAS RNN code used (docs/algorithms.md#rnn-search).
    gumbel: Literal["hard", "soft"] = "hard"
    # Derivation: one predecessor per node; 'none' excluded (DARTS) or allowed (GDAS RNN code).
    keep_none: bool = False

    @model_validator(mode="after")
    def _tied(self) -> RnnSearch:
        if self.emsize != self.nhid:
            raise ValueError(
                f"emsize ({self.emsize}) must equal nhid ({self.nhid}): the decoder shares the "
                "embedding's weights"
            )
        return self


class RnnTrain(Section):
    """`train.rnn`: retraining a recurrent cell as a language model
    (docs/algorithms.md#rnn-retraining).
    Defaults: the PTB recipe (emsize = nhid = 850)."""

    bptt: PositiveInt = 35
    seq_std: NonNegFloat = 5.0  # seq_len ~ N(bptt, seq_std), bptt halved with p = 0.05
    max_seq_delta: Annotated[int, Field(ge=0)] = 20  # seq_len <= bptt + max_seq_delta
    emsize: Channels = 850
    nhid: Channels = 850
    dropout: Fraction = 0.75
    dropouth: Fraction = 0.25
    dropoutx: Fraction = 0.75
    dropouti: Fraction = 0.2
    dropoute: Fraction = 0.1
    alpha: NonNegFloat = 0.0  # AR on the dropped outputs
    beta: NonNegFloat = 1.0e-3  # TAR on the raw outputs
    eval_batch_size: BatchSize = 10  # validation (every epoch)
    test_batch_size: BatchSize = 1  # the evaluate stage's test perplexity (the papers: 1)
    # NT-ASGD: SGD until the validation loss stops improving, then averaged SGD. `nonmono`
    # evaluations must have passed; rule gdas: val_loss > min(all previous SGD val losses);
    # darts: val_loss > min(those but the last nonmono) (docs/algorithms.md#nt-asgd).
    asgd: bool = True
    nonmono: PositiveInt = 5
    switch_rule: Literal["gdas", "darts"] = "gdas"

    @model_validator(mode="after")
    def _tied(self) -> RnnTrain:
        if self.emsize != self.nhid:
            raise ValueError(
                f"emsize ({self.emsize}) must equal nhid ({self.nhid}): the decoder shares the "
                "embedding's weights"
            )
        return self


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
    algorithm: Literal["gdas", "darts", "snas", "drnas", "random"] = "gdas"
    # DARTS: 1 = first order, 2 = the unrolled second-order step
    # (docs/algorithms.md#darts-first-and-second-order). Also DrNAS.
    order: Literal[1, 2] = 1
    # GDAS-FRC: the fixed reduction cell, only normal cells searched
    # (docs/algorithms.md#gdas-frc-fixed-reduction-cell).
    fixed_reduction: bool = False
    arch_lr: PositiveFloat = 0.03
    arch_betas: Annotated[list[Fraction], Field(min_length=2, max_length=2)] = [0.5, 0.999]
    arch_weight_decay: NonNegFloat = 1.0e-3
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

    @model_validator(mode="after")
    def _tau_order(self) -> Search:
        if self.tau_min >= self.tau_max:
            raise ValueError(
                f"tau_min ({self.tau_min}) must be smaller than tau_max ({self.tau_max})"
            )
        return self

    @model_validator(mode="after")
    def _algorithm_options(self) -> Search:
        if self.order == 2 and self.algorithm not in ("darts", "drnas"):
            raise ValueError(
                f"order 2 (the unrolled step) needs algorithm darts or drnas, not "
                f"{self.algorithm!r}; set search.order to 1"
            )
        if self.space == "rnn" and self.algorithm not in ("gdas", "darts"):
            raise ValueError(
                f"space rnn is searched with algorithm gdas or darts, not {self.algorithm!r}"
            )
        if self.benchmark is not None and self.space != "nb201":
            raise ValueError(
                f"benchmark (a NAS-Bench-201 lookup) needs space nb201, not {self.space!r};"
                " set search.benchmark to null"
            )
        if self.tau_schedule == "snas" and self.algorithm != "snas":
            raise ValueError(
                f"tau_schedule snas is SNAS's temperature schedule; algorithm is"
                f" {self.algorithm!r}: use to_last_epoch or to_end"
            )
        if self.random_finalists > self.random_samples:
            raise ValueError(
                f"random_finalists ({self.random_finalists}) must not exceed random_samples"
                f" ({self.random_samples})"
            )
        if self.fixed_reduction and self.space != "darts":
            raise ValueError("fixed_reduction needs space darts (NB201 has no reduction cell)")
        stages = len(self.partial_channels)
        if stages > 1 and self.algorithm != "drnas":
            raise ValueError(
                "partial_channels with more than one stage is DrNAS's progressive"
                " schedule; set search.algorithm to drnas or partial_channels to [1]"
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


class Train(Optim):
    """Retraining. The recipes of the papers are presets (presets/*.yaml,
    docs/algorithms.md#cnn-retraining)."""

    # The defaults are params.yaml's (tests/test_config.py compares them).
    epochs: PositiveInt = 15
    layers: Layers = 5
    lr: PositiveFloat = 0.05
    dataset: DatasetName = "digits"
    # What to retrain: `searched` (genotype.json), a published name (GDAS_V1, DARTS_V2, ...),
    # a NAS-Bench-201 architecture string, a genotype JSON file, or `random` (a uniformly random
    # cell of search.space drawn from common.seed, the baseline) (dnas.spaces.published).
    genotype: Annotated[str, Field(min_length=1)] = "searched"
    # Stem and head of a DARTS-space network: the CIFAR one, or the ImageNet mobile one
    # (docs/algorithms.md#cnn-retraining); auto = imagenet when the dataset is imagenet.
    network: Literal["auto", "cifar", "imagenet"] = "auto"
    auxiliary_weight: NonNegFloat = 0.0  # 0 = no auxiliary head
    drop_path: Fraction = 0.0  # ramped linearly from 0 over the epochs
    cutout: Annotated[int, Field(ge=0)] = 0
    label_smoothing: Fraction = 0.0
    lr_min: NonNegFloat = 0.0
    # LR per epoch: cosine from lr to lr_min (CIFAR recipes); step = lr * lr_gamma^epoch
    # (ImageNet, StepLR(1, 0.97)); linear = DrNAS ImageNet's linear decay to 0, slower in the
    # last 5 epochs (docs/algorithms.md#cnn-retraining).
    schedule: Literal["cosine", "step", "linear"] = "cosine"
    lr_gamma: Annotated[float, Field(gt=0, le=1)] = 0.97
    # Epochs of linear warm-up, lr * (epoch + 1) / warmup_epochs (DrNAS ImageNet: 5).
    warmup_epochs: Annotated[int, Field(ge=0)] = 0
    # The test accuracy reported: final (DARTS, "at the end of training") or best over all
    # epochs (the GDAS code's `obtain_best`,
    # docs/algorithms.md#reporting-final-or-best); best adds best_test_acc.
    report: Literal["final", "best"] = "final"
    # Retraining a recurrent cell as a language model. Left out of model_dump, so the CNN
    # checkpoints' fingerprints stay as they were.
    rnn: RnnTrain = Field(default_factory=RnnTrain, exclude=True)

    @model_validator(mode="after")
    def _warmup_fits(self) -> Train:
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be fewer than epochs ({self.epochs})"
            )
        return self


class Evaluate(Section):
    batch_size: BatchSize = 256


class Plots(Section):
    dpi: Annotated[int, Field(ge=30, le=600)] = 110


class Params(Section):
    common: Common = Common()
    prepare: Prepare = Prepare()
    search: Search = Search()
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    plots: Plots = Plots()

    @model_validator(mode="after")
    def _datasets_prepared(self) -> Params:
        prepared = self.prepare.datasets
        for stage in ("search", "train"):
            name = getattr(self, stage).dataset
            if name not in prepared:
                known = [*DATASETS, *self.prepare.custom]
                close = difflib.get_close_matches(name, known, n=1)
                if name not in known:
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(f"{stage}.dataset: unknown dataset {name!r}{hint}")
                raise ValueError(
                    f"{stage}.dataset is {name!r} but prepare.datasets {prepared}"
                    f" does not prepare it; add it there"
                )
        self._text_track("search", self.search.space == "rnn")
        lm = train_is_language_model(self)
        if lm is not None:
            self._text_track("train", lm)
        return self

    def _text_track(self, stage: str, lm: bool) -> None:
        """A text dataset goes with the recurrent cell (the language-model track), an image
        dataset with the CNN spaces; anything else is one clear error."""
        name = getattr(self, stage).dataset
        text = is_text(name, self.prepare)
        if stage == "search":
            what = "search.space is 'rnn' (the recurrent cell)"
            fix = "set search.space to darts or nb201"
        else:
            what = f"train.genotype {_short_repr(self.train.genotype)} is a recurrent cell"
            if self.train.genotype.strip() == "searched":
                what = "train.genotype 'searched' retrains the rnn search's cell"
            fix = "retrain a recurrent cell (search.space rnn, or a published *_RNN genotype)"
        if lm and not text:
            raise ValueError(
                f"{what}, a language model: {stage}.dataset needs a text corpus "
                f"({', '.join(text_datasets(self.prepare))}, or your own with format: text), "
                f"not {name!r}"
            )
        if text and not lm:
            images = ", ".join(n for n in self.prepare.datasets if not is_text(n, self.prepare))
            raise ValueError(
                f"{stage}.dataset is {name!r}, a text corpus for the language-model track; "
                f"{fix}, or use an image dataset ({images or 'digits'})"
            )


def check_track(genotype: Any, spec: str, dataset: str, prepare: Prepare) -> bool:
    """Whether `genotype` (named by `train.genotype = spec`) is retrained as a language model
    on `dataset` (a text corpus: `is_text`); a recurrent cell on an image dataset, or a CNN
    cell on a text corpus, is a `UserError` (the train stage's check, which the validate stage
    makes first)."""
    text = is_text(dataset, prepare)
    if (genotype.space == "rnn") != text:
        kind = "a recurrent cell" if genotype.space == "rnn" else f"a {genotype.space} CNN cell"
        need = "a text corpus" if genotype.space == "rnn" else "an image dataset"
        shown = _short_repr(spec)
        where = f"train.dataset {dataset!r}"
        raise UserError(f"train.genotype {shown} is {kind}: {where} must be {need}")
    return text


def train_is_language_model(p: Params) -> bool | None:
    """Whether `train` retrains a recurrent cell: True for the rnn search's cell or a published
    recurrent genotype, False for CNN cells, None for a genotype file (known when it is read)."""
    spec = p.train.genotype.strip()
    if spec in ("searched", "random"):  # random: a random cell of the search space
        return p.search.space == "rnn"
    if spec.startswith("|"):
        return False
    from dnas.spaces.published import published  # lazy: it imports torch

    entry = published(spec)
    if entry is not None:
        return entry.genotype.space == "rnn"
    return None


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
    loc = tuple(p for p in err["loc"] if not str(p).startswith("function-after["))
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
    return f"{key} = {_short_repr(err['input'])}: {msg}"


def _short_repr(value: Any) -> str:
    """`repr` cut to a readable length (a value may be a list of a million items)."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict = 3, 8, 8
    short.maxstring = short.maxother = short.maxlong = 80
    return short.repr(value)


MAX_PROBLEMS_SHOWN = 10


def format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [_describe(e) for e in exc.errors()]
    if len(lines) == 1:
        return f"{source}: {lines[0]}"
    shown = lines[:MAX_PROBLEMS_SHOWN]
    if len(lines) > len(shown):
        shown.append(f"... and {len(lines) - len(shown)} more")
    return f"{source}: {len(lines)} problems\n" + "\n".join(f"  - {line}" for line in shown)


def parse_params(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; raise `UserError` with one readable message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None
    _require_language_model_knobs(params, raw, source)
    return params


def _require_language_model_knobs(params: Params, raw: dict, source: str) -> None:
    """The language-model knobs (`search.rnn`, `train.rnn`) live only in the params files of
    that track (presets/rnn-pydoc.yaml, the PTB/WT2 presets), so that a CNN run's params, and
    `dvc exp show`, list only what the CNN stages read. A run that needs them must have them in
    its file: DVC tracks the file, not this module's defaults."""
    needed = []
    if params.search.space == "rnn":
        needed.append("search")
    if train_is_language_model(params):
        needed.append("train")
    missing = [f"{s}.rnn" for s in needed if "rnn" not in (raw.get(s) or {})]
    if missing:
        raise UserError(
            f"{source}: {' and '.join(missing)} missing: the language-model track needs its "
            "knobs in the params file; start from a language-model preset "
            "(dnas params use rnn-pydoc)"
        )


# What dvc.yaml reads from params.yaml (its `params:` entries and `${...}` interpolations;
# tests/test_hostile_params.py compares the two): DVC cannot run the pipeline on a file that
# lacks one, so the validate stage and `dnas params check` require them all.
REQUIRED_KEYS = (
    "common",
    "common.seed",
    "prepare",
    "prepare.datasets",
    "search",
    "search.dataset",
    "train",
    "train.dataset",
    "train.genotype",
)
# A params file is a few kilobytes; PyYAML reads about 150 kB a second, so a file of
# megabytes (a list of a million items) would take minutes to refuse.
MAX_PARAMS_BYTES = 256 * 1024
# Containers in a params file once aliases are expanded: a few hundred in a real one.
MAX_PARAMS_NODES = 100_000


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML
    keeps the last; DVC refuses the file)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # unhashable: the safe loader's own error follows
                    continue
                if duplicate:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: Exception) -> str:
    """One line for a YAML error (PyYAML's span several, with the offending text)."""
    if isinstance(exc, _DuplicateKey):
        return f"key {exc.key!r} given twice (again at line {exc.line}); keep one (DVC refuses it)"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"not valid YAML: {exc.problem or exc.context}{where}"
    return f"not valid YAML: {first_line(exc)}"


def _check_tree(value: Any, path: str) -> None:
    """Only plain YAML values (mappings with string keys, lists, strings, numbers, booleans,
    null), no structure that contains itself, and not more than MAX_PARAMS_NODES containers
    once aliases are expanded (an alias bomb would otherwise take pydantic hours)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def walk(v: Any, key: str) -> int:
        if v is None or isinstance(v, (str, int, float, bool)):
            return 0
        if not isinstance(v, (dict, list)):
            raise UserError(
                f"{path}: {key or 'the file'} is a YAML {type(v).__name__}, not a params value;"
                " quote it if it is a string"
            )
        if id(v) in open_:
            raise UserError(f"{path}: {key or 'the file'} contains itself (a recursive alias)")
        if id(v) in sizes:
            return sizes[id(v)]
        open_.add(id(v))
        items = v.items() if isinstance(v, dict) else enumerate(v)
        total = 1
        for k, child in items:
            if isinstance(v, dict) and not isinstance(k, str):
                raise UserError(f"{path}: {key + '.' if key else ''}{k!r}: a key must be a string")
            total += walk(child, f"{key}.{k}" if key else str(k))
            if total > MAX_PARAMS_NODES:
                raise UserError(f"{path}: {key or 'the file'} is far too large for a params file")
        open_.discard(id(v))
        sizes[id(v)] = total
        return total

    walk(value, "")


def _check_complete(raw: dict, source: str) -> None:
    """Every key dvc.yaml reads must be in the file (REQUIRED_KEYS)."""
    for dotted in REQUIRED_KEYS:
        section, _, key = dotted.partition(".")
        holder = raw if not key else raw.get(section)
        name = key or section
        if isinstance(holder, dict) and name not in holder:
            where = f"section {section!r}" if not key else f"key {dotted!r}"
            raise UserError(
                f"{source}: {where} missing; dvc.yaml reads it, so the file must give it"
                " (start from the project's params.yaml or a preset)"
            )


def read_params_file(path: str | Path) -> Any:
    """The parsed YAML of a params file, as `load_params` checks it; `UserError` for a
    missing, huge, non-UTF-8, malformed or duplicate-key file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: params file not found (run from the project root)")
    size = path.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise UserError(
            f"{path}: {size} bytes, far larger than a params file (at most {MAX_PARAMS_BYTES})"
        )
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start});"
            " save it as UTF-8"
        ) from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a params file") from None
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        # ValueError etc.: PyYAML's constructors on `!!int abc`, `!!timestamp x`, an int of
        # more than 4300 digits.
        raise UserError(f"{path}: {_yaml_problem(exc)}") from None
    _check_tree(raw, str(path))
    return raw


# The rarely changed knobs: a second file beside params.yaml, same sections, read under it
# (docs/pipeline.md, "Two params files"). DVC shows every key of params.yaml in `dvc exp show`;
# this file shows as one column (its hash).
ADVANCED_FILE = "advanced.yaml"


def with_advanced(raw: Any, path: str | Path) -> tuple[Any, str]:
    """`raw` (the parsed params file at `path`) and the ADVANCED_FILE beside it, merged section
    by section, and the name to give in messages. A key in both is an error: a knob has one
    home, so that `dvc exp run -S` of either file is never overridden by the other. A file
    with no ADVANCED_FILE beside it (a preset, a test's own) stands alone."""
    extra = Path(path).parent / ADVANCED_FILE
    if Path(path).name == ADVANCED_FILE or not extra.is_file() or not isinstance(raw, dict):
        return raw, str(path)
    base = read_params_file(extra)
    if base is None:
        return raw, str(path)
    if not isinstance(base, dict):
        raise UserError(f"{extra}: expected a mapping of sections, got {type(base).__name__}")
    merged = dict(base)
    for section, value in raw.items():
        below = merged.get(section)
        if isinstance(below, dict) and isinstance(value, dict):
            both = sorted(set(below) & set(value))
            if both:
                raise UserError(
                    f"{path}: {section}.{both[0]} is also in {extra}; give each knob in one of"
                    " the two files (`dnas params use PRESET` writes a preset into both)"
                )
            merged[section] = {**below, **value}
        else:
            merged[section] = value
    return merged, f"{path} + {extra}"


def load_params(path: str | Path = "params.yaml", complete: bool = False) -> Params:
    """The params of a file, over the ADVANCED_FILE beside it (`with_advanced`). `complete`:
    also require every key dvc.yaml reads from the file itself (REQUIRED_KEYS; the validate
    stage and `dnas params check`)."""
    raw = read_params_file(path)
    merged, source = with_advanced(raw, path)
    params = parse_params(merged, source)
    if complete:
        _check_complete(raw or {}, str(path))
    return params
