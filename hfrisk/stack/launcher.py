"""The life cycle every server launcher shares: :class:`ServerLauncher`.

Kafka, Redis, Prometheus and Triton each subclass it and say only what is their own: the command
line and config files, the readiness probe, the addresses (docs/local-stack.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from hfrisk.core.logs import get_logger
from hfrisk.stack.process import LOOPBACK, ManagedProcess, client_host

__all__ = ["ServerLauncher"]

log = get_logger(__name__)


class ServerLauncher:
    """The life cycle every server launcher shares: start and wait until ready, stop, restart on
    the same ports with the same data, use as a context manager, show its log's tail.

    A launcher says only what is its own: :meth:`_command` (writes its config files and returns
    its command line), :meth:`_ready` (its readiness probe) and :meth:`_addresses` (for the log);
    optionally :meth:`_environment`, :attr:`log_name`, :attr:`working_dir` and :attr:`stop_timeout_s`.
    Subclasses set ``data_dir``, ``ready_timeout_s`` and, for the default :attr:`host`, ``bind_address``.
    """

    service: ClassVar[str]  # short name for logs and the process ("kafka", "redis", ...)
    log_name: ClassVar[str] = "server.log"
    stop_timeout_s: float = 20.0

    data_dir: Path
    bind_address: str = LOOPBACK
    ready_timeout_s: float = 60.0
    _process: ManagedProcess | None = None

    # --- what each server says ---------------------------------------------------------------
    def _command(self) -> list[str]:
        """Write what the server reads at start (config, keys) and return its command line."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """True once the server takes requests; exceptions count as not yet."""
        raise NotImplementedError

    def _addresses(self) -> dict[str, Any]:
        """Where clients reach the server, for the "ready" log line."""
        return {}

    def _environment(self) -> Mapping[str, str] | None:
        return None

    @property
    def process_name(self) -> str:
        return f"{self.service}-{getattr(self, 'port', '')}".rstrip("-")

    @property
    def working_dir(self) -> Path:
        return self.data_dir

    # --- shared --------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """Where clients connect: loopback unless the server is bound to one other address."""
        return client_host(self.bind_address, LOOPBACK)

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log_name

    @property
    def pid(self) -> int | None:
        """Process id (and process-group id) of the server, while started."""
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def start(self) -> Self:
        """Start the server and wait until it is ready (a no-op while it runs)."""
        if self.running():
            return self
        argv = self._command()
        self._process = ManagedProcess(
            self.process_name,
            argv,
            log_path=self.log_path,
            ready=self._ready,
            env=self._environment(),
            cwd=self.working_dir,
            ready_timeout_s=self.ready_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
        )
        started = time.monotonic()
        self._process.start()
        log.info(f"{self.service} ready", **self._addresses(), seconds=round(time.monotonic() - started, 2))
        return self

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (the server's clean shutdown; its data stays); ``kill=True`` is a crash."""
        if self._process is not None:
            self._process.stop(kill=kill)

    def restart(self, kill: bool = False) -> Self:
        """Stop and start again on the same ports with the same data."""
        self.stop(kill=kill)
        return self.start()

    def tail_log(self, lines: int = 30) -> str:
        return self._process.tail_log(lines) if self._process else "(not started)"

    def _describe(self) -> str:
        """What ``repr`` shows before the running state."""
        return ", ".join(f"{k}={v}" for k, v in self._addresses().items())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()}, {'running' if self.running() else 'stopped'})"
