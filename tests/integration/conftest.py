"""Session fixtures: each real server (Kafka, Redis, Prometheus) starts once, on free loopback
ports in a temporary dir, and stops when the session ends.

A server whose program or jars cannot be had (``ServiceNotInstalled``) skips its tests locally
and fails them in CI (``service_unavailable``); a server that is installed but fails to start
is an error either way. Tests may restart a session server (ports and data are kept), but must
leave it running.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hfrisk.stack.kafka import KafkaBroker
from hfrisk.stack.prometheus import PrometheusServer
from hfrisk.stack.redis_server import RedisServer

from tests.integration.service_required import serve


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[KafkaBroker]:
    """A single-node KRaft Kafka (jars from the cache under state_dir); ``.bootstrap_servers``."""
    yield from serve("Kafka broker", lambda: KafkaBroker(tmp_path_factory.mktemp("kafka")))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """Redis with AOF persistence; ``.url``, ``.client()``."""
    yield from serve("redis-server", lambda: RedisServer(tmp_path_factory.mktemp("redis")))


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory) -> Iterator[PrometheusServer]:
    """Prometheus with no targets yet: tests add theirs with ``add_targets`` and remove them."""
    yield from serve("prometheus", lambda: PrometheusServer(tmp_path_factory.mktemp("prometheus")))


from tests.integration.triton_fixture import triton_server  # noqa: E402,F401  (session fixture shared by the stream tests)
