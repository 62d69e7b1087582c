"""Tabular NAS benchmarks: looking up a searched cell's recorded accuracies."""
