"""Helpers shared by ``tests/`` and ``bench/`` that drive real ``hfrisk worker`` processes against
real servers and check what they left in Redis.

* :mod:`hfrisk.testing.reference`: the offline reference (:class:`Reference`: chunks, windows, the
  scores ``prepare`` + ONNX Runtime give them, alert thresholds that make alerts rise and clear);
* :mod:`hfrisk.testing.services`: worker processes and their ``HFRISK_*`` environment, fresh
  topics, reading topics and Redis back, :func:`wait_until`;
* :mod:`hfrisk.testing.scenario`: :class:`StreamScenario`, one scenario on its own topics, group
  and key prefix, and its verdict :class:`FaultOutcome`;
* :mod:`hfrisk.testing.faults`: the fault runners (``run_worker_kill``, ``run_rebalance``, …).

The names below are imported on first use, so ``import hfrisk.testing`` loads no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from hfrisk.core.lazy import lazy_exports

if TYPE_CHECKING:
    from hfrisk.testing.faults import (
        CUT_S,
        run_kafka_restart,
        run_rebalance,
        run_redis_outage,
        run_triton_outage,
        run_worker_kill,
    )
    from hfrisk.testing.reference import (
        HOP_S,
        RECORDS,
        Reference,
        offline_scores,
        script_alerts,
        simulate_alerts,
        window_sequences,
    )
    from hfrisk.testing.scenario import FaultOutcome, StreamScenario
    from hfrisk.testing.services import (
        CHUNK_BYTES,
        WAIT_S,
        consume_all,
        redis_view,
        served_card,
        services_env,
        start_worker,
        stream_topics,
        topic_env,
        wait_until,
        worker_env,
        window_records,
        scrape_metrics,
    )

_MODULES = {
    "hfrisk.testing.reference": ["RECORDS", "HOP_S", "Reference", "offline_scores", "script_alerts",
                                 "simulate_alerts", "window_sequences"],
    "hfrisk.testing.services": ["WAIT_S", "CHUNK_BYTES", "wait_until", "consume_all", "start_worker", "topic_env",
                                "services_env", "served_card", "worker_env", "stream_topics", "redis_view",
                                "window_records", "scrape_metrics"],
    "hfrisk.testing.scenario": ["FaultOutcome", "StreamScenario"],
    "hfrisk.testing.faults": ["CUT_S", "run_worker_kill", "run_rebalance", "run_triton_outage", "run_redis_outage",
                              "run_kafka_restart"],
}
# name -> module that defines it
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
