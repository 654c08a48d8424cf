"""Run dashboard panel queries the way Grafana does, against any live Redis and Prometheus.

Redis panels: the command line the Redis data source plugin sends (from
``hfrisk.dashboards.panel_queries``), executed over RESP2 with no client-side reshaping, which is
what the plugin (radix, RESP2) parses. Prometheus panels: each target's PromQL as an instant query.
Shared by ``test_dashboards_live.py`` (servers fed by the real sink and metric classes) and
``test_local_stack.py`` (the whole ``hfrisk up`` stack).
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import redis

from hfrisk import dashboards as dash

__all__ = ["raw_redis", "run_redis", "redis_panel_results", "prometheus_query", "prometheus_panel_results", "titled"]

PromQuery = Callable[[str], list[dict]]


@contextmanager
def raw_redis(url: str) -> Iterator[redis.Redis]:
    """A client that returns RESP2 replies as they come off the wire (flat lists of bytes)."""
    client = redis.Redis.from_url(url, protocol=2)
    client.response_callbacks.clear()
    try:
        yield client
    finally:
        client.close()


def run_redis(client: redis.Redis, command_line: str):
    return client.execute_command(*dash.split_command(command_line))


def redis_panel_results(client: redis.Redis, board: Mapping, values: Mapping[str, str]) -> dict[str, object]:
    """``title -> reply`` of every Redis panel and variable; asserts each is filled in and non-empty."""
    queries = dash.panel_queries(board, values)
    assert {q.kind for q in queries} == {"redis"}
    results = {}
    for q in queries:
        assert "$" not in q.query, f"{q.title}: unsubstituted variable in {q.query}"
        result = run_redis(client, q.query)
        assert result not in (None, [], {}, b""), f"{q.title}: empty result for {q.query}"
        results[q.title] = result
    return results


def prometheus_query(base_url: str, promql: str) -> list[dict]:
    """An instant query against the Prometheus at ``base_url``; returns ``data.result``."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    assert body.get("status") == "success", f"{promql}: {body}"
    return body["data"]["result"]


def _has_number(result: list[dict]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)


def prometheus_panel_results(query: PromQuery, board: Mapping, values: Mapping[str, str], *,
                             timeout_s: float = 0.0) -> list[tuple[dash.PanelQuery, list[dict]]]:
    """Every Prometheus target of ``board`` with its result; asserts each has a series with a finite
    value. Targets that have none yet are retried for up to ``timeout_s`` (rates need two scrapes)."""
    queries = dash.panel_queries(board, values)
    assert queries and {q.kind for q in queries} == {"prometheus"}
    deadline = time.monotonic() + timeout_s
    results: dict[int, list[dict]] = {}
    while True:
        for i, q in enumerate(queries):
            if i not in results or not _has_number(results[i]):
                results[i] = query(q.query)
        missing = [queries[i] for i, r in results.items() if not _has_number(r)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not missing, "no data: " + "; ".join(f"{q.title}: {q.query}" for q in missing)
    return [(q, results[i]) for i, q in enumerate(queries)]


def titled(results: Sequence[tuple[dash.PanelQuery, list[dict]]], title: str) -> list[list[dict]]:
    """The results of the targets of the panel called ``title``."""
    return [r for q, r in results if q.title == title]
