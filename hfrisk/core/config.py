"""Typed configuration. Every field has a default and an environment override.

Environment variables use the prefix ``HFRISK_`` and ``__`` between section and field, e.g.
``HFRISK_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092`` or ``HFRISK_STREAM__HOP_S=5``. Secrets are
never defaults: they come from the environment or from files named by ``*_FILE`` settings.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "Settings",
    "get_settings",
    "PathSettings",
    "KafkaSettings",
    "RedisSettings",
    "TritonSettings",
    "PrometheusSettings",
    "MonitoringSettings",
    "StreamSettings",
    "FlagRule",
    "FrontendSettings",
    "LogSettings",
    "PseudonymSettings",
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
    # How long `hfrisk replay`'s producer holds a chunk for company before sending (Kafka's
    # linger.ms). Every bed's chunk is timed from its acquisition, so this only adds latency; a
    # longer wait sends fewer, larger requests (docs/replay.md, "The producer's linger").
    replay_linger_ms: int = Field(default=20, ge=0)
    # Chunks, scores and alerts are a live feed (Redis keeps the trends): a 500 Hz 12-lead bed
    # writes ~1 GB of chunks a day, so a day of replayable history is plenty. Dead letters are
    # kept a month for someone to look at why a device's messages were refused.
    retention_hours: float = 24.0
    dead_letter_retention_hours: float = 30 * 24.0
    # Client security (docs/security.md). PLAINTEXT suits loopback only; across hosts use SASL_SSL.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str | None = None
    # The password from HFRISK_KAFKA__PASSWORD or, better, a file (a mounted secret) read at use time.
    password: SecretStr | None = None
    password_file: Path | None = None
    ssl_cafile: Path | None = None
    # A client certificate, for brokers that require mutual TLS (ssl.client.auth=required).
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    # Where the local launcher's broker listens; 0.0.0.0 (or a NIC's address) only with SASL_SSL.
    bind_address: str = "127.0.0.1"

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set kafka.password or kafka.password_file, not both")
        if self.security_protocol.startswith("SASL") and not self.username:
            raise ValueError(f"kafka.security_protocol={self.security_protocol} needs kafka.username")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("kafka.ssl_certfile and kafka.ssl_keyfile go together")
        return self


class RedisSettings(BaseModel):
    # rediss://host:port/0 turns TLS on. Credentials never go in the URL (it is logged and shown
    # by `hfrisk up`): use username and password / password_file.
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "hfrisk"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    # TLS: on with a rediss:// URL or ssl=True. ssl_ca_certs is the CA that signed the server's
    # certificate; ssl_certfile/ssl_keyfile a client certificate (tls-auth-clients yes).
    ssl: bool = False
    ssl_ca_certs: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    # Where the local launcher's server listens (hfrisk.stack.redis_server).
    bind_address: str = "127.0.0.1"
    # "aof" (append-only file, fsync every second), "rdb" (periodic snapshots) or "none".
    persistence: str = "aof"
    appendfsync: str = "everysec"
    # Redis compacts the append-only file once it has grown by its size since the last compaction
    # and is at least this big. The workers rewrite every patient's saved buffer (~0.2 MB) at each
    # checkpoint: ~17-20 MB/s at 500 beds with 5-s checkpoints, so at Redis's 64 MB the file would
    # be compacted every few seconds, each time a fork rewriting the whole dataset (seen: 185
    # compactions in 7 min when a bench ran 0.5-s checkpoints). 1 GB: about once a minute at 500
    # beds (9 in 13 min), for ~1-2 GB of disk. docs/stream-worker.md, "Saved buffers".
    aof_rewrite_min_size_mb: int = Field(default=1024, ge=1)
    # Sink (stream/sinks/redis_sink.py, docs/redis-keys.md). Trend: a day of windows at a 5-s hop.
    trend_max_points: int = 17_280
    quality_max_records: int = 2_880
    gaps_max_records: int = 2_880
    alerts_max_len: int = 10_000
    # Per-window idempotency records outlive Kafka's retention, so any redelivery is recognised.
    window_ttl_s: int = 2 * 24 * 3600
    # Per-patient keys expire after a week without a new window (discharged patients).
    patient_ttl_s: int = 7 * 24 * 3600

    @field_validator("url")
    @classmethod
    def _no_credentials_in_url(cls, url: str) -> str:
        if urlsplit(url).password is not None:
            raise ValueError(
                "the Redis URL holds a password; set HFRISK_REDIS__USERNAME and HFRISK_REDIS__PASSWORD "
                "(or HFRISK_REDIS__PASSWORD_FILE) instead, so that it is never logged"
            )
        return url

    @model_validator(mode="after")
    def _check_secrets(self) -> RedisSettings:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set redis.password or redis.password_file, not both")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("redis.ssl_certfile and redis.ssl_keyfile go together")
        return self

    @property
    def tls(self) -> bool:
        return self.ssl or self.url.startswith("rediss://")


class PseudonymSettings(BaseModel):
    """Keyed pseudonyms for patient ids (hfrisk.core.pseudonym): off unless enabled with a key."""

    enabled: bool = False
    key: SecretStr | None = None
    key_file: Path | None = None
    prefix: str = "p-"
    # Hex digits of HMAC-SHA256 kept: 20 (80 bits) make a collision among a hospital's patients
    # practically impossible while keeping Redis keys short.
    hex_digits: int = Field(default=20, ge=16, le=64)

    @model_validator(mode="after")
    def _check_key(self) -> PseudonymSettings:
        if self.key is not None and self.key_file is not None:
            raise ValueError("set pseudonym.key or pseudonym.key_file, not both")
        if self.enabled and self.key is None and self.key_file is None:
            raise ValueError("pseudonym.enabled needs HFRISK_PSEUDONYM__KEY or HFRISK_PSEUDONYM__KEY_FILE")
        return self


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
    # "system": large request tensors (raw windows, model inputs) go through /dev/shm regions that
    # Triton maps, not through gRPC: ~8x less client CPU for raw windows (docs/serving.md "Shared
    # memory"). Only for a Triton on the same host that sees the same /dev/shm.
    shared_memory: Literal["off", "system"] = "off"


class PrometheusSettings(BaseModel):
    port: int = 9090
    bind_address: str = "127.0.0.1"
    # Short so that the local stack's dashboards and tests see a new sample within seconds.
    scrape_interval_s: float = 2.0
    retention: str = "2d"


class MonitoringSettings(BaseModel):
    """Model monitoring per device (docs/monitoring.md): quality-gate refusals and score drift
    against the model card's reference cohort, as worker metrics and Prometheus rules."""

    # Device ids that always get a label of their own (e.g. a hospital's named feeds).
    devices: list[str] = Field(default_factory=list)
    # Further devices a worker labels by their own id, first come first served; every later
    # one is counted under "other". Bounds each per-device metric to (devices + this + 2)
    # label values per worker (10 score bins or 10 quality reasons each).
    max_devices: int = Field(default=50, ge=0)
    # Bins of the drift statistic: the reference cohort's quantiles at 100/n_bins steps
    # (deciles), merged where a tie spans several.
    drift_bins: int = Field(default=10, ge=2, le=100)
    # The sliding window of the drift statistic and of the alert's refusal share (PromQL durations).
    drift_window: str = "1h"
    refusal_window: str = "15m"
    # Alert when a device's PSI over drift_window exceeds this (0.25: the usual "major shift")
    # on at least drift_min_windows scored windows ...
    drift_alert_psi: float = Field(default=0.25, gt=0)
    drift_min_windows: int = Field(default=200, ge=1)
    # ... or when the quality gate refuses more than this share of a device's windows over
    # refusal_window, on at least refusal_min_windows windows.
    refusal_alert_share: float = Field(default=0.5, gt=0, le=1)
    refusal_min_windows: int = Field(default=30, ge=1)
    # How long a condition must hold before the alert fires (PromQL duration).
    alert_for: str = "10m"


FlagRule = Literal["absolute_risk", "percentile", "log_risk"]


def check_idle_patient_s(idle_patient_s: float, checkpoint_interval_s: float) -> None:
    """``stream.idle_patient_s`` must be 0 (never) or longer than a checkpoint interval: a buffer
    leaves memory only once saved. Checked on the settings and on a worker's command-line options."""
    if 0 < idle_patient_s <= checkpoint_interval_s:
        raise ValueError(f"idle_patient_s ({idle_patient_s:g}) must be 0 or longer than checkpoint_interval_s "
                         f"({checkpoint_interval_s:g}): a buffer leaves only once saved")


class StreamSettings(BaseModel):
    hop_s: float = 5.0
    # What raises a flag (docs/score-scale.md): the absolute risk by the model card's horizon, the
    # percentile in the card's reference cohort, or the raw log-risk. A card without a risk scale
    # can only flag on log-risk (the worker says so in its log). Flags clear below the clear_*
    # value, after min_windows_to_flag windows either way (hysteresis). Screening flags a
    # recording on the same rule, applied to its median window.
    flag_on: FlagRule = "absolute_risk"
    # 10 % by the card's horizon (5 years for the bundled model): the 5-year heart-failure
    # incidence of a general population aged 45-65 is of the order of 1-3 %.
    flag_absolute_risk: float = Field(default=0.10, gt=0, lt=1)
    clear_absolute_risk: float = Field(default=0.08, gt=0, lt=1)
    # "Top 5 %" of the reference cohort.
    flag_percentile: float = Field(default=95.0, ge=0, le=100)
    clear_percentile: float = Field(default=90.0, ge=0, le=100)
    # The log-risk rule's thresholds.
    risk_threshold: float = 1.0
    clear_threshold: float = 0.8
    min_windows_to_flag: int = 2
    # A micro-batch goes to scoring when it holds batch_size chunks or its oldest chunk has waited
    # batch_timeout_s (the linger; stream/worker/batching.py). 32 keeps a burst (every bed's window
    # due in the same second) in real time on one worker; 128 drains a backlog ~30 % faster and is
    # what two workers use for 1,000 beds (docs/bench/stream-tuning.md, "2026-12-06, batches that
    # gather"). The linger was Faust's wait after every batch (0.2 s) until 2026-12-06.
    batch_size: int = Field(default=32, ge=1)
    batch_timeout_s: float = Field(default=0.05, ge=0)
    metrics_port: int = 8003

    @model_validator(mode="after")
    def _idle_after_a_checkpoint(self) -> "StreamSettings":
        check_idle_patient_s(self.idle_patient_s, self.checkpoint_interval_s)
        return self

    @model_validator(mode="after")
    def _clear_below_flag(self) -> "StreamSettings":
        for flag, clear in (("flag_absolute_risk", "clear_absolute_risk"), ("flag_percentile", "clear_percentile"),
                            ("risk_threshold", "clear_threshold")):
            if getattr(self, clear) > getattr(self, flag):
                raise ValueError(f"{clear} ({getattr(self, clear)}) is above {flag} ({getattr(self, flag)})")
        return self

    def flag_thresholds(self, risk_scale=None) -> tuple[float, float]:
        """``(raise, clear)`` log-risk thresholds of :attr:`flag_on` under a model card's
        ``risk_scale`` (:class:`hfrisk.model.contract.risk_scale.RiskScale`; both scales are
        monotone in log-risk, so a flag on either is a log-risk threshold). Without a scale only
        the log-risk rule exists, and its thresholds are returned."""
        if self.flag_on == "log_risk" or risk_scale is None:
            return self.risk_threshold, self.clear_threshold
        if self.flag_on == "percentile":
            values = (self.flag_percentile, self.clear_percentile)
        else:
            values = (self.flag_absolute_risk, self.clear_absolute_risk)
        return tuple(risk_scale.log_risk_threshold(self.flag_on, v) for v in values)

    # Seconds of later signal a chunk may be overtaken by before it is declared lost (windowing).
    reorder_s: float = 5.0
    # -- one `hfrisk worker` process (its command-line options override these) --
    # Faust app id = the Kafka consumer group the workers share.
    app_id: str = "hfrisk-worker"
    # Port of Faust's status web server (bound to 127.0.0.1).
    web_port: int = Field(default=6066, ge=0, le=65535)
    # Address the Prometheus endpoint binds to.
    metrics_host: str = "127.0.0.1"
    # Processes running the preprocessing (0: a thread of the worker itself).
    prep_workers: int = Field(default=1, ge=0)
    # MB of shared memory through which the worker hands windows to those processes and gets their
    # model inputs back (0: pickled through a pipe: ~1.1 ms more CPU a window alone, ~0.2-0.4 ms at
    # load; docs/bench/pool-handoff.md, docs/bench/pool-results.md, docs/bench/ab/stream-ab.md). A
    # batch's parts hold a block each (3 MiB for 8 windows and their results, 10 MiB for 32) until
    # prepared and copied out; a part that finds the budget in use goes pickled. None: room for a
    # batch of batch_size windows of 500-Hz signal in parts of part_windows, at least 32 MB (a
    # fixed 32 MB sent 4 of a 200-window backlog batch's 7 parts pickled, ~400 µs more CPU a
    # window; docs/bench/pool-budget.md, docs/bench/stream-tuning.md, "2026-12-06 evening"). It
    # lives in /dev/shm, which Docker caps at 64 MB unless the service sets shm_size.
    prep_shared_mb: int | None = Field(default=None, ge=0)
    # Windows per part: a batch's windows go to the pool in parts of at most this many, and each
    # prepared part to Triton in one request while the pool works on the next. 8 keeps a burst's
    # latency: 32 made a burst's p95 ~0.4 s worse (a batch of 32 windows in one part, no overlap).
    # Set 32 with a large batch_size (256) to drain a backlog or an archive: ~9 % less CPU a window,
    # and faster in five of five alternating rounds (docs/bench/stream-tuning.md, "Parts larger
    # than 8, again").
    part_windows: int = Field(default=8, ge=1)
    # Model card JSON; None: the one the Triton repository serves beside the model.
    card_path: Path | None = None
    # With no card served, use the built-in default card instead of stopping (plumbing checks only).
    builtin_card: bool = False
    # Seconds between saving patient buffers to Redis and committing offsets. Each checkpoint
    # writes every changed buffer (~0.2 MB a patient): 2 s saturated Redis at 512 beds
    # (docs/bench/stream-tuning.md, "Checkpoints"); a longer one redelivers more after a crash.
    checkpoint_interval_s: float = Field(default=5.0, gt=0)
    # Seconds without a chunk after which a patient's buffer leaves the worker's memory, at the
    # first checkpoint that finds it saved; its next chunk restores it from Redis, as after a
    # restart. Without it every patient a worker ever saw stayed in memory (~0.1-0.2 MB each), so
    # a ward's turnover grew the worker without bound. 0: never (longer than a checkpoint).
    idle_patient_s: float = Field(default=600.0, ge=0)
    # MB of freed memory the worker's allocator keeps for reuse instead of handing it back to the
    # kernel: above one checkpoint's serialised buffers, so the next one does not fault them in
    # again; its preprocessing processes keep as much of what each part frees (~0.6 ms of their CPU
    # a window, docs/bench/pool-allocator.md). hfrisk/core/allocator.py. 0: the C library's defaults.
    keep_freed_mb: int = Field(default=256, ge=0)
    # Chunk messages the worker's agent may hold before Faust pauses fetching (it resumes at 40 %);
    # None: max(4,096, 8 batches). Faust sleeps a whole second whenever every partition is paused,
    # so a worker that empties the buffer faster than that idles (stream/worker/app.py).
    buffer_events: int | None = Field(default=None, ge=64)
    # Faust's fetch loop hands each message to its queue without making four tasks for it
    # (stream/worker/eager_delivery.py; +45 % for the no-op worker, docs/bench/stream-tuning.md).
    # Process-wide once on. False: Faust exactly as it comes (a switch in case an upgrade disagrees).
    eager_delivery: bool = True
    # Freeze the objects that exist once the worker has started, so full garbage collections stop
    # walking them, and collect the young generation every gc_young_threshold allocations instead
    # of Python's 700: the collector took ~8 % of a worker's CPU draining a backlog, ~1.3 % so
    # (hfrisk/core/collector.py, docs/bench/stream-tuning.md "2026-12-06 night"). gc_freeze False:
    # nothing frozen; gc_young_threshold None: Python's 700. Both off: the collector as it comes.
    gc_freeze: bool = True
    gc_young_threshold: int | None = Field(default=10_000, ge=100)
    # Seconds before a vanished worker's partitions move to the others; None: Faust's 60 s.
    session_timeout_s: float | None = Field(default=None, gt=0)
    # Skip Triton: log-risk 0 for every window (benchmarks only).
    noop_model: bool = False
    # Skip preprocessing: no process pool, every window fit to score with an all-zero model input of
    # the card's shape (benchmarks only: with noop_model, what is left is the worker's own plumbing).
    noop_prep: bool = False
    # Where the front end runs: "worker" (a process pool here, then model inputs to Triton; the
    # default, right for CPU hosts) or "server" (raw windows to <model>_raw, which preprocesses on
    # the model's device: a GPU host; docs/serving.md). Same scores and refusals either way.
    preprocess_on: Literal["worker", "server"] = "worker"
    # Create missing stream topics before consuming.
    create_topics: bool = True
    # Wait this long for Triton before consuming (0: start at once; batches wait anyway).
    wait_for_triton_s: float = Field(default=0.0, ge=0)
    # Longest wait between retries while Triton, Redis or Kafka is unreachable: a batch resumes at
    # most this long after the server is back (a 10-s cap was most of the recovery time after a
    # 10-s outage: docs/reliability.md).
    retry_max_s: float = Field(default=2.0, ge=0.1)


class FrontendSettings(BaseModel):
    """Where the signal front end computes (docs/frontend.md)."""

    # numpy on the CPU; torch or cupy run the same array-API code on a GPU.
    array_backend: Literal["numpy", "torch", "cupy"] = "numpy"
    # torch's device ("cuda", "cuda:1"); CuPy uses its current device.
    device: str | None = None
    # Windows of one rate and length prepared together: on a CPU core the cost per window falls
    # with the batch up to 16-32 and rises again past 64, when a batch outgrows the caches
    # (docs/bench/preprocessing.md); a GPU wants thousands.
    batch_size: int = Field(default=32, ge=1)


# Where a network may run in process: the CPU, or a CUDA GPU (by number; ``cuda`` is GPU 0).
DEVICE = re.compile(r"cpu|cuda(?::(\d+))?")


class ScreeningSettings(BaseModel):
    """``hfrisk screen``."""

    # MB of freed memory each screening process keeps for reuse: a pool process frees eight
    # recordings' arrays before reading the next eight, and with the C library's defaults faults
    # them in again every time (hfrisk/core/allocator.py, docs/bench/screening-allocator.md).
    # 0: the C library's defaults.
    keep_freed_mb: int = Field(default=256, ge=0)
    # Where `--in-process` runs the network: the CPU, or a GPU through ONNX Runtime's CUDA provider
    # (onnxruntime-gpu). The front end's device is FrontendSettings'.
    device: str = Field(default="cpu", pattern=rf"^(?:{DEVICE.pattern})$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HFRISK_", env_nested_delimiter="__", extra="ignore")

    paths: PathSettings = Field(default_factory=PathSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    pseudonym: PseudonymSettings = Field(default_factory=PseudonymSettings)
    frontend: FrontendSettings = Field(default_factory=FrontendSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    screening: ScreeningSettings = Field(default_factory=ScreeningSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
