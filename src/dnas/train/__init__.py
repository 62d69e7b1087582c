"""Retraining the discrete network found by the search."""
