"""Reproducible split protocols, written as index lists into the dataset's train set."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, class-balanced split: sorted (first, second) indices, `fraction` in second."""
    idx = np.arange(len(labels))
    first, second = train_test_split(
        idx, test_size=fraction, stratify=labels, random_state=seed, shuffle=True
    )
    return np.sort(first), np.sort(second)


def halves_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First half / last half by index, unshuffled: the DARTS protocol (reference §2.1)."""
    half = n // 2
    return np.arange(half), np.arange(half, n)


def search_split(labels: np.ndarray, protocol: str, seed: int) -> dict[str, list[int]]:
    """Halve a train set into search-train (weights) and search-valid (architecture)."""
    if protocol == "stratified":
        a, b = stratified_split(labels, 0.5, seed)
    elif protocol == "halves":
        a, b = halves_split(len(labels))
    else:
        raise ValueError(f"unknown split protocol {protocol!r}")
    return {"search_train": a.tolist(), "search_valid": b.tolist()}
