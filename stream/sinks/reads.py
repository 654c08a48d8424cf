"""Reading the sink's keys back for views: one patient, the ward ranking, flags, alert events.

:class:`SinkReader` needs only a client and the key prefix; :class:`~hfrisk.stream.sinks.redis_sink.RedisSink`
is a reader that also writes. The ward view and the tests read through it.
"""

from __future__ import annotations

import json

import redis

from hfrisk.stream.alerts.policy import AlertEvent, AlertState
from hfrisk.stream.sinks import encoding as enc
from hfrisk.stream.sinks.keys import RedisKeys
from hfrisk.stream.sinks.records import PatientView

__all__ = ["SinkReader"]


class SinkReader:
    """Reads what :class:`~hfrisk.stream.sinks.redis_sink.RedisSink` wrote under ``prefix``
    (default ``RedisSettings.key_prefix``)."""

    def __init__(self, client: redis.Redis, prefix: str | None = None):
        if prefix is None:
            from hfrisk.core.config import get_settings

            prefix = get_settings().redis.key_prefix
        self.client = client
        self.keys = RedisKeys(prefix)

    def read_patient(self, patient_id: str, *, trend_points: int = 720) -> PatientView:
        """One patient's latest score, the newest ``trend_points`` of the trend, alert state, info,
        low-quality records and gaps (newest 100 each)."""
        k = self.keys
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.latest(patient_id))
            pipe.zrange(k.trend(patient_id), -trend_points, -1, withscores=True)
            pipe.hgetall(k.alert(patient_id))
            pipe.zscore(k.flagged, patient_id)
            pipe.hgetall(k.patient(patient_id))
            pipe.zrange(k.quality(patient_id), -100, -1, withscores=True)
            pipe.zrange(k.gaps(patient_id), -100, -1, withscores=True)
            latest, trend, alert, flagged, info, quality, gaps = pipe.execute()
        return PatientView(
            patient_id=patient_id,
            latest=enc.parse_latest(latest) if latest else None,
            trend=[enc.parse_trend_member(member, score) for member, score in trend],
            alert=AlertState.from_fields(alert),
            flagged=flagged is not None,
            info={enc.text(f): enc.text(v) for f, v in info.items()},
            low_quality=[enc.parse_quality_record(m) | {"window_start_us": enc.us(s)} for m, s in quality],
            gaps=[json.loads(m) | {"first_start_us": enc.us(s)} for m, s in gaps],
        )

    def ranking(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` patients with the highest current log-risk, highest first."""
        rows = self.client.zrevrange(self.keys.ranking, 0, n - 1, withscores=True)
        return [(enc.text(pid), float(score)) for pid, score in rows]

    def flagged(self) -> dict[str, int]:
        """Flagged patients and the start (µs) of the window that raised each flag, oldest first."""
        rows = self.client.zrange(self.keys.flagged, 0, -1, withscores=True)
        return {enc.text(pid): enc.us(score) for pid, score in rows}

    def alert_events(self, count: int = 100) -> list[AlertEvent]:
        """The newest ``count`` alert events, oldest first."""
        rows = self.client.xrevrange(self.keys.alerts, count=count)
        return [enc.parse_alert_entry(fields) for _, fields in reversed(rows)]
