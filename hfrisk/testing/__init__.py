"""Helpers shared by ``tests/`` and ``bench/`` that drive real ``hfrisk worker`` processes against
real servers and check what they left in Redis.

* :mod:`hfrisk.testing.reference`: the offline reference (:class:`Reference`: chunks, windows, the
  scores ``prepare`` + ONNX Runtime give them, alert thresholds that make alerts rise and clear);
* :mod:`hfrisk.testing.services`: worker processes and their ``HFRISK_*`` environment, fresh
  topics, reading topics and Redis back, :func:`wait_until`;
* :mod:`hfrisk.testing.scenario`: :class:`StreamScenario`, one scenario on its own topics, group
  and key prefix, and its verdict :class:`FaultOutcome`;
* :mod:`hfrisk.testing.faults`: the fault runners (``run_worker_kill``, ``run_rebalance``, …);
* :mod:`hfrisk.testing.realtime`: window latencies and :class:`PacedFeed`, chunks sent in real time;
* :mod:`hfrisk.testing.recovery`: :func:`recovery_times`, how a real-time stream got over a fault;
* :mod:`hfrisk.testing.load`: :func:`run_at_load`, the fault scenarios while many beds stream in real time.

The names below are imported on first use, so ``import hfrisk.testing`` loads no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from hfrisk.core.lazy import lazy_exports

if TYPE_CHECKING:
    from hfrisk.testing.faults import (
        CUT_S,
        finish,
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
    from hfrisk.testing.load import (
        LOAD_FAULTS,
        LOAD_WORKER_ENV,
        LOAD_WORKER_OPTIONS,
        load_worker_env,
        load_worker_options,
        run_at_load,
    )
    from hfrisk.testing.realtime import PacedFeed, percentiles, window_due_us, window_latencies_s
    from hfrisk.testing.recovery import RecoveryTimes, backlog_at, recovery_times
    from hfrisk.testing.scenario import FaultOutcome, StreamScenario
    from hfrisk.testing.services import (
        CHUNK_BYTES,
        WAIT_S,
        WORKER_OPTIONS,
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
        worker_ready,
    )

_MODULES = {
    "hfrisk.testing.reference": ["RECORDS", "HOP_S", "Reference", "offline_scores", "script_alerts",
                                 "simulate_alerts", "window_sequences"],
    "hfrisk.testing.services": ["WAIT_S", "CHUNK_BYTES", "WORKER_OPTIONS", "wait_until", "consume_all",
                                "start_worker", "topic_env", "services_env", "served_card", "worker_env",
                                "stream_topics", "redis_view", "window_records", "scrape_metrics",
                                "worker_ready"],
    "hfrisk.testing.scenario": ["FaultOutcome", "StreamScenario"],
    "hfrisk.testing.faults": ["CUT_S", "finish", "run_worker_kill", "run_rebalance", "run_triton_outage",
                              "run_redis_outage", "run_kafka_restart"],
    "hfrisk.testing.realtime": ["percentiles", "window_due_us", "window_latencies_s", "PacedFeed"],
    "hfrisk.testing.recovery": ["RecoveryTimes", "recovery_times", "backlog_at"],
    "hfrisk.testing.load": ["LOAD_FAULTS", "LOAD_WORKER_OPTIONS", "LOAD_WORKER_ENV", "load_worker_env",
                            "load_worker_options", "run_at_load"],
}
# name -> module that defines it
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
