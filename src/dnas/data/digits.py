"""The embedded default dataset: scikit-learn's handwritten digits.

1,797 real 8x8 grayscale images of the digits 0-9 (the UCI optical-recognition test set), shipped
inside scikit-learn, so the whole pipeline runs offline. Pixel values 0..16 are scaled to uint8
0..255. The dataset has no test set of its own: a stratified, seeded `test_fraction` is held out.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from dnas.data.prepared import channel_stats
from dnas.data.splits import stratified_split

# Every digits class has about 180 images: only a test fraction near 0 or 1 leaves a class short.
TEST_FRACTION_FIX = "set it nearer 0.2"

# Horizontal flips would turn digits into other shapes; a 1-pixel pad-and-crop is the only
# geometric augmentation that keeps them readable at 8x8.
AUGMENT = {"flip": False, "pad": 1}


def load(test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(
        labels, test_fraction, seed, TEST_FRACTION_FIX, f"prepare.test_fraction = {test_fraction}"
    )
    return {
        "train_x": images[train_idx],
        "train_y": labels[train_idx],
        "test_x": images[test_idx],
        "test_y": labels[test_idx],
    }


SOURCE = {"origin": "sklearn.datasets.load_digits", "pixel_scale": "round(v * 255 / 16)"}
NUM_CLASSES = 10


def source(name: str, p) -> tuple[dict, dict]:
    """The arrays and card entries of digits (the registry's array-family interface)."""
    arrays = load(p.test_fraction, p.seed)
    mean, std = channel_stats(arrays["train_x"])
    meta = {
        "num_classes": NUM_CLASSES,
        "augment": AUGMENT,
        "source": SOURCE,
        "test_split": {"protocol": "stratified", "fraction": p.test_fraction},
    }
    return arrays, {**meta, "mean": mean, "std": std}


def check_labels(name: str, p):
    """The labels the splits are made from, without preparing: (train labels, None: the test
    set is held out of them, the advice, the key to name)."""
    labels = load_digits().target.astype(np.int64)
    return labels, None, TEST_FRACTION_FIX, f"prepare.test_fraction = {p.test_fraction}"
