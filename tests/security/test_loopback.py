"""Every launcher binds to loopback by default: the listening sockets of the started processes
(and their children), read with psutil, are all on 127.0.0.1. ``*_BIND_ADDRESS`` settings widen it.
"""

from __future__ import annotations

import ipaddress

import psutil
import pytest

from hfrisk.core.config import Settings
from hfrisk.model.contract.card import CARD_FILENAME, default_card, load_card
from hfrisk.serving.model_repository import write_model_repository
from hfrisk.stack.triton_server import TritonServer
from hfrisk.stack.process import ServiceNotInstalled
from hfrisk.stack.prometheus import PrometheusServer
from hfrisk.stack.redis_server import RedisServer
from tests.integration.service_required import service_unavailable

pytestmark = pytest.mark.integration


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every listening TCP socket of ``pid`` and its descendants."""
    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((_ipv4(conn.laddr.ip), conn.laddr.port))
    return found


def _ipv4(ip: str) -> str:
    # The JVM listens on dual-stack sockets: 127.0.0.1 shows as ::ffff:127.0.0.1, still loopback only.
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def assert_loopback_only(what: str, pid: int, expected_ports: set[int]) -> None:
    addresses = listening_addresses(pid)
    assert expected_ports <= {port for _, port in addresses}, f"{what} listens on {addresses}"
    assert {ip for ip, _ in addresses} == {"127.0.0.1"}, f"{what} listens beyond loopback: {addresses}"


def _started(what: str, server):
    try:
        return server.start()
    except ServiceNotInstalled as exc:
        service_unavailable(f"{what} ({exc})")


def test_kafka_listens_on_loopback_only(secure_kafka):
    broker = secure_kafka.server
    assert_loopback_only("kafka", broker.pid, {broker.port, broker.controller_port})


def test_redis_listens_on_loopback_only(tmp_path):
    server = _started("redis-server", RedisServer(tmp_path / "redis", persistence="none"))
    try:
        assert_loopback_only("redis", server.pid, {server.port})
    finally:
        server.stop()


def test_prometheus_listens_on_loopback_only(tmp_path):
    server = _started("prometheus", PrometheusServer(tmp_path / "prometheus"))
    try:
        assert_loopback_only("prometheus", server.pid, {server.port})
    finally:
        server.stop()


def test_triton_listens_on_loopback_only(exported_model_dir, tmp_path):
    card_path = exported_model_dir / CARD_FILENAME
    card = load_card(card_path) if card_path.is_file() else default_card()
    repository = tmp_path / "repository"
    write_model_repository(exported_model_dir / "model.onnx", card, repository, intra_op_threads=1)
    try:
        server = TritonServer.from_settings(fixed_ports=False, model_repository=repository, work_dir=tmp_path / "work",
                                            log_path=tmp_path / "triton.log")
    except ServiceNotInstalled as exc:
        service_unavailable(f"tritonserver ({exc})")
    server.start()
    try:
        assert_loopback_only("triton", server.pid, {server.http_port, server.grpc_port, server.metrics_port})
    finally:
        server.stop()


def test_bind_addresses_are_settings_that_widen_on_request(monkeypatch, tmp_path):
    defaults = Settings()
    assert {defaults.kafka.bind_address, defaults.redis.bind_address, defaults.triton.bind_address,
            defaults.prometheus.bind_address} == {"127.0.0.1"}
    for section in ("KAFKA", "REDIS", "TRITON", "PROMETHEUS"):
        monkeypatch.setenv(f"HFRISK_{section}__BIND_ADDRESS", "0.0.0.0")
    from hfrisk.core.config import get_settings
    from hfrisk.stack.kafka import KafkaBroker

    get_settings.cache_clear()
    try:
        assert "listeners=PLAINTEXT://0.0.0.0:" in KafkaBroker(tmp_path / "k").server_properties()
        assert "bind 0.0.0.0" in RedisServer(tmp_path / "r").config().splitlines()
        prometheus = PrometheusServer(tmp_path / "p")
        assert prometheus.bind_address == "0.0.0.0" and prometheus.url.startswith("http://127.0.0.1:")
        assert Settings().triton.bind_address == "0.0.0.0"
    finally:
        get_settings.cache_clear()
