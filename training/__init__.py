"""Offline training: pretraining, Cox fine-tuning, survival evaluation, export."""
