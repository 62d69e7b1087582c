"""dnas: a reproducible DVC pipeline for differentiable neural architecture search."""

__version__ = "0.1.0"
