"""Triton model repository, server launcher and client."""
