"""Server processes owned by hfrisk: started on loopback, waited for, stopped cleanly.

:class:`ManagedProcess` is one child process (its log file, readiness probe, process-group stop);
:class:`ServerLauncher` is the life cycle the Kafka, Redis, Prometheus and Triton launchers share;
:func:`wait_until` is the one polling loop every wait of the stack goes through.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from hfrisk.core.logs import get_logger

__all__ = [
    "LOOPBACK",
    "ManagedProcess",
    "ServerLauncher",
    "ServiceError",
    "ServiceNotInstalled",
    "ServiceTimeout",
    "client_host",
    "free_port",
    "port_open",
    "wait_for_port",
    "wait_until",
]

log = get_logger(__name__)

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
# What servers bind to when told to listen on every interface (Redis writes "* -::*").
_EVERY_INTERFACE = ("0.0.0.0", "::", "* -::*")


class ServiceError(RuntimeError):
    """A server did not start, did not become ready, or is not reachable."""


class ServiceNotInstalled(ServiceError):
    """What a server needs (its program, Java, its jars) cannot be had on this machine.

    Tests turn this, and only this, into ``service_unavailable``: a server that is installed but
    fails to start is a real failure.
    """


class ServiceTimeout(ServiceError, TimeoutError):
    """A wait ran out of time (:func:`wait_until`)."""


def wait_until(
    check: Callable[[], T],
    timeout_s: float,
    *,
    interval_s: float = 0.1,
    what: str | Callable[[], str] = "the condition",
) -> T:
    """Call ``check`` until it returns something true and return that, or raise :class:`ServiceTimeout`.

    ``what`` (or what it returns, asked only on timeout) is the error message. Exceptions from
    ``check`` propagate: a probe that may fail while a server starts catches its own.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise ServiceTimeout(what() if callable(what) else what)
        time.sleep(interval_s)


def client_host(bind_address: str, loopback: str = LOOPBACK) -> str:
    """Where a client on this machine connects to a server bound to ``bind_address``: loopback
    when it listens there or on every interface, else the one address it was bound to."""
    return loopback if bind_address == loopback or bind_address in _EVERY_INTERFACE else bind_address


def free_port(host: str = LOOPBACK, *, avoid: Collection[int] = ()) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it), other than those in ``avoid``.

    ``avoid`` holds the ports already handed to the same server: two calls may, rarely, get the same one.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    wait_until(lambda: port_open(host, port), timeout_s, what=f"nothing listening on {host}:{port} after {timeout_s:.0f} s")


class ManagedProcess:
    """One child process with a log file, a readiness probe and a clean stop.

    ``ready`` is called repeatedly until it returns True (exceptions count as not ready).
    The child runs in its own process group so that stopping it also stops anything it spawned
    (Triton's backend stubs, the JVM's children).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 20.0,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.ready = ready
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True) -> ManagedProcess:
        if self.running():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting", service=self.name, argv=" ".join(self.argv[:3]) + " …", log=str(self.log_path))
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Probe until ready; a ServiceError with the log's tail if the process exits or time runs out."""
        try:
            wait_until(self._probe, self.ready_timeout_s, interval_s=0.2)
        except ServiceTimeout:
            self.stop()
            raise ServiceTimeout(
                f"{self.name} not ready after {self.ready_timeout_s:.0f} s; last log lines:\n{self.tail_log()}"
            ) from None
        log.info("ready", service=self.name, pid=self.pid)

    def _probe(self) -> bool:
        if not self.running():
            raise ServiceError(
                f"{self.name} exited with code {self.proc.returncode if self.proc else '?'} "
                f"before it was ready; last log lines:\n{self.tail_log()}"
            )
        try:
            return bool(self.ready())
        except Exception:  # a probe that throws just means "not yet"
            return False

    def stop(self, kill: bool = False) -> None:
        """SIGTERM the process group (SIGKILL with ``kill=True`` or after the stop timeout)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            sig = signal.SIGKILL if kill else signal.SIGTERM
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("did not stop in time, killing", service=self.name, pid=self.pid)
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        log.info("stopped", service=self.name, returncode=self.proc.returncode)

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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
