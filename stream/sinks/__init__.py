"""Where scored windows go: Redis, the store the ward dashboard and ward view read.

* ``keys``: every Redis key, written once (:data:`KEY_SCHEMA`; docs/redis-keys.md is rendered from it);
* ``records``: what the sink takes and gives back (:class:`WindowResult`, :class:`PatientView`, ...);
* ``encoding``: how each value is laid out in Redis and read back;
* ``redis_sink``: :class:`RedisSink`, one idempotent transaction per window (alert policy included);
* ``reads``: :class:`SinkReader`, the reads the views use.
"""

from hfrisk.stream.sinks.keys import KEY_SCHEMA, KeySpec, RedisKeys, key_pattern
from hfrisk.stream.sinks.records import PatientView, TrendPoint, WindowResult, WriteOutcome, temporal_summary
from hfrisk.stream.sinks.reads import SinkReader
from hfrisk.stream.sinks.redis_sink import RedisSink

__all__ = [
    "KEY_SCHEMA",
    "KeySpec",
    "PatientView",
    "RedisKeys",
    "RedisSink",
    "SinkReader",
    "TrendPoint",
    "WindowResult",
    "WriteOutcome",
    "key_pattern",
    "temporal_summary",
]
