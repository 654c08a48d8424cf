"""The sink's own MULTI/EXEC round trip (``redis_sink._execute``, in place of redis-py's
``Pipeline.execute``) against a real Redis: a command refused inside the transaction is raised, a
connection lost while watching makes the window be written again from the start (once), and the
connection goes back to the pool clean either way. The stored keys and values themselves are
checked, DUMP for DUMP, by tests/integration/test_redis_sink.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from hfrisk.stack.redis_server import RedisServer
from hfrisk.stream.sinks import RedisSink
from hfrisk.stream.windowing import window_id
from tests.integration.service_required import serve
from tests.integration.test_redis_sink import POLICY, T0_US, _result

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    # As tests/integration's session fixture: skipped locally, failed in CI, without redis-server.
    yield from serve("redis-server", lambda: RedisServer(Path(tmp_path_factory.mktemp("redis")), persistence="none"))


@pytest.fixture(scope="module")
def client(redis_server):
    with redis_server.client() as client:
        yield client


@pytest.fixture
def sink(client):
    client.flushdb()
    return RedisSink(client, "t", policy=POLICY)


def _in_use(client) -> int:
    return len(client.connection_pool._in_use_connections)


def test_a_command_refused_inside_the_transaction_is_raised_and_the_next_write_works(client, sink):
    client.set(sink.keys.trend("bed-1"), "not a sorted set")  # ZADD to it fails with WRONGTYPE in EXEC
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        sink.write_window_result(_result("bed-1", 0, 0.5))
    assert _in_use(client) == 0
    outcome = sink.write_window_result(_result("bed-2", 0, 0.5))
    assert not outcome.duplicate and sink.read_patient("bed-2").latest["window_id"] == window_id(T0_US, 0)
    assert _in_use(client) == 0


def test_a_connection_lost_while_watching_writes_the_window_again_once(client, sink):
    queue, kills = sink._queue_window, []

    def queue_then_lose_the_connection(pipe, *args):
        if not kills:  # every connection but this call's own: the one holding the WATCH
            kills.append(client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
        return queue(pipe, *args)

    sink._queue_window = queue_then_lose_the_connection
    outcome = sink.write_window_result(_result("bed-1", 0, 1.5))
    assert kills == [1] and not outcome.duplicate
    view = sink.read_patient("bed-1")
    assert [p.window_id for p in view.trend] == [window_id(T0_US, 0)]
    assert sink.write_window_result(_result("bed-1", 0, 1.5)).duplicate
    assert _in_use(client) == 0
