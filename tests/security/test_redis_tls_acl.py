"""Redis over TLS with ACL users: the RedisSink writes as the worker user through TLS; wrong
credentials, plain connections and keys outside the user's prefix are refused."""

from __future__ import annotations

import pytest
import redis

from hfrisk.core.security import redis_client
from hfrisk.stack.redis_server import RedisServer, RedisUser
from hfrisk.stream.sinks.redis_sink import RedisSink, WindowResult

from tests.security.conftest import REDIS_PREFIX, redis_client_settings

pytestmark = pytest.mark.integration


def _result(patient_id: str, window: int, log_risk: float) -> WindowResult:
    start_us = 1_700_000_000_000_000 + window * 5_000_000
    return WindowResult(patient_id=patient_id, window_id=f"w{window:04d}", window_start_us=start_us,
                        window_end_us=start_us + 10_000_000, fit_to_score=True, quality_score=0.9,
                        log_risk=log_risk, heart_rate_bpm=72.0, model_version="1")


def test_the_sink_writes_through_tls_as_the_worker_user(secure_redis, pki):
    settings = redis_client_settings(secure_redis, pki)
    assert settings.url.startswith("rediss://")
    client = redis_client(settings)
    try:
        sink = RedisSink(client, REDIS_PREFIX)
        for i, risk in enumerate((0.5, 1.5, 2.5)):
            assert not sink.write_window_result(_result("p-secure-1", i, risk)).duplicate
        view = sink.read_patient("p-secure-1")
        assert [point.log_risk for point in view.trend] == [0.5, 1.5, 2.5]
        assert sink.ranking(5) == [("p-secure-1", 2.5)]
        with secure_redis.server.client() as admin:
            assert admin.connection_pool.connection_class.__name__ == "SSLConnection"
            assert "hfrisk-worker" in {c["user"] for c in admin.client_list()}
    finally:
        client.close()
    with secure_redis.server.client() as admin:
        keys = [k.decode() for k in admin.scan_iter(match="*secure-1*")]
        assert keys and all(k.startswith(f"{REDIS_PREFIX}:") for k in keys)


def test_a_user_cannot_touch_keys_outside_its_prefix_or_run_dangerous_commands(secure_redis, pki):
    client = redis_client(redis_client_settings(secure_redis, pki))
    try:
        client.set(f"{REDIS_PREFIX}:test:mine", "1")
        for command in (lambda: client.set("other:key", "1"), lambda: client.get("other:key"),
                        lambda: client.flushall(), lambda: client.keys("*"), lambda: client.config_get("*"),
                        lambda: client.acl_list()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                command()
    finally:
        client.close()


def test_wrong_credentials_the_default_user_and_plain_connections_are_refused(secure_redis, pki):
    server: RedisServer = secure_redis.server
    wrong = redis_client(redis_client_settings(secure_redis, pki, password_file=None, password="guess"))
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    nobody = redis_client(redis_client_settings(secure_redis, pki, username=None, password_file=None))
    with pytest.raises(redis.exceptions.AuthenticationError):  # the default user is off
        nobody.ping()
    plain = redis.Redis(host=server.host, port=server.port, socket_timeout=3,
                        username="hfrisk-worker", password=secure_redis.password)
    with pytest.raises(redis.exceptions.ConnectionError):  # no plain port: TLS only
        plain.ping()
    untrusting = redis_client(redis_client_settings(secure_redis, pki, ssl_ca_certs=pki.other_cafile))
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        untrusting.ping()
    for client in (wrong, nobody, plain, untrusting):
        client.close()


def test_the_config_holds_password_hashes_only(secure_redis):
    server: RedisServer = secure_redis.server
    config = server.config_path.read_text()
    assert "user default off" in config and "~hfrisk:*" in config
    assert secure_redis.password not in config
    assert secure_redis.password not in repr(RedisUser("hfrisk-worker", secure_redis.password))
    assert "port 0" in config.splitlines() and f"tls-port {server.port}" in config
