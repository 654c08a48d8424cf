"""The real Prometheus server: it scrapes a metrics endpoint added at run time and answers PromQL."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from hfrisk.stack.process import ServiceError, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def metrics_endpoint():
    """A prometheus_client HTTP server on loopback with its own registry."""
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield registry, f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_scrapes_a_target_added_at_run_time(prometheus_server, metrics_endpoint):
    registry, host_port = metrics_endpoint
    Gauge("hfrisk_launcher_test_risk", "A test gauge", registry=registry).set(1.75)
    Counter("hfrisk_launcher_test_windows", "A test counter", registry=registry).inc(12)

    prometheus_server.add_targets("launcher-test", [host_port])
    try:
        result = prometheus_server.wait_for('hfrisk_launcher_test_risk{job="launcher-test"}', timeout_s=30)
        assert float(result[0]["value"][1]) == 1.75
        assert result[0]["metric"]["instance"] == host_port

        [total] = prometheus_server.query('hfrisk_launcher_test_windows_total{job="launcher-test"}')
        assert float(total["value"][1]) == 12
        assert prometheus_server.target_health() == {f"http://{host_port}/metrics": "up"}
    finally:
        prometheus_server.remove_job("launcher-test")
    assert prometheus_server.target_health() == {}


def test_bad_promql_raises_with_prometheus_reason(prometheus_server):
    with pytest.raises(ServiceError, match="bad_data"):
        prometheus_server.query("sum(")
