"""The local stack without Docker: ``hfrisk up`` starts it, ``hfrisk down`` stops it.

:func:`start_stack` starts Redis, Kafka (with the stream's topics), Triton, the stream workers and
Prometheus on loopback; each outlives ``up`` in its own process group, recorded in ``stack.json``
(and ``stack.env``, the ``HFRISK_*`` variables that reach it) so that :func:`stop_stack` can stop
them all. The whole walk-through: docs/local-stack.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hfrisk.core.config import KafkaSettings, RedisSettings, Settings
from hfrisk.core.logs import get_logger
from hfrisk.stack.process import ManagedProcess, ServiceError, ServiceTimeout, free_port, port_open, wait_until

__all__ = ["StackInfo", "start_stack", "stop_stack", "read_stack", "stack_dir", "start_gateways", "GATEWAYS", "STACK_FILE"]

STACK_FILE = "stack.json"
ENV_FILE = "stack.env"
log = get_logger(__name__)


# Client security settings (docs/security.md). The local stack starts its own loopback servers
# without TLS or logins, so its clients must not pick up a production configuration from the
# environment (they would try SASL against a PLAINTEXT broker and never connect).
_SECURITY_FIELDS = {
    section: [name for name in model.model_fields if name in (
        "security_protocol", "sasl_mechanism", "username", "password", "password_file",
        "ssl", "ssl_cafile", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname",
    )]
    for section, model in (("KAFKA", KafkaSettings), ("REDIS", RedisSettings))
}


def _plain_environ() -> dict[str, str]:
    """``os.environ`` without the client-security variables (see ``_SECURITY_FIELDS``)."""
    dropped = {f"HFRISK_{section}__{name.upper()}" for section, names in _SECURITY_FIELDS.items() for name in names}
    return {k: v for k, v in os.environ.items() if k.upper() not in dropped}


def plain_redis_settings(settings: Settings, url: str) -> RedisSettings:
    """``settings.redis`` for the local stack's own Redis at ``url``: no TLS, no login (a configured
    ``rediss://`` URL would turn TLS back on)."""
    return RedisSettings(**{**settings.redis.model_dump(exclude=set(_SECURITY_FIELDS["REDIS"])), "url": url})


def stack_dir(settings: Settings) -> Path:
    return settings.paths.state_dir / "stack"


@dataclass
class StackInfo:
    """What ``down`` and the live view need to find the running stack."""

    folder: str
    processes: dict[str, int] = field(default_factory=dict)  # name -> process-group id
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def save(self) -> None:
        folder = Path(self.folder)
        (folder / STACK_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")
        (folder / ENV_FILE).write_text("".join(f"export {k}={v}\n" for k, v in sorted(self.env.items())))


def read_stack(settings: Settings) -> StackInfo | None:
    path = stack_dir(settings) / STACK_FILE
    if not path.is_file():
        return None
    return StackInfo(**json.loads(path.read_text()))


def _alive(pgid: int) -> bool:
    # A leader that is our own child (``up --foreground``) stays a zombie, and so "alive" to
    # killpg, until it is reaped.
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stop_group(name: str, pgid: int, timeout_s: float = 20.0) -> None:
    if not _alive(pgid):
        return
    os.killpg(pgid, signal.SIGTERM)
    try:
        wait_until(lambda: not _alive(pgid), timeout_s, interval_s=0.2)
    except ServiceTimeout:
        log.warning("did not stop in time, killing", service=name, pgid=pgid)
        os.killpg(pgid, signal.SIGKILL)
        try:
            wait_until(lambda: not _alive(pgid), 10.0)
        except ServiceTimeout:
            log.warning("still there after SIGKILL", service=name, pgid=pgid)
    log.info("stopped", service=name, pgid=pgid)


def stop_stack(settings: Settings, timeout_s: float = 20.0) -> list[str]:
    """Stop every process group of the recorded stack, newest first; returns their names.

    Each group gets SIGTERM, then SIGKILL after ``timeout_s``."""
    info = read_stack(settings)
    if info is None:
        return []
    stopped = []
    for name, pgid in reversed(list(info.processes.items())):
        _stop_group(name, pgid, timeout_s)
        stopped.append(name)
    (Path(info.folder) / STACK_FILE).unlink(missing_ok=True)
    return stopped


def _python_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hfrisk.cli", *args]


def start_stack(
    settings: Settings,
    *,
    model_repository: Path,
    workers: int = 1,
    fresh: bool = True,
) -> StackInfo:
    """Start Redis, Kafka, Triton, the workers and Prometheus; returns what was started.

    On any failure everything already started is stopped again before the error propagates.
    """
    from hfrisk.stack.triton_server import TritonServer, models_to_load
    from hfrisk.stack.kafka import KafkaBroker
    from hfrisk.stack.prometheus import PrometheusServer
    from hfrisk.stack.redis_server import RedisServer
    from hfrisk.stream.ingest.topics import ensure_topics

    if read_stack(settings) is not None:
        stop_stack(settings)
    folder = stack_dir(settings)
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = StackInfo(folder=str(folder))
    try:
        redis = RedisServer(folder / "redis").start()
        info.processes["redis"] = redis.pid
        info.urls["redis"] = redis.url
        info.save()

        kafka = KafkaBroker(folder / "kafka").start()
        info.processes["kafka"] = kafka.pid
        info.urls["kafka"] = kafka.bootstrap_servers
        info.save()

        triton = TritonServer(
            model_repository, settings.paths.model_name, work_dir=folder / "triton",
            log_path=folder / "triton" / "tritonserver.log", extra_args=models_to_load(settings),
        ).start()
        info.processes["triton"] = triton.pid
        info.urls.update(triton_grpc=triton.grpc_url, triton_metrics=triton.metrics_url)
        info.save()

        info.env = {
            "HFRISK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "HFRISK_REDIS__URL": redis.url,
            "HFRISK_TRITON__GRPC_URL": triton.grpc_url,
            "HFRISK_PATHS__STATE_DIR": str(settings.paths.state_dir),
        }
        kafka_settings = KafkaSettings(**{
            **settings.kafka.model_dump(exclude=set(_SECURITY_FIELDS["KAFKA"])),
            "bootstrap_servers": kafka.bootstrap_servers,
        })
        ensure_topics(kafka_settings)

        metrics_targets = []
        for i in range(workers):
            metrics_port, web_port = free_port(), free_port()
            env = {**_plain_environ(), **info.env, "HFRISK_STREAM__METRICS_PORT": str(metrics_port),
                   "HFRISK_PATHS__MODEL_REPOSITORY": str(model_repository)}  # the worker reads the served card
            worker = ManagedProcess(
                f"worker-{i}",
                _python_command("worker", "--web-port", str(web_port)),
                log_path=folder / "logs" / f"worker-{i}.log",
                env=env,
                ready=lambda port=metrics_port: port_open("127.0.0.1", port),
                ready_timeout_s=120.0,
            ).start()
            info.processes[f"worker-{i}"] = worker.pid
            metrics_targets.append(f"127.0.0.1:{metrics_port}")
            info.save()

        triton_metrics = triton.metrics_url.removeprefix("http://").removesuffix("/metrics")
        # The job names the operations dashboard selects on (hfrisk.dashboards.PROMETHEUS_JOBS, deploy/prometheus.yml).
        prometheus = PrometheusServer(
            folder / "prometheus", {"worker": metrics_targets, "triton": [triton_metrics]}
        ).start()
        info.processes["prometheus"] = prometheus.pid
        info.urls["prometheus"] = prometheus.url
        info.save()
    except BaseException:
        info.save()
        stop_stack(settings)
        raise
    return info


def start_replay(settings: Settings, info: StackInfo, sources: list[Path], *, beds: int, realtime: bool,
                 duration_s: float | None, loop: bool) -> ManagedProcess:
    """The replay producer as one more process of the stack (``down`` stops it too)."""
    args = ["replay", *[str(s) for s in sources], "--beds", str(beds), "--realtime" if realtime else "--fast",
            "--no-create-topics"]
    if duration_s is not None:
        args += ["--duration-s", str(duration_s)]
    if loop:
        args.append("--loop")
    folder = Path(info.folder)
    producer = ManagedProcess(
        "replay", _python_command(*args), log_path=folder / "logs" / "replay.log",
        env={**_plain_environ(), **info.env}, ready=lambda: True,
    ).start()
    info.processes["replay"] = producer.pid
    info.save()
    return producer


# `hfrisk gateway` subcommands `up --gateway` can start, and the URL scheme each serves.
GATEWAYS = {"hl7": "mllp", "fhir": "http"}


def start_gateways(info: StackInfo, kinds: list[str], *, model_repository: Path) -> dict[str, ManagedProcess]:
    """The HL7 (MLLP) and/or FHIR gateways as more processes of the stack, on free loopback ports.

    Their addresses go into ``info.urls`` and their ports into ``stack.env``
    (``HFRISK_GATEWAY__HL7_PORT``, ``HFRISK_GATEWAY__FHIR_PORT``), so ``down`` stops them and
    clients find them. The FHIR gateway reads the served model's card for its RiskAssessments.
    """
    unknown = sorted(set(kinds) - set(GATEWAYS))
    if unknown:
        raise ValueError(f"unknown gateway(s) {unknown}; choose from {sorted(GATEWAYS)}")
    folder = Path(info.folder)
    started = {}
    for kind in dict.fromkeys(kinds):
        port = free_port()
        env = {**_plain_environ(), **info.env, "HFRISK_PATHS__MODEL_REPOSITORY": str(model_repository)}
        process = ManagedProcess(
            f"gateway-{kind}",
            _python_command("gateway", kind, "--host", "127.0.0.1", "--port", str(port), "--no-create-topics"),
            log_path=folder / "logs" / f"gateway-{kind}.log",
            env=env,
            ready=lambda port=port: port_open("127.0.0.1", port),
            ready_timeout_s=60.0,
        ).start()
        info.processes[f"gateway-{kind}"] = process.pid
        info.urls[f"gateway_{kind}"] = f"{GATEWAYS[kind]}://127.0.0.1:{port}"
        info.env[f"HFRISK_GATEWAY__{kind.upper()}_PORT"] = str(port)
        info.save()
        started[kind] = process
    return started


def require_model(model_repository: Path, model_name: str) -> None:
    from hfrisk.serving.scorers import find_model_version

    try:
        find_model_version(model_repository, model_name)
    except FileNotFoundError as err:
        raise ServiceError(
            f"{err}: the stack serves the model in {model_repository}. Export one with "
            "`hfrisk export` (see README: Model)."
        ) from err
