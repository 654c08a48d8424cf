"""Server processes owned by hfrisk: started on loopback, waited for, stopped cleanly.

:class:`ManagedProcess` is one child process (its log file, readiness probe, process-group stop);
:func:`wait_until` is the one polling loop every wait of the stack goes through; :func:`free_port`
and :func:`port_open` are the port plumbing. The launchers build on these (:mod:`hfrisk.stack.launcher`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from hfrisk.core import retries
from hfrisk.core.logs import get_logger

__all__ = [
    "LOOPBACK",
    "ManagedProcess",
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
    """:func:`hfrisk.core.retries.wait_until` raising :class:`ServiceTimeout`; ``what`` (or what it
    returns, asked only on timeout) is the error message."""
    return retries.wait_until(check, timeout_s, interval_s=interval_s, error=ServiceTimeout,
                              what=(lambda _last: what()) if callable(what) else what)


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
