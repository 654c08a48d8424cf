"""The one Redis key schema: the documented tables are rendered from it, and RedisKeys and the
dashboards build their names from it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hfrisk.stream.sinks.keys import (
    KEY_SCHEMA,
    RedisKeys,
    generated_section,
    key_pattern,
    render_key_summary,
    render_key_table,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("relative", "render"), [("docs/redis-keys.md", render_key_table),
                                                  ("README.md", render_key_summary)])
def test_committed_key_tables_are_the_rendered_ones(relative, render):
    section = generated_section((ROOT / relative).read_text(encoding="utf-8"))
    assert section is not None, f"{relative}: generated key table markers missing"
    assert section == render(), f"{relative} is stale: run `python -m hfrisk.stream.sinks.keys`"


def test_every_key_family_has_a_redis_keys_accessor_giving_its_pattern():
    keys = RedisKeys("{prefix}")
    for spec in KEY_SCHEMA:
        accessor = getattr(keys, spec.name)
        if callable(accessor):
            params = list(inspect.signature(accessor).parameters)
            name = accessor(*[f"{{{p}}}" for p in params])
        else:
            name = accessor
        assert name == spec.pattern, spec.name


def test_names_and_patterns():
    keys = RedisKeys("ward7")
    assert keys.window("bed-3", "1700000000123456-17") == "ward7:window:bed-3:1700000000123456-17"
    assert keys.ranking == "ward7:ranking"
    assert keys.per_patient("bed-3") == [f"ward7:{family}:bed-3"
                                        for family in ("latest", "trend", "quality", "gaps", "alert", "patient")]
    assert key_pattern("latest", prefix="${prefix}", patient_id="${patient}") == "${prefix}:latest:${patient}"
    assert len({spec.name for spec in KEY_SCHEMA}) == len({spec.pattern for spec in KEY_SCHEMA}) == len(KEY_SCHEMA)
    assert {spec.type for spec in KEY_SCHEMA} <= {"hash", "zset", "string", "stream"}
