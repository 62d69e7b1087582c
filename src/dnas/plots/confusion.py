"""`confusion.png`: the retrained network's confusion matrix on the test set.

Drawn from `metrics/eval_per_class.json`, which the `evaluate` stage writes (rows: the true
class, columns: the predicted one, counts of test images). Each cell is coloured by its share
of its row, so a class with few test images is as visible as a large one: the diagonal is then
each class's accuracy, and a dark cell off it a confusion. Up to 20 classes every cell carries
its count; up to 40 every class is named on the axes, beyond that the ticks are thinned.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dnas.errors import UserError
from dnas.plots.style import plt

ANNOTATE_MAX = 20  # classes up to which every cell shows its count
NAMES_MAX = 40  # classes up to which every tick is labelled


def load_confusion(path: Path) -> tuple[list[str], np.ndarray] | None:
    """The class names and the confusion matrix of an `eval_per_class.json`, or None when it
    holds no classes (a language model). A missing or malformed file raises `UserError`."""
    again = "run `dvc repro -f evaluate` to write it again"
    try:
        per_class = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: the `evaluate` stage writes it; {again}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} cannot be read ({type(exc).__name__}); {again}") from None
    per_class = per_class if isinstance(per_class, dict) else {}
    names = per_class.get("classes")
    if names == []:
        return None
    k = len(names) if isinstance(names, list) else 0
    try:
        matrix = np.asarray(per_class.get("confusion", []), dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        matrix = np.zeros(0)
    if k < 1 or matrix.shape != (k, k) or (matrix < 0).any():
        raise UserError(
            f"{path} does not hold a confusion matrix of counts, one row and column per "
            f"class in `classes`; {again}"
        )
    return [str(n) for n in names], matrix


def _short(name: str, width: int = 14) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def confusion_figure(names: list[str], matrix: np.ndarray):
    """A heat map of the row shares of `matrix` (row = true class), counts in the cells."""
    k = len(names)
    counts = np.asarray(matrix, dtype=np.int64)
    support = counts.sum(axis=1)
    shares = counts / np.maximum(support, 1)[:, None]
    total, correct = int(counts.sum()), int(np.trace(counts))
    held = support > 0
    balanced = float(np.mean(np.diag(shares)[held])) if held.any() else 0.0

    side = min(4.0 + 0.38 * k, 14.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.grid(False)
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("share of the true class's test images")
    if k <= ANNOTATE_MAX:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    dark = shares[i, j] > 0.6
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")  # fmt: skip
    step = 1 if k <= NAMES_MAX else int(np.ceil(k / NAMES_MAX))
    ticks = list(range(0, k, step))
    labels = [_short(names[i]) for i in ticks]
    ax.set_xticks(ticks, labels, rotation=90 if max(map(len, labels)) > 3 else 0, fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (test images)")
    ax.set_title(
        f"Confusion matrix: {total} test images, {k} classes\n"
        f"top-1 {100.0 * correct / max(total, 1):.2f}%, balanced {100.0 * balanced:.2f}%"
    )
    fig.tight_layout()
    return fig
