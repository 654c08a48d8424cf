"""Scoring micro-batches of windows: preprocessing in worker processes and inference through Triton."""
