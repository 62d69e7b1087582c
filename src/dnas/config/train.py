"""The `train`, `evaluate` and `plots` sections (and the language model's `train.rnn`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from dnas.config.base import (
    BatchSize,
    DatasetName,
    Fraction,
    Layers,
    NonNegFloat,
    Optim,
    PositiveFloat,
    PositiveInt,
    RnnModel,
    Section,
)


class RnnTrain(RnnModel):
    """`train.rnn`: retraining a recurrent cell as a language model
    (docs/algorithms.md#rnn-retraining). Defaults: the PTB recipe (emsize = nhid = 850); the
    knobs shared with the search are `RnnModel`'s."""

    eval_batch_size: BatchSize = 10  # validation (every epoch)
    test_batch_size: BatchSize = 1  # the evaluate stage's test perplexity (the papers: 1)
    # NT-ASGD: SGD until the validation loss stops improving, then averaged SGD. `nonmono`
    # evaluations must have passed; rule gdas: val_loss > min(all previous SGD val losses);
    # darts: val_loss > min(those but the last nonmono) (docs/algorithms.md#nt-asgd).
    asgd: bool = True
    nonmono: PositiveInt = 5
    switch_rule: Literal["gdas", "darts"] = "gdas"


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
