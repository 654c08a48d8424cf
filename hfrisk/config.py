"""Typed configuration. Every field has a default and an environment override.

Environment variables use the prefix ``HFRISK_`` and ``__`` between section and field, e.g.
``HFRISK_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092`` or ``HFRISK_STREAM__HOP_S=5``. Secrets are
never defaults: they come from the environment or from files named by ``*_FILE`` settings.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "Settings",
    "get_settings",
    "PathSettings",
    "KafkaSettings",
    "RedisSettings",
    "TritonSettings",
    "PrometheusSettings",
    "StreamSettings",
    "LogSettings",
]


def _default_state_dir() -> Path:
    return Path.home() / ".cache" / "hfrisk"


class PathSettings(BaseModel):
    # Downloaded jars, server data dirs, cached text embeddings, logs of the local stack.
    state_dir: Path = Field(default_factory=_default_state_dir)
    model_repository: Path = Path("triton_models")
    model_name: str = "hfrisk"


class LogSettings(BaseModel):
    level: str = "INFO"
    json_logs: bool = False


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    version: str = "3.9.1"
    heap: str = "512m"
    # Broker-side cap on one record batch. A 10-s 12-lead window is 120 kB as int16 at 500 Hz but
    # 480 kB as float32 at 1000 Hz (DICOM ECGs), more as JSON: Kafka's ~1 MB default leaves too
    # little margin. Producers must raise max_request_size to match.
    max_message_bytes: int = 4 * 1024 * 1024
    ecg_topic: str = "ecg.chunks"
    scores_topic: str = "ecg.scores"
    alerts_topic: str = "ecg.alerts"
    dead_letter_topic: str = "ecg.dead-letter"
    partitions: int = 4
    # Chunks, scores and alerts are a live feed (Redis keeps the trends): a 500 Hz 12-lead bed
    # writes ~1 GB of chunks a day, so a day of replayable history is plenty. Dead letters are
    # kept a month for someone to look at why a device's messages were refused.
    retention_hours: float = 24.0
    dead_letter_retention_hours: float = 30 * 24.0


class RedisSettings(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "hfrisk"
    # "aof" (append-only file, fsync every second), "rdb" (periodic snapshots) or "none".
    persistence: str = "aof"
    appendfsync: str = "everysec"
    # Sink (stream/redis_sink.py, docs/redis-keys.md). Trend: a day of windows at a 5-s hop.
    trend_max_points: int = 17_280
    quality_max_records: int = 2_880
    gaps_max_records: int = 2_880
    alerts_max_len: int = 10_000
    # Per-window idempotency records outlive Kafka's retention, so any redelivery is recognised.
    window_ttl_s: int = 2 * 24 * 3600
    # Per-patient keys expire after a week without a new window (discharged patients).
    patient_ttl_s: int = 7 * 24 * 3600


class TritonSettings(BaseModel):
    grpc_url: str = "127.0.0.1:8001"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    bind_address: str = "127.0.0.1"
    timeout_s: float = 10.0
    retries: int = 3
    max_batch: int = 64
    # None: NVIDIA's container layout (/opt/tritonserver) if present, else the nvidia-pytriton wheel.
    binary: Path | None = None
    # "gpu" selects <model>/configs/gpu.pbtxt (KIND_GPU instances); None the default config.pbtxt.
    model_config_name: str | None = None
    ready_timeout_s: float = 120.0


class PrometheusSettings(BaseModel):
    port: int = 9090
    bind_address: str = "127.0.0.1"
    # Short so that the local stack's dashboards and tests see a new sample within seconds.
    scrape_interval_s: float = 2.0
    retention: str = "2d"


class StreamSettings(BaseModel):
    hop_s: float = 5.0
    risk_threshold: float = 1.0
    clear_threshold: float = 0.8
    min_windows_to_flag: int = 2
    batch_size: int = 32
    batch_timeout_s: float = 0.2
    metrics_port: int = 8003
    # Seconds of later signal a chunk may be overtaken by before it is declared lost (windowing).
    reorder_s: float = 5.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HFRISK_", env_nested_delimiter="__", extra="ignore")

    paths: PathSettings = Field(default_factory=PathSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
