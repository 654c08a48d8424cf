"""The real Redis server: loopback config, set/get, and data that survives restarts and crashes."""

from __future__ import annotations

import pytest

from hfrisk.stack.process import ServiceNotInstalled
from hfrisk.stack.redis_server import RedisServer

from tests.integration.service_required import service_unavailable

pytestmark = pytest.mark.integration


@pytest.fixture
def make_redis(tmp_path):
    """Own, short-lived servers for the crash tests (Redis starts in milliseconds)."""
    servers = []

    def make(**options) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", **options)
        servers.append(server)
        try:
            return server.start()
        except ServiceNotInstalled as exc:
            service_unavailable(f"redis-server ({exc})")

    yield make
    for server in servers:
        server.stop(kill=True)


def test_set_get_on_a_loopback_server_with_aof(redis_server):
    with redis_server.client(decode_responses=True) as client:
        client.set("hfrisk:test:greeting", "hello", ex=60)
        assert client.get("hfrisk:test:greeting") == "hello"
        config = client.config_get("*")
    assert config["bind"] == "127.0.0.1"
    assert config["protected-mode"] == "yes"
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["dir"] == str(redis_server.data_dir)
    # Compacted from 1 GB on, not Redis's 64 MB: checkpoints rewrite every patient's buffer.
    assert config["auto-aof-rewrite-min-size"] == str(1024 * 2**20)


def test_aof_compaction_threshold_comes_from_the_settings(monkeypatch, make_redis):
    from hfrisk.core.config import get_settings

    monkeypatch.setenv("HFRISK_REDIS__AOF_REWRITE_MIN_SIZE_MB", "256")
    get_settings.cache_clear()
    try:
        server = make_redis(persistence="aof")
    finally:
        get_settings.cache_clear()
    with server.client(decode_responses=True) as client:
        assert client.config_get("auto-aof-rewrite-min-size")["auto-aof-rewrite-min-size"] == str(256 * 2**20)


def test_restart_keeps_data(redis_server):
    with redis_server.client() as client:
        client.hset("hfrisk:test:patient", mapping={"risk": "1.25", "state": "flagged"})
    url = redis_server.url

    redis_server.restart()

    assert redis_server.url == url
    with redis_server.client(decode_responses=True) as client:
        assert client.hgetall("hfrisk:test:patient") == {"risk": "1.25", "state": "flagged"}


def test_aof_keeps_data_through_a_crash_and_none_does_not(make_redis):
    durable = make_redis(persistence="aof")
    volatile = make_redis(persistence="none")
    for server in (durable, volatile):
        with server.client() as client:
            client.rpush("hfrisk:test:trend", 0.5, 0.75, 1.5)
        server.restart(kill=True)  # SIGKILL: no shutdown save

    with durable.client() as client:
        assert client.lrange("hfrisk:test:trend", 0, -1) == [b"0.5", b"0.75", b"1.5"]
    with volatile.client() as client:
        assert client.exists("hfrisk:test:trend") == 0


def test_unknown_persistence_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="persistence"):
        RedisServer(tmp_path, persistence="sometimes")
