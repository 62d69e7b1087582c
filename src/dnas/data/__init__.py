"""Datasets: a registry of dataset families, the prepared-data format and the device-side loader.

Each image family turns one source into train/test uint8 arrays; `prepare_dataset` adds the
split indices and the card and writes `data/prepared/<name>/`. ImageNet (a folder tree too big
to copy) gets a manifest instead, and text corpora token-id arrays and a vocabulary
(`registry.py` says which family does what).
"""

from __future__ import annotations

from dnas.data.prepared import Prepared
from dnas.data.registry import PREPARED_ROOT, check_prepare, load_prepared, prepare_dataset

__all__ = ["Prepared", "load_prepared", "prepare_dataset", "check_prepare", "PREPARED_ROOT"]
