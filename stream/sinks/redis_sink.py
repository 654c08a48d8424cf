"""The Redis sink: what the ward dashboard reads, written once per window, atomically.

:meth:`RedisSink.write_window_result` WATCHes the window's idempotency key and the patient's
latest/alert/patient hashes, applies the :class:`~hfrisk.stream.alerts.policy.AlertPolicy` to the
stored alert state, and writes everything in one MULTI/EXEC: a redelivered window writes nothing
(and returns the events its first write produced, to re-send), a late older window does not roll
``latest`` back, the flagged set always matches the alert state, and two workers racing on one
patient cannot interleave. :meth:`RedisSink.write_window_results` writes several windows in one
such transaction, with the same outcome as one per window in order (the worker writes a scored part
so: three round trips a part instead of three a window). docs/redis-keys.md ("Conventions") says
what that means for every key; ``keys`` names them, ``encoding`` lays out their values, ``reads``
reads them back.

Example::

    sink = RedisSink(redis.Redis.from_url(url), "hfrisk", policy=AlertPolicy.from_settings())
    result = WindowResult.from_scoring(window, model_input, outputs, model_version="3")
    outcome = sink.write_window_result(result)
    for event in outcome.events:
        producer.send("ecg.alerts", key=event.patient_id.encode(), value=event.to_json())
    sink.ranking(10)          # [("bed-4", 1.83), ("bed-1", 0.42), ...]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import redis

from hfrisk.stream.alerts.policy import AlertEvent, AlertPolicy, AlertState
from hfrisk.stream.sinks import encoding as enc
from hfrisk.stream.sinks.reads import SinkReader
from hfrisk.stream.sinks.queued import QueuedCommands
from hfrisk.stream.sinks.records import WindowResult, WriteOutcome
from hfrisk.stream.sinks.resp import pack_commands
from hfrisk.stream.windowing import SkippedWindows

__all__ = ["RedisSink", "WindowResult", "WriteOutcome"]


class RedisSink(SinkReader):
    """Writes window results, skipped windows and alert state; reads them back (:class:`SinkReader`).

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
        super().__init__(client, settings.key_prefix if prefix is None else prefix)
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
        (outcome,) = self.write_window_results([result])
        return outcome

    def write_window_results(self, results: Sequence[WindowResult]) -> Iterator[WriteOutcome]:
        """Store several windows' results, each outcome yielded once its window is committed: the
        same keys, values and outcomes as :meth:`write_window_result` called for each in order.

        They go in one transaction (its three round trips: WATCH and the idempotency records, the
        patients' state, MULTI/EXEC), each window's commands queued after the ones before it, so a
        patient's second window sees its first one's latest, last-seen and alert state. If a
        watched key changed (another worker writing one of these patients, a connection lost),
        nothing was written and they go one window at a time, each retried as a single write is.
        A caller that stops on an error has its committed windows' outcomes already.
        """
        for result in results:
            if result.fit_to_score and result.log_risk is None:
                raise ValueError(f"window {result.window_id} is fit to score but has no log_risk: score it first")
        if len(results) > 1:
            try:
                outcomes = self._write_group(results)
            except redis.WatchError:
                pass
            else:
                yield from outcomes
                return
        for result in results:
            yield self._write_one(result)

    def _write_one(self, result: WindowResult) -> WriteOutcome:
        for _ in range(self.max_retries):
            try:
                (outcome,) = self._write_group([result])
                return outcome
            except redis.WatchError:
                continue
        raise RuntimeError(f"window {result.window_id} of {result.patient_id}: Redis kept changing under the write")

    def _write_group(self, results: Sequence[WindowResult]) -> list[WriteOutcome]:
        """One attempt at writing ``results`` in one transaction; ``WatchError`` if it must be retried."""
        k = self.keys
        window_keys = [k.window(r.patient_id, r.window_id) for r in results]
        patients = list(dict.fromkeys(r.patient_id for r in results))
        watched = dict.fromkeys(window_keys)
        for pid in patients:
            watched.update(dict.fromkeys((k.latest(pid), k.alert(pid), k.patient(pid))))
        with self.client.pipeline(transaction=True) as pipe:
            _, *records = _round_trip(pipe, [("WATCH", *watched), *(("GET", key) for key in window_keys)])
            first_of: dict[str, int] = {}  # a window twice in the group: the second is a redelivery
            for i, (key, record) in enumerate(zip(window_keys, records)):
                if record is None:
                    first_of.setdefault(key, i)
            if not first_of:
                pipe.unwatch()
                return [WriteOutcome(r.window_id, duplicate=True, events=enc.recorded_events(record))
                        for r, record in zip(results, records)]
            # Read only for windows known to be new: a redelivery touches nothing else (even a
            # read can move a hash along in Redis's incremental rehashing).
            fresh = list(dict.fromkeys(results[i].patient_id for i in first_of.values()))
            replies = _round_trip(pipe, [command for pid in fresh for command in (
                ("HGET", k.latest(pid), "window_start_us"),
                ("HGET", k.patient(pid), "last_window_start_us"),
                ("HGETALL", k.alert(pid)),
            )])
            # Each patient's state as the commands queued so far leave it.
            state = {
                pid: [latest, seen, AlertState.from_fields(alert) if self.policy else None]
                for pid, (latest, seen, alert) in zip(fresh, zip(*[iter(replies)] * 3))
            }
            queued = QueuedCommands()
            outcomes: list[WriteOutcome] = []
            for i, (r, key, record) in enumerate(zip(results, window_keys, records)):
                if record is not None:
                    outcomes.append(WriteOutcome(r.window_id, duplicate=True, events=enc.recorded_events(record)))
                elif first_of[key] != i:
                    outcomes.append(WriteOutcome(r.window_id, duplicate=True, events=outcomes[first_of[key]].events))
                else:
                    s = state[r.patient_id]
                    outcome = self._queue_window(queued, r, *s)
                    if outcome.latest_updated:
                        s[0] = r.window_start_us
                    if _is_newer(r.window_start_us, s[1]):
                        s[1] = r.window_start_us
                    s[2] = outcome.alert_state
                    outcomes.append(outcome)
            _execute(pipe, queued.stack)
            return outcomes

    def _queue_window(
        self,
        pipe: QueuedCommands,
        r: WindowResult,
        latest_start: Any,
        seen_start: Any,
        alert_before: AlertState | None,
    ) -> WriteOutcome:
        k, pid = self.keys, r.patient_id
        start_ms = enc.ms(r.window_start_us)
        patient_ttl = self.patient_ttl_s
        newest_scored = _is_newer(r.window_start_us, latest_start)
        newest_seen = _is_newer(r.window_start_us, seen_start)
        latest_updated = False
        events: tuple[AlertEvent, ...] = ()
        alert_after = alert_before

        if r.scored:
            pipe.zadd(k.trend(pid), {enc.trend_member(r.window_id, r.log_risk): start_ms})
            # Keep the newest trend_max_points by start time (a late old window may go straight out).
            pipe.zremrangebyrank(k.trend(pid), 0, -(self.trend_max_points + 1))
            pipe.expire(k.trend(pid), patient_ttl)
            if newest_scored:
                pipe.delete(k.latest(pid))  # replaced whole: no field of an older window survives
                pipe.hset(k.latest(pid), mapping=enc.latest_fields(r))
                pipe.expire(k.latest(pid), patient_ttl)
                pipe.zadd(k.ranking, {pid: r.log_risk})
                latest_updated = True
        else:
            pipe.zadd(k.quality(pid), {enc.quality_record(r): start_ms})
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
                pipe.zadd(k.flagged, {pid: enc.ms(alert_after.since_us)})
            else:
                pipe.zrem(k.flagged, pid)
            pipe.expire(k.alert(pid), patient_ttl)
            if event is not None:
                events = (event,)
                pipe.xadd(k.alerts, enc.alert_entry(event), maxlen=self.alerts_max_len, approximate=True)

        if newest_seen:
            pipe.zadd(k.patients, {pid: enc.ms(r.window_end_us)})
        pipe.hset(k.patient(pid), mapping=enc.patient_fields(r, newest_seen=newest_seen))
        pipe.expire(k.patient(pid), patient_ttl)

        pipe.set(k.window(pid, r.window_id), enc.window_record(r, events), ex=self.window_ttl_s)
        return WriteOutcome(r.window_id, duplicate=False, latest_updated=latest_updated, events=events,
                            alert_state=alert_after)

    def write_skipped(self, skipped: SkippedWindows) -> bool:
        """Record windows that were never emitted (gaps, rate changes...); False if already recorded."""
        k, pid = self.keys, skipped.patient_id
        member = enc.gap_record(skipped)
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(self.max_retries):
                try:
                    pipe.watch(k.gaps(pid))
                    if pipe.zscore(k.gaps(pid), member) is not None:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.zadd(k.gaps(pid), {member: enc.ms(skipped.first_start_us)})
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
        now_us = enc.now_us() if now_us is None else now_us
        cutoff_ms = enc.ms(now_us - round(max_age_s * 1e6))
        stale = [enc.text(p) for p in self.client.zrangebyscore(self.keys.patients, "-inf", f"({cutoff_ms!r}")]
        for patient_id in stale:
            self.drop_patient(patient_id)
        return stale


def _is_newer(start_us: int, stored_start: Any) -> bool:
    """Whether a window starting at ``start_us`` is newer than the stored start (none stored: it is)."""
    return stored_start is None or start_us > int(enc.text(stored_start))


def _round_trip(pipe, commands: list[tuple]) -> list[Any]:
    """Send ``commands`` in one round trip on ``pipe``'s connection before ``MULTI``; their replies.

    The same commands, in the same order on the same connection, as one ``pipe.watch``/``get``/
    ``hget`` call each (a ``WATCH`` among them leaves ``pipe`` watching, as ``pipe.watch`` does);
    only the waits between them go: a window's write took six round trips, most of its CPU spent in
    the client on each.
    """
    conn = _connection(pipe)
    try:
        conn.send_packed_command([_packed(conn, commands)])
        replies = []
        error = None
        for command in commands:
            try:  # read every reply even after an error one, so none is left on the connection
                replies.append(pipe.parse_response(conn, command[0]))
            except redis.ResponseError as exc:
                error = error or exc
        if error is not None:
            raise error
    except BaseException:
        # Replies may be left unread: the connection cannot be trusted (dropping it also drops the WATCH).
        conn.disconnect()
        pipe.watching = False
        raise
    return replies


def _execute(pipe, commands: list[tuple]) -> None:
    """What ``pipe.execute()`` does for ``commands`` (:class:`QueuedCommands`) queued after
    ``pipe.multi()`` while watching: the same MULTI, commands and EXEC in one round trip, with the
    same outcomes (``WatchError`` when a watched key changed or the connection dropped while
    watching, the first error of a command raised), but packed by
    :func:`~hfrisk.stream.sinks.resp.pack_commands` and without redis-py's per-reply callbacks,
    whose results the sink never reads, nor its retry and observability wrappers: with the reads
    packed the same way, a window's client CPU went from ~570 to ~315 µs in isolation.
    """
    conn = _connection(pipe)
    try:
        try:
            conn.send_packed_command([_packed(conn, [("MULTI",), *commands, ("EXEC",)])])
            queued_error = None
            for _ in range(len(commands) + 1):  # MULTI's OK and each command's QUEUED
                try:
                    conn.read_response()
                except redis.ResponseError as exc:  # refused when queued: EXEC then aborts
                    queued_error = queued_error or exc
            try:
                replies = conn.read_response()
            except redis.exceptions.ExecAbortError:
                if queued_error is None:
                    raise
                raise queued_error from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # As redis-py: the WATCH died with the connection, so the caller retries the window.
            conn.disconnect()
            raise redis.WatchError(f"A {type(exc).__name__} occurred while watching one or more keys") from exc
        except redis.ResponseError:
            raise  # every reply was read: the connection is in order
        except BaseException:
            conn.disconnect()  # replies may be left unread
            raise
        pipe.watching = False  # EXEC ends every WATCH
        if replies is None:
            raise redis.WatchError("Watched variable changed.")
        if len(replies) != len(commands):
            conn.disconnect()
            raise redis.ResponseError("Wrong number of response items from pipeline execution")
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
    finally:
        pipe.reset()  # as execute(): UNWATCH if still watching, the connection back to the pool


def _connection(pipe):
    """The connection ``pipe`` holds, taken from its pool on first use (as redis-py's pipeline does
    when it watches or executes)."""
    if pipe.connection is None:
        pipe.connection = pipe.connection_pool.get_connection()
    return pipe.connection


def _packed(conn, commands: list[tuple]) -> bytes:
    encoder = conn.encoder
    return pack_commands(commands, encoder.encoding, encoder.encoding_errors)
