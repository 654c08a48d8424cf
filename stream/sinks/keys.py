"""Every Redis key hfrisk uses, written once: pattern, Redis type, TTL, writer, readers, contents.

:data:`KEY_SCHEMA` is the single source. :class:`RedisKeys` builds key names from it, the Grafana
dashboards build their key patterns with :func:`key_pattern`, and the key tables in
``docs/redis-keys.md`` and ``README.md`` are rendered from it (``python -m hfrisk.stream.sinks.keys``
rewrites them; ``tests/stream/test_redis_keys.py`` fails while a committed table differs).

Patterns hold the placeholders ``{prefix}`` (``RedisSettings.key_prefix``), ``{patient_id}`` and
``{window_id}``::

    >>> RedisKeys("hfrisk").latest("bed-3")
    'hfrisk:latest:bed-3'
    >>> key_pattern("trend", prefix="${prefix}", patient_id="${patient}")
    '${prefix}:trend:${patient}'
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KeySpec",
    "KEY_SCHEMA",
    "KEYS",
    "RedisKeys",
    "key_pattern",
    "render_key_table",
    "render_key_summary",
    "update_key_tables",
]


@dataclass(frozen=True)
class KeySpec:
    """One key family. ``name`` is the :class:`RedisKeys` accessor; ``type`` the Redis type
    (``TYPE`` answers it); ``owner`` who writes it (``sink``: :class:`RedisSink`, ``worker``: the
    stream worker). The other fields are the documentation table's cells (Markdown);
    ``summary`` is the README's one line."""

    name: str
    pattern: str
    type: str
    ttl: str
    written_by: str
    read_by: str
    contents: str
    summary: str
    owner: str = "sink"

    @property
    def per_patient(self) -> bool:
        return "{patient_id}" in self.pattern


KEY_SCHEMA: tuple[KeySpec, ...] = (
    KeySpec(
        "latest", "{prefix}:latest:{patient_id}", "hash", "patient_ttl_s",
        "sink, scored windows newer than the current one",
        "dashboards (patient panel), `read_patient`",
        "the newest scored window, replaced whole: `patient_id`, `window_id`, `window_start_us`, `window_end_us`, "
        "`window_start` (ISO), `log_risk` (Cox log-hazard, higher = riskier), `hazard_ratio` (= exp(log_risk)), "
        "`risk_percentile` (0-100, in the model card's reference cohort), `absolute_risk` (probability of heart "
        "failure within `absolute_risk_horizon_days`, Breslow baseline of the card; these three are empty when the "
        "card has no risk scale, absent in hashes written before it; docs/score-scale.md), "
        "`quality_score`, `fit_to_score` (`1`), `quality_reasons` (JSON list), `n_beats_detected` (R peaks "
        "found in the window), `n_beats_used` (those that formed the median beat; a hash written before the "
        "split has one `n_beats`, read as this), `heart_rate_bpm` (from the detected beats; empty if unknown), "
        "`lead_attention` (JSON object lead → weight, 12 leads in the model card's order, sum 1; `hfrisk.model.contract.attention_weights`), `temporal_attention` (JSON list, one weight per "
        "encoder step averaged over leads, sum 1), `model_version`, `scored_at_us`, `scored_at` (ISO)",
        "newest scored window: log-risk, hazard ratio, percentile, absolute risk, quality, beats, heart rate, "
        "lead attention, temporal attention, model version",
    ),
    KeySpec(
        "trend", "{prefix}:trend:{patient_id}", "zset", "patient_ttl_s",
        "sink, every scored window (late ones too)",
        "dashboards (risk trend), `read_patient`",
        "member `<window_id>:<log_risk>`, score = window start (epoch ms); the newest `trend_max_points` "
        "(default 17,280: a day at a 5-s hop) are kept",
        "risk trend, scored by window start time",
    ),
    KeySpec(
        "quality", "{prefix}:quality:{patient_id}", "zset", "patient_ttl_s",
        "sink, windows not fit to score",
        "dashboards (signal quality), `read_patient`",
        'member JSON `{"window_id", "quality_score", "reasons", "n_beats_detected", "n_beats_used", "log_risk"}` '
        "(`log_risk` null unless it was scored anyway; older members have one `n_beats`, the beats used), "
        "score = window start (epoch ms); newest `quality_max_records` (2,880) kept",
        "windows not fit to score (quality gate reasons)",
    ),
    KeySpec(
        "gaps", "{prefix}:gaps:{patient_id}", "zset", "patient_ttl_s",
        "sink (`write_skipped`), windows the grid defined but never emitted",
        "dashboards (data gaps), `read_patient`",
        'member JSON `{"first_window_id", "windows" (how many consecutive ids), "reason" (`missing_chunks`, '
        '`time_gap`, `rate_change`, `lead_change`, `sequence_reset`, `time_discontinuity`, `stream_end`), '
        '"detail", "hole_us" ([start, end] or null), "missing_sequences" ([first, stop) or null)}`, score = '
        "start of the first skipped window (epoch ms); newest `gaps_max_records` (2,880) kept",
        "windows lost to gaps (never emitted)",
    ),
    KeySpec(
        "alert", "{prefix}:alert:{patient_id}", "hash", "patient_ttl_s",
        "sink, in the window's transaction (`AlertPolicy`)",
        "sink (next window), `read_patient`",
        "`flagged` (`1`/`0`), `run` (consecutive counted windows towards the next raise or clear), "
        "`last_window_id`, `last_window_start_us` (newest window counted: older ones are ignored), "
        "`since_window_id`, `since_us` (the window that raised the current flag; empty when not flagged)",
        "alert state (hysteresis run, flag)",
    ),
    KeySpec(
        "patient", "{prefix}:patient:{patient_id}", "hash", "patient_ttl_s",
        "sink (every window; `register_patient`)",
        'dashboards (bed labels, "last seen"), `read_patient`',
        "`patient_id`, `bed` (if known), `device_id`, `last_window_id`, `last_window_start_us`, `last_seen_us` "
        "(end of the newest window seen, scored or not), `last_seen` (ISO), `last_quality_score`, "
        "`last_fit_to_score` (`1`/`0`)",
        "bed, device, last window seen, its quality score",
    ),
    KeySpec(
        "window", "{prefix}:window:{patient_id}:{window_id}", "string", "window_ttl_s",
        "sink, once per window",
        "sink (idempotency)",
        'JSON `{"window_id", "window_start_us", "scored", "log_risk", "events" (alert events this window '
        'produced, re-sent on a redelivery), "written_at_us"}`',
        "idempotency record: a redelivered window changes nothing",
    ),
    KeySpec(
        "ranking", "{prefix}:ranking", "zset", "none",
        "sink, scored windows newer than the patient's latest",
        "dashboards (ward ranking), `ranking(n)`",
        "member patient id, score = `log_risk` of that patient's latest scored window",
        "patients by current log-risk (the ward ranking)",
    ),
    KeySpec(
        "flagged", "{prefix}:flagged", "zset", "none",
        "sink, in the window's transaction: present exactly when the patient's `alert` hash says `flagged=1`",
        "dashboards (flagged list), `flagged()`",
        "member patient id, score = start of the window that raised the flag (epoch ms)",
        "flagged patients (since when)",
    ),
    KeySpec(
        "patients", "{prefix}:patients", "zset", "none",
        "sink, every window newer than the patient's last seen",
        "dashboards (who is online), `drop_stale_patients`",
        "member patient id, score = end of the newest window seen (epoch ms)",
        "every patient seen, scored by when last seen",
    ),
    KeySpec(
        "alerts", "{prefix}:alerts", "stream", "none (capped at ~`alerts_max_len`, 10,000)",
        "sink, in the transaction of the window that raised or cleared a flag",
        "dashboards (annotations), `alert_events(n)`",
        "one entry per event: `kind` (`raised`/`cleared`), `patient_id`, `window_id`, `window_start_us`, `at` "
        "(ISO), `log_risk`, `threshold` (the one crossed), `windows` (run length), `event_id` "
        "(`<patient>/<window_id>/<kind>`, also the dedup key on the `ecg.alerts` topic)",
        "alert raised / cleared events",
    ),
    KeySpec(
        "quality_reasons", "{prefix}:quality_reasons", "hash", "none",
        "sink, once per low-quality window",
        "dashboards (why windows are refused)",
        "field = quality reason code (`flat_line`, `noisy`, `too_few_beats`, …; `unfit` when none was given), "
        "value = number of windows",
        "count of unscored windows per quality reason",
    ),
    KeySpec(
        "buffer", "{prefix}:buffer:{patient_id}", "string", "patient_ttl_s",
        "stream worker (`BufferStore`), at each checkpoint",
        "stream worker (restore after a restart or rebalance)",
        "the patient's window buffer as `PatientBuffer.to_bytes()` (binary, state version 3: a header, JSON "
        "metadata, then the samples as raw little-endian int16 counts with their calibration, 60-125 kB at 12 "
        "leads and 500 Hz, or as float32 at twice that when they did not arrive as counts of one calibration; "
        "the forms older workers saved still load; docs/windowing.md); see below",
        "the worker's saved window buffer (restored after a restart or rebalance)",
        owner="worker",
    ),
)

KEYS: dict[str, KeySpec] = {spec.name: spec for spec in KEY_SCHEMA}


def key_pattern(name: str, *, prefix: str = "{prefix}", patient_id: str = "{patient_id}",
                window_id: str = "{window_id}") -> str:
    """The key of family ``name`` with its placeholders filled in (those not given stay)."""
    return KEYS[name].pattern.format(prefix=prefix, patient_id=patient_id, window_id=window_id)


class RedisKeys:
    """Key names under one prefix, each built from its :data:`KEY_SCHEMA` pattern."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def _key(self, name: str, patient_id: str = "", window_id: str = "") -> str:
        return key_pattern(name, prefix=self.prefix, patient_id=patient_id, window_id=window_id)

    def latest(self, patient_id: str) -> str:
        return self._key("latest", patient_id)

    def trend(self, patient_id: str) -> str:
        return self._key("trend", patient_id)

    def quality(self, patient_id: str) -> str:
        return self._key("quality", patient_id)

    def gaps(self, patient_id: str) -> str:
        return self._key("gaps", patient_id)

    def alert(self, patient_id: str) -> str:
        return self._key("alert", patient_id)

    def patient(self, patient_id: str) -> str:
        return self._key("patient", patient_id)

    def window(self, patient_id: str, window_id: str) -> str:
        return self._key("window", patient_id, window_id)

    def buffer(self, patient_id: str) -> str:
        return self._key("buffer", patient_id)

    def per_patient(self, patient_id: str) -> list[str]:
        """The sink's per-patient keys, except the per-window records (what a discharge deletes)."""
        return [self._key(spec.name, patient_id) for spec in KEY_SCHEMA
                if spec.per_patient and spec.owner == "sink" and spec.name != "window"]

    @property
    def ranking(self) -> str:
        return self._key("ranking")

    @property
    def flagged(self) -> str:
        return self._key("flagged")

    @property
    def patients(self) -> str:
        return self._key("patients")

    @property
    def alerts(self) -> str:
        return self._key("alerts")

    @property
    def quality_reasons(self) -> str:
        return self._key("quality_reasons")


# -- the Markdown tables --------------------------------------------------------------------------

_TYPE_WORDS = {"zset": "sorted set"}
_BEGIN = "<!-- BEGIN generated key table: python -m hfrisk.stream.sinks.keys (edit stream/sinks/keys.py) -->"
_END = "<!-- END generated key table -->"


def _rows(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_key_table() -> str:
    """``docs/redis-keys.md``'s table: every key with all its cells."""
    return _rows(("key", "type", "TTL", "written by", "read by", "contents"),
                 [(f"`{s.pattern}`", s.type, s.ttl, s.written_by, s.read_by, s.contents) for s in KEY_SCHEMA])


def render_key_summary(prefix: str = "hfrisk") -> str:
    """``README.md``'s short table: key (default prefix), type, one line on what it holds."""
    return _rows(("key", "type", "holds"), [
        (f"`{key_pattern(s.name, prefix=prefix, patient_id='{patient}', window_id='{window}')}`",
         _TYPE_WORDS.get(s.type, s.type), s.summary)
        for s in KEY_SCHEMA
    ])


def generated_section(text: str) -> str | None:
    """The table between the generated-table markers of a Markdown text (None: no markers)."""
    match = re.search(re.escape(_BEGIN) + r"\n(.*?)\n" + re.escape(_END), text, flags=re.S)
    return match.group(1) if match else None


def update_key_tables(root: Path | str) -> list[Path]:
    """Rewrite the generated tables of ``docs/redis-keys.md`` and ``README.md`` under ``root``."""
    changed = []
    for relative, table in (("docs/redis-keys.md", render_key_table()), ("README.md", render_key_summary())):
        path = Path(root) / relative
        text = path.read_text(encoding="utf-8")
        if generated_section(text) is None:
            raise ValueError(f"{path}: no generated key table markers")
        new = re.sub(re.escape(_BEGIN) + r"\n.*?\n" + re.escape(_END),
                     lambda _: f"{_BEGIN}\n{table}\n{_END}", text, count=1, flags=re.S)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in update_key_tables(sys.argv[1] if len(sys.argv) > 1 else "."):
        print(f"wrote {path}")
