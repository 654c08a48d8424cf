"""The Redis sink: what the ward dashboard reads, written once per window, atomically.

docs/redis-keys.md documents every key (its table is generated from
:data:`~hfrisk.stream.sinks.keys.KEY_SCHEMA`, which also names the keys written here). In short, under a prefix ``p`` (``RedisSettings.key_prefix``):

* per patient: ``p:latest:<pid>`` (hash, the newest scored window), ``p:trend:<pid>`` (sorted set of
  scored windows by start time), ``p:quality:<pid>`` (low-quality windows), ``p:gaps:<pid>`` (windows
  never emitted: gaps, rate changes), ``p:alert:<pid>`` (alert state), ``p:patient:<pid>`` (bed,
  device, last seen), ``p:window:<pid>:<window_id>`` (idempotency record);
* per ward: ``p:ranking`` (patients by current log-risk), ``p:flagged`` (flagged patients),
  ``p:patients`` (by last seen), ``p:alerts`` (stream of alert events), ``p:quality_reasons``.

**One transaction per window.** :meth:`RedisSink.write_window_result` WATCHes the window's
idempotency key and the patient's latest/alert/patient hashes, reads them, applies the
:class:`~hfrisk.stream.alerts.policy.AlertPolicy` to the stored alert state, and writes everything in
one MULTI/EXEC. So:

* a **redelivered** window finds its idempotency record and writes nothing at all: every key stays
  byte-identical (TTLs are not refreshed either). The record holds the alert events the window
  produced, returned again so the caller can re-send them (at-least-once; consumers deduplicate
  on ``event_id``);
* a **late older** window is added to the trend (and the quality records) but does not roll back
  ``latest``, the ranking or the patient's last-seen time, and is not counted by the alert policy;
* the **flagged set always matches the alert state**, because both change in the same EXEC;
* two workers racing on one patient (a rebalance) cannot interleave: the loser's EXEC fails on
  the WATCH and it retries against the new state.

Times: Python values are µs since the epoch (``*_us``, as in the chunk schema); sorted-set scores
that are times are **epoch milliseconds**, the unit Grafana's Redis data source plots.

Example::

    sink = RedisSink(redis.Redis.from_url(url), "hfrisk", policy=AlertPolicy.from_settings())
    result = WindowResult.from_scoring(window, model_input, outputs, model_version="3")
    outcome = sink.write_window_result(result)
    for event in outcome.events:
        producer.send("ecg.alerts", key=event.patient_id.encode(), value=event.to_json())
    sink.ranking(10)          # [("bed-4", 1.83), ("bed-1", 0.42), ...]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import redis

from hfrisk.model.contract.card import CANONICAL_LEADS
from hfrisk.stream.alerts.policy import AlertEvent, AlertPolicy, AlertState
from hfrisk.stream.sinks.keys import KEY_SCHEMA, KeySpec, RedisKeys
from hfrisk.stream.windowing.buffers import SkippedWindows, Window, us_to_datetime

__all__ = [
    "KeySpec",
    "KEY_SCHEMA",
    "RedisKeys",
    "WindowResult",
    "WriteOutcome",
    "TrendPoint",
    "PatientView",
    "RedisSink",
    "temporal_summary",
]


def temporal_summary(temporal_attention: np.ndarray) -> list[float]:
    """The (n_leads, n_steps) temporal attention averaged over leads: one weight per step, sum 1.

    Where in the beat the network looked, for a dashboard sparkline; per-lead detail stays on the
    scores topic.
    """
    a = np.asarray(temporal_attention, dtype=np.float64)
    a = a.reshape(-1, a.shape[-1])
    return [float(v) for v in a.mean(axis=0)]


@dataclass(frozen=True)
class WindowResult:
    """What the sink stores about one window.

    A window is *scored* when ``fit_to_score`` and it has a ``log_risk``; otherwise it is a
    low-quality record (a score computed anyway is kept with it, but ranks and alerts nothing).
    ``lead_attention`` is in ``lead_names`` order; ``temporal_attention`` is the per-step summary
    of :func:`temporal_summary`.
    """

    patient_id: str
    window_id: str
    window_start_us: int
    window_end_us: int
    fit_to_score: bool
    quality_score: float
    quality_reasons: tuple[str, ...] = ()
    log_risk: float | None = None
    n_beats: int = 0
    heart_rate_bpm: float | None = None
    lead_attention: tuple[float, ...] | None = None
    lead_names: tuple[str, ...] = CANONICAL_LEADS
    temporal_attention: tuple[float, ...] | None = None
    model_version: str = ""
    scored_at_us: int | None = None
    device_id: str = ""
    bed: str = ""

    @property
    def scored(self) -> bool:
        return self.fit_to_score and self.log_risk is not None

    @property
    def hazard_ratio(self) -> float | None:
        return None if self.log_risk is None else math.exp(self.log_risk)

    @classmethod
    def from_scoring(
        cls,
        window: Window,
        prepared: Any,
        outputs: Mapping[str, np.ndarray] | None = None,
        *,
        model_version: str = "",
        lead_names: tuple[str, ...] = CANONICAL_LEADS,
        scored_at_us: int | None = None,
        bed: str = "",
    ) -> WindowResult:
        """From a :class:`Window`, its ``prepare()`` result and the model's outputs for this one
        window (``log_risk``, ``lead_attention``, ``temporal_attention``; a leading batch axis of 1
        is fine). ``outputs=None``: the window was not scored."""
        quality = prepared.quality
        log_risk = lead_attention = temporal = None
        if outputs is not None:
            log_risk = float(np.asarray(outputs["log_risk"]).reshape(-1)[0])
            if "lead_attention" in outputs:
                lead_attention = tuple(float(v) for v in np.asarray(outputs["lead_attention"]).reshape(-1))
            if "temporal_attention" in outputs:
                temporal = tuple(temporal_summary(outputs["temporal_attention"]))
        hr = prepared.heart_rate_bpm
        return cls(
            patient_id=window.patient_id,
            window_id=window.window_id,
            window_start_us=window.start_us,
            window_end_us=window.end_us,
            fit_to_score=bool(quality.fit_to_score),
            quality_score=float(quality.score),
            quality_reasons=tuple(_code(r) for r in quality.reasons),
            log_risk=log_risk,
            n_beats=int(prepared.n_beats),
            heart_rate_bpm=None if hr is None else float(hr),
            lead_attention=lead_attention,
            lead_names=tuple(lead_names),
            temporal_attention=temporal,
            model_version=str(model_version),
            scored_at_us=scored_at_us,
            device_id=window.ecg.device_id,
            bed=bed,
        )


@dataclass(frozen=True)
class WriteOutcome:
    """What one write did. ``duplicate``: the window had been written before and nothing changed;
    ``events`` are then the ones its first write produced (to re-send)."""

    window_id: str
    duplicate: bool
    latest_updated: bool = False
    events: tuple[AlertEvent, ...] = ()
    alert_state: AlertState | None = None


@dataclass(frozen=True)
class TrendPoint:
    window_start_us: int
    window_id: str
    log_risk: float


@dataclass
class PatientView:
    """Everything the sink holds about one patient (as :meth:`RedisSink.read_patient` reads it)."""

    patient_id: str
    latest: dict[str, Any] | None
    trend: list[TrendPoint]
    alert: AlertState
    flagged: bool
    info: dict[str, str]
    low_quality: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _code(reason: Any) -> str:
    # A str-Enum member's str() is "QualityReason.NOISY" on Python 3.11; the stored code is its value.
    return reason.value if isinstance(reason, Enum) else str(reason)


def _num(value: float) -> str:
    # repr: the shortest string that reads back as the same float, so values round-trip exactly.
    return repr(float(value))


def _ms(us: int) -> float:
    return us / 1000.0


def _us(ms: float) -> int:
    return round(float(ms) * 1000)


def _json(data: Any) -> str:
    # Sorted and compact: the same record always serialises to the same sorted-set member.
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _trend_member(window_id: str, log_risk: float) -> str:
    return f"{window_id}:{_num(log_risk)}"


class RedisSink:
    """Writes window results, skipped windows and alert state; reads them back for views.

    ``policy``: applied to every scored window inside the write transaction; without one no
    alert state is kept. Limits and TTLs default to ``RedisSettings``.
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str | None = None,
        *,
        policy: AlertPolicy | None = None,
        trend_max_points: int | None = None,
        quality_max_records: int | None = None,
        gaps_max_records: int | None = None,
        alerts_max_len: int | None = None,
        window_ttl_s: int | None = None,
        patient_ttl_s: int | None = None,
        max_retries: int = 20,
    ):
        from hfrisk.core.config import get_settings

        settings = get_settings().redis
        self.client = client
        self.keys = RedisKeys(settings.key_prefix if prefix is None else prefix)
        self.policy = policy
        self.trend_max_points = trend_max_points or settings.trend_max_points
        self.quality_max_records = quality_max_records or settings.quality_max_records
        self.gaps_max_records = gaps_max_records or settings.gaps_max_records
        self.alerts_max_len = alerts_max_len or settings.alerts_max_len
        self.window_ttl_s = window_ttl_s or settings.window_ttl_s
        self.patient_ttl_s = patient_ttl_s or settings.patient_ttl_s
        self.max_retries = max_retries

    @classmethod
    def from_settings(cls, client: redis.Redis | None = None, *, with_alerts: bool = True) -> RedisSink:
        from hfrisk.core.config import get_settings

        settings = get_settings()
        from hfrisk.core.security import redis_client

        client = client or redis_client(settings.redis)
        return cls(client, settings.redis.key_prefix,
                   policy=AlertPolicy.from_settings(settings.stream) if with_alerts else None)

    # -- writing ----------------------------------------------------------------------------

    def write_window_result(self, result: WindowResult) -> WriteOutcome:
        """Store one window's result in one transaction; a second write of the same window id is
        a no-op that returns the first write's events."""
        if result.fit_to_score and result.log_risk is None:
            raise ValueError(f"window {result.window_id} is fit to score but has no log_risk: score it first")
        k, pid = self.keys, result.patient_id
        window_key = k.window(pid, result.window_id)
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(self.max_retries):
                try:
                    pipe.watch(window_key, k.latest(pid), k.alert(pid), k.patient(pid))
                    record = pipe.get(window_key)
                    if record is not None:
                        pipe.unwatch()
                        stored = json.loads(record)
                        events = tuple(AlertEvent.from_dict(e) for e in stored.get("events", []))
                        return WriteOutcome(result.window_id, duplicate=True, events=events)
                    latest_start = pipe.hget(k.latest(pid), "window_start_us")
                    seen_start = pipe.hget(k.patient(pid), "last_window_start_us")
                    alert_before = AlertState.from_fields(pipe.hgetall(k.alert(pid))) if self.policy else None
                    pipe.multi()
                    outcome = self._queue_window(pipe, result, latest_start, seen_start, alert_before)
                    pipe.execute()
                    return outcome
                except redis.WatchError:
                    continue
        raise RuntimeError(f"window {result.window_id} of {pid}: Redis kept changing under the write")

    def _queue_window(
        self,
        pipe,
        r: WindowResult,
        latest_start: Any,
        seen_start: Any,
        alert_before: AlertState | None,
    ) -> WriteOutcome:
        k, pid = self.keys, r.patient_id
        start_ms = _ms(r.window_start_us)
        patient_ttl = self.patient_ttl_s
        newest_scored = latest_start is None or r.window_start_us > int(_text(latest_start))
        newest_seen = seen_start is None or r.window_start_us > int(_text(seen_start))
        latest_updated = False
        events: tuple[AlertEvent, ...] = ()
        alert_after = alert_before

        if r.scored:
            pipe.zadd(k.trend(pid), {_trend_member(r.window_id, r.log_risk): start_ms})
            # Keep the newest trend_max_points by start time (a late old window may go straight out).
            pipe.zremrangebyrank(k.trend(pid), 0, -(self.trend_max_points + 1))
            pipe.expire(k.trend(pid), patient_ttl)
            if newest_scored:
                pipe.delete(k.latest(pid))  # replaced whole: no field of an older window survives
                pipe.hset(k.latest(pid), mapping=self._latest_fields(r))
                pipe.expire(k.latest(pid), patient_ttl)
                pipe.zadd(k.ranking, {pid: r.log_risk})
                latest_updated = True
        else:
            record = {
                "window_id": r.window_id,
                "quality_score": round(r.quality_score, 6),
                "reasons": list(r.quality_reasons),
                "n_beats": r.n_beats,
                "log_risk": r.log_risk,
            }
            pipe.zadd(k.quality(pid), {_json(record): start_ms})
            pipe.zremrangebyrank(k.quality(pid), 0, -(self.quality_max_records + 1))
            pipe.expire(k.quality(pid), patient_ttl)
            for reason in r.quality_reasons or ("unfit",):
                pipe.hincrby(k.quality_reasons, reason, 1)

        if self.policy is not None:
            alert_after, event = self.policy.observe(
                alert_before,
                patient_id=pid,
                window_id=r.window_id,
                window_start_us=r.window_start_us,
                log_risk=r.log_risk,
                fit_to_score=r.fit_to_score,
            )
            if alert_after != alert_before:
                pipe.delete(k.alert(pid))
                pipe.hset(k.alert(pid), mapping=alert_after.to_fields())
            if alert_after.flagged:
                pipe.zadd(k.flagged, {pid: _ms(alert_after.since_us)})
            else:
                pipe.zrem(k.flagged, pid)
            pipe.expire(k.alert(pid), patient_ttl)
            if event is not None:
                events = (event,)
                pipe.xadd(k.alerts, {f: _text(v) for f, v in event.to_dict().items()},
                          maxlen=self.alerts_max_len, approximate=True)

        info = {"patient_id": pid}
        if r.device_id:
            info["device_id"] = r.device_id
        if r.bed:
            info["bed"] = r.bed
        if newest_seen:
            info |= {
                "last_window_id": r.window_id,
                "last_window_start_us": str(r.window_start_us),
                "last_seen_us": str(r.window_end_us),
                "last_seen": us_to_datetime(r.window_end_us).isoformat(),
                "last_quality_score": _num(r.quality_score),
                "last_fit_to_score": "1" if r.fit_to_score else "0",
            }
            pipe.zadd(k.patients, {pid: _ms(r.window_end_us)})
        pipe.hset(k.patient(pid), mapping=info)
        pipe.expire(k.patient(pid), patient_ttl)

        record = {
            "window_id": r.window_id,
            "window_start_us": r.window_start_us,
            "scored": r.scored,
            "log_risk": r.log_risk,
            "events": [e.to_dict() for e in events],
            "written_at_us": time.time_ns() // 1000,
        }
        pipe.set(k.window(pid, r.window_id), _json(record), ex=self.window_ttl_s)
        return WriteOutcome(r.window_id, duplicate=False, latest_updated=latest_updated, events=events,
                            alert_state=alert_after)

    def _latest_fields(self, r: WindowResult) -> dict[str, str]:
        scored_at_us = r.scored_at_us if r.scored_at_us is not None else time.time_ns() // 1000
        lead_attention = (
            {name: round(float(w), 6) for name, w in zip(r.lead_names, r.lead_attention)}
            if r.lead_attention is not None else None
        )
        temporal = [round(float(w), 6) for w in r.temporal_attention] if r.temporal_attention is not None else None
        return {
            "patient_id": r.patient_id,
            "window_id": r.window_id,
            "window_start_us": str(r.window_start_us),
            "window_end_us": str(r.window_end_us),
            "window_start": us_to_datetime(r.window_start_us).isoformat(),
            "log_risk": _num(r.log_risk),
            "hazard_ratio": _num(r.hazard_ratio),
            "quality_score": _num(r.quality_score),
            "fit_to_score": "1" if r.fit_to_score else "0",
            "quality_reasons": _json(list(r.quality_reasons)),
            "n_beats": str(r.n_beats),
            "heart_rate_bpm": "" if r.heart_rate_bpm is None else _num(r.heart_rate_bpm),
            # Not sorted: the model card's lead order is part of the meaning.
            "lead_attention": json.dumps(lead_attention, separators=(",", ":")),
            "temporal_attention": _json(temporal),
            "model_version": r.model_version,
            "scored_at_us": str(scored_at_us),
            "scored_at": us_to_datetime(scored_at_us).isoformat(),
        }

    def write_skipped(self, skipped: SkippedWindows) -> bool:
        """Record windows that were never emitted (gaps, rate changes...); False if already recorded."""
        k, pid = self.keys, skipped.patient_id
        record = {
            "first_window_id": skipped.first_window_id,
            "windows": len(skipped),
            "reason": skipped.reason.value,
            "detail": skipped.detail,
            "hole_us": list(skipped.hole_us) if skipped.hole_us else None,
            "missing_sequences": list(skipped.missing_sequences) if skipped.missing_sequences else None,
        }
        member = _json(record)
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(self.max_retries):
                try:
                    pipe.watch(k.gaps(pid))
                    if pipe.zscore(k.gaps(pid), member) is not None:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.zadd(k.gaps(pid), {member: _ms(skipped.first_start_us)})
                    pipe.zremrangebyrank(k.gaps(pid), 0, -(self.gaps_max_records + 1))
                    pipe.expire(k.gaps(pid), self.patient_ttl_s)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        raise RuntimeError(f"skipped windows of {pid}: Redis kept changing under the write")

    def register_patient(self, patient_id: str, *, bed: str = "", device_id: str = "") -> None:
        """Set a patient's bed and device (admission), independent of any window."""
        fields = {"patient_id": patient_id}
        fields |= {"bed": bed} if bed else {}
        fields |= {"device_id": device_id} if device_id else {}
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.patient(patient_id), mapping=fields)
            pipe.expire(self.keys.patient(patient_id), self.patient_ttl_s)
            pipe.execute()

    # -- reading ----------------------------------------------------------------------------

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
        trend_out = []
        for member, score in trend:
            wid, _, risk = _text(member).rpartition(":")
            trend_out.append(TrendPoint(_us(score), wid, float(risk)))
        return PatientView(
            patient_id=patient_id,
            latest=self._parse_latest(latest) if latest else None,
            trend=trend_out,
            alert=AlertState.from_fields(alert),
            flagged=flagged is not None,
            info={_text(f): _text(v) for f, v in info.items()},
            low_quality=[json.loads(m) | {"window_start_us": _us(s)} for m, s in quality],
            gaps=[json.loads(m) | {"first_start_us": _us(s)} for m, s in gaps],
        )

    @staticmethod
    def _parse_latest(fields: dict) -> dict[str, Any]:
        f = {_text(k): _text(v) for k, v in fields.items()}
        out: dict[str, Any] = dict(f)
        for name in ("window_start_us", "window_end_us", "n_beats", "scored_at_us"):
            out[name] = int(f[name])
        for name in ("log_risk", "hazard_ratio", "quality_score"):
            out[name] = float(f[name])
        out["heart_rate_bpm"] = float(f["heart_rate_bpm"]) if f["heart_rate_bpm"] else None
        out["fit_to_score"] = f["fit_to_score"] == "1"
        for name in ("quality_reasons", "lead_attention", "temporal_attention"):
            out[name] = json.loads(f[name])
        return out

    def ranking(self, n: int = 10) -> list[tuple[str, float]]:
        """The ``n`` patients with the highest current log-risk, highest first."""
        rows = self.client.zrevrange(self.keys.ranking, 0, n - 1, withscores=True)
        return [(_text(pid), float(score)) for pid, score in rows]

    def flagged(self) -> dict[str, int]:
        """Flagged patients and the start (µs) of the window that raised each flag, oldest first."""
        rows = self.client.zrange(self.keys.flagged, 0, -1, withscores=True)
        return {_text(pid): _us(score) for pid, score in rows}

    def alert_events(self, count: int = 100) -> list[AlertEvent]:
        """The newest ``count`` alert events, oldest first."""
        rows = self.client.xrevrange(self.keys.alerts, count=count)
        return [AlertEvent.from_dict({_text(f): _text(v) for f, v in fields.items()}) for _, fields in reversed(rows)]

    # -- housekeeping -----------------------------------------------------------------------

    def drop_patient(self, patient_id: str) -> None:
        """Remove everything about a patient (discharge): per-patient keys and ward entries."""
        k = self.keys
        window_keys = list(self.client.scan_iter(match=k.window(patient_id, "*"), count=1000))
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*k.per_patient(patient_id), *window_keys)
            for ward_set in (k.ranking, k.flagged, k.patients):
                pipe.zrem(ward_set, patient_id)
            pipe.execute()

    def drop_stale_patients(self, max_age_s: float, now_us: int | None = None) -> list[str]:
        """Drop patients with no window ending in the last ``max_age_s`` (their per-patient keys
        expire on their own; the ward sets need this). Returns who was dropped."""
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        cutoff_ms = _ms(now_us - round(max_age_s * 1e6))
        stale = [_text(p) for p in self.client.zrangebyscore(self.keys.patients, "-inf", f"({cutoff_ms!r}")]
        for patient_id in stale:
            self.drop_patient(patient_id)
        return stale
