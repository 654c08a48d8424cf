"""NVIDIA Triton Inference Server on loopback for one model repository, started and stopped cleanly.

Runs NVIDIA's container layout (``/opt/tritonserver``) or the ``nvidia-pytriton`` wheel's binary,
for which :func:`assemble_backend_directory` and :func:`server_environment` supply the python
backend this interpreter can run (docs/local-stack.md explains both layouts).

>>> with TritonServer("triton_models", "hfrisk") as server:  # doctest: +SKIP
...     print(server.grpc_url, server.metrics_url)
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hfrisk.core.logs import get_logger
from hfrisk.stack.launcher import ServerLauncher
from hfrisk.stack.process import ServiceError, ServiceNotInstalled, free_port

__all__ = [
    "TritonServer",
    "models_to_load",
    "TritonInstall",
    "find_triton",
    "backend_stub",
    "assemble_backend_directory",
    "server_environment",
    "CONTAINER_ROOT",
]

log = get_logger(__name__)

CONTAINER_ROOT = Path("/opt/tritonserver")


@dataclass(frozen=True)
class TritonInstall:
    """Where a tritonserver binary and its backends are."""

    binary: Path
    # Backends folder to pass as --backend-directory, or None when the binary's default is right.
    backends: Path | None
    # The wheel's python-backend pieces, to be linked into a backend directory of our own.
    wheel_root: Path | None = None

    @property
    def from_wheel(self) -> bool:
        return self.wheel_root is not None


def _wheel_root() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    root = Path(pytriton.__file__).parent / "tritonserver"
    return root if (root / "bin" / "tritonserver").exists() else None


def find_triton(binary: str | Path | None = None) -> TritonInstall:
    """The tritonserver to run: ``binary`` if given, else NVIDIA's container layout, else the pytriton wheel."""
    if binary is not None:
        binary = Path(binary)
        if not binary.exists():
            raise ServiceNotInstalled(f"no tritonserver at {binary}")
        wheel = _wheel_root()
        if wheel is not None and binary.resolve() == (wheel / "bin" / "tritonserver").resolve():
            return TritonInstall(binary, None, wheel)
        return TritonInstall(binary, None)
    container_binary = CONTAINER_ROOT / "bin" / "tritonserver"
    if container_binary.exists():
        return TritonInstall(container_binary, CONTAINER_ROOT / "backends")
    wheel = _wheel_root()
    if wheel is not None:
        return TritonInstall(wheel / "bin" / "tritonserver", None, wheel)
    raise ServiceNotInstalled(
        "no tritonserver found: install nvidia-pytriton (pip) or run inside NVIDIA's Triton container "
        f"({container_binary})"
    )


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def backend_stub(wheel_root: Path) -> Path:
    """The wheel's python-backend stub built for the running Python version."""
    stub = wheel_root / "python_backend_stubs" / _python_version() / "triton_python_backend_stub"
    if not stub.exists():
        raise ServiceNotInstalled(f"the pytriton wheel has no python-backend stub for Python {_python_version()} ({stub})")
    return stub


def assemble_backend_directory(wheel_root: Path, into: Path) -> Path:
    """Link the wheel's python backend and this interpreter's stub into ``into/python``; return ``into``."""
    stub = backend_stub(wheel_root)
    backend = wheel_root / "backends" / "python"
    python_dir = into / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in (backend / "libtriton_python.so", backend / "triton_python_backend_utils.py", stub):
        link = python_dir / source.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return into


def server_environment(install: TritonInstall) -> dict[str, str]:
    """The environment tritonserver runs in: for the wheel, this venv's python first, its libpython first."""
    env = dict(os.environ)
    if not install.from_wheel:
        return env
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")]).rstrip(os.pathsep)
    libs = [sysconfig.get_config_var("LIBDIR"), str(install.wheel_root.parent.parent / "nvidia_pytriton.libs")]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
    return env


def models_to_load(settings=None, model_name: str | None = None) -> list[str]:
    """The ``--load-model`` arguments beyond the base model that the settings' workers need: in
    server mode (``HFRISK_STREAM__PREPROCESS_ON=server``) they send raw windows to ``<model>_raw``."""
    from hfrisk.core.config import get_settings

    settings = settings or get_settings()
    if settings.stream.preprocess_on != "server":
        return []
    from hfrisk.serving.raw_windows import raw_model_name

    return [f"--load-model={raw_model_name(model_name or settings.paths.model_name)}"]


def _has_gpu() -> bool:
    return Path("/dev/nvidia0").exists() or bool(shutil.which("nvidia-smi"))


class TritonServer(ServerLauncher):
    """A ``tritonserver`` process serving ``model_name`` from ``model_repository``.

    Ports default to free ones, chosen at start (pass ``http_port=8000`` … to pin them). The model
    is loaded in explicit control mode, so other folders in the repository (half-written exports,
    other models) cannot stop the server from starting. Ready means: server ready AND
    ``model_name`` ready. ``model_config_name="gpu"`` selects ``<model>/configs/gpu.pbtxt``.
    """

    service = "triton"
    process_name = "tritonserver"

    def __init__(
        self,
        model_repository: str | Path,
        model_name: str = "hfrisk",
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        binary: str | Path | None = None,
        model_config_name: str | None = None,
        work_dir: str | Path | None = None,
        log_path: str | Path | None = None,
        ready_timeout_s: float = 120.0,
        exit_timeout_s: int = 10,
        extra_args: Sequence[str] = (),
    ):
        self.model_repository = Path(model_repository).resolve()
        self.model_name = model_name
        self.bind_address = host
        self._requested_ports = (http_port, grpc_port, metrics_port)
        self.install = find_triton(binary)
        if self.install.from_wheel:
            backend_stub(self.install.wheel_root)  # fail as "not installed" now, not at start()
        self.model_config_name = model_config_name
        # Backend links and the log go here; a temporary folder (made on first use) unless given.
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self._own_work_dir = work_dir is None
        self._log_path = Path(log_path) if log_path is not None else None
        self.ready_timeout_s = ready_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.stop_timeout_s = exit_timeout_s + 10
        self.extra_args = list(extra_args)
        self.http_port = self.grpc_port = self.metrics_port = 0
        self._probe = None  # tritonclient gRPC client used by the readiness check

    @classmethod
    def from_settings(cls, settings=None, *, fixed_ports: bool = True, **overrides) -> "TritonServer":
        """A server as :class:`hfrisk.core.config.Settings` describes it (``HFRISK_TRITON__*``, ``HFRISK_PATHS__*``).

        ``fixed_ports=False`` takes free ports instead of the configured 8000/8001/8002.
        """
        from hfrisk.core.config import get_settings

        settings = settings or get_settings()
        triton = settings.triton
        kwargs = dict(
            model_repository=settings.paths.model_repository,
            model_name=settings.paths.model_name,
            host=triton.bind_address,
            binary=triton.binary,
            model_config_name=triton.model_config_name,
            ready_timeout_s=triton.ready_timeout_s,
            log_path=settings.paths.state_dir / "logs" / "tritonserver.log",
        )
        if fixed_ports:
            kwargs.update(http_port=triton.http_port, grpc_port=triton.grpc_port, metrics_port=triton.metrics_port)
        kwargs["extra_args"] = models_to_load(settings)
        kwargs.update(overrides)
        return cls(**kwargs)

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="hfrisk-triton-"))
        return self._work_dir

    @property
    def working_dir(self) -> Path:
        return self.work_dir

    @property
    def log_path(self) -> Path:
        return self._log_path or self.work_dir / "tritonserver.log"

    # --- addresses ---------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    # --- lifecycle ---------------------------------------------------------------------------
    def argv(self) -> list[str]:
        """The tritonserver command line (ports must have been chosen)."""
        argv = [
            str(self.install.binary),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            f"--load-model={self.model_name}",
            f"--http-address={self.bind_address}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.bind_address}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.bind_address}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            # Without a GPU the GPU metrics only add NVML/DCGM warnings to the log.
            f"--allow-gpu-metrics={'true' if _has_gpu() else 'false'}",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            "--log-verbose=0",
        ]
        backends = self.install.backends
        if self.install.from_wheel:
            backends = assemble_backend_directory(self.install.wheel_root, self.work_dir / "backends")
        if backends is not None:
            argv.append(f"--backend-directory={backends}")
        if self.model_config_name:
            argv.append(f"--model-config-name={self.model_config_name}")
        return argv + self.extra_args

    def _choose_ports(self) -> None:
        http, grpc, metrics = self._requested_ports
        taken = {p for p in self._requested_ports if p}
        self.http_port = http or free_port(self.bind_address, avoid=taken)
        self.grpc_port = grpc or free_port(self.bind_address, avoid=taken | {self.http_port})
        self.metrics_port = metrics or free_port(self.bind_address, avoid=taken | {self.http_port, self.grpc_port})

    def is_ready(self) -> bool:
        """Server ready and the model ready, asked over gRPC."""
        import tritonclient.grpc as grpcclient

        if self._probe is None:
            self._probe = grpcclient.InferenceServerClient(self.grpc_url)
        probe = self._probe
        return bool(probe.is_server_ready(client_timeout=2) and probe.is_model_ready(self.model_name, client_timeout=2))

    def _ready(self) -> bool:
        return self.is_ready()

    def _command(self) -> list[str]:
        if not (self.model_repository / self.model_name).is_dir():
            raise ServiceError(f"no model {self.model_name!r} in {self.model_repository}")
        self._choose_ports()
        return self.argv()

    def _environment(self) -> dict[str, str]:
        return server_environment(self.install)

    def _addresses(self) -> dict[str, str]:
        return {"model": self.model_name, "grpc": self.grpc_url, "http": self.http_url, "metrics": self.metrics_url}

    def start(self) -> "TritonServer":
        try:
            return super().start()
        except ServiceError:
            self._close_probe()
            raise

    def stop(self, kill: bool = False) -> None:
        """Stop the server and its python-backend stubs (they share its process group)."""
        self._close_probe()
        super().stop(kill=kill)

    def restart(self, kill: bool = False) -> "TritonServer":
        """Stop and start again on the same ports (clients keep their address)."""
        self.stop(kill=kill)
        self._requested_ports = (self.http_port, self.grpc_port, self.metrics_port)
        return self.start()

    def cleanup(self) -> None:
        """Stop, and remove the work directory when this object created it."""
        self.stop()
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def _close_probe(self) -> None:
        if self._probe is not None:
            try:
                self._probe.close()
            finally:
                self._probe = None

    def __exit__(self, *exc) -> None:
        self.cleanup()
