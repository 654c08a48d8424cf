"""Python's cyclic garbage collector, told to leave a long-running process's start-up objects alone
and to collect young objects less often.

A stream worker holds ~164,000 objects that the collector tracks at the end of its start-up
(modules, Faust, pydantic, the gRPC and Kafka clients), alive until it stops. Every full
collection walks all of them again: in a worker draining a backlog, one every ~8 s at ~90 ms of
CPU each. With the young collections (one every 700 allocations) the collector took ~8 % of the
worker's CPU (docs/bench/stream-tuning.md, "2026-12-06 night").

* :func:`gc.freeze` moves what exists at the end of start-up to a generation the collector never
  walks (the use the Python documentation gives it, besides sharing pages across ``fork``), so full
  collections only walk what the worker made since: ~10 ms each instead of ~90. A garbage cycle
  among the frozen objects is never freed; start-up objects live as long as the process anyway.
* A young collection every 10,000 allocations instead of 700: most of a batch's objects are freed
  by their reference counts before a collection would walk them. Cyclic garbage waits a little
  longer for its collection, which stays small (a few ms).

Together ~1.3 % of the worker's CPU in the same run.
"""

from __future__ import annotations

import gc

from hfrisk.core.logs import get_logger

__all__ = ["tune_collector"]

log = get_logger(__name__)


def tune_collector(*, freeze: bool, young_threshold: int | None = None) -> None:
    """``freeze``: collect, then freeze every object the collector tracks now (call it at the end
    of start-up). ``young_threshold``: allocations between young collections (``None``: leave
    Python's). Either applies to the whole process."""
    if young_threshold is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    if freeze:
        gc.collect()  # what is garbage now is freed, not frozen
        gc.freeze()
    log.info("garbage collector tuned", frozen_objects=gc.get_freeze_count(), thresholds=list(gc.get_threshold()))
