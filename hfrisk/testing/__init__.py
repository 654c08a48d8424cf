"""Test and benchmark helpers shared by `tests/` and `bench/`: the stream scenario harness that drives real
servers.
"""
