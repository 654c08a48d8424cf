"""What a test does when a real server cannot be started: skip locally, fail in CI.

CI sets CI=true; there a missing Kafka/Redis/Triton/Prometheus is a broken install, never a
reason to pass quietly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from hfrisk.stack.launcher import ServerLauncher
from hfrisk.stack.process import ServiceNotInstalled

Server = TypeVar("Server", bound=ServerLauncher)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(what: str) -> None:
    """Fail (CI) or skip (a developer's machine) because ``what`` cannot be started."""
    if in_ci():
        pytest.fail(f"{what} is required in CI but could not be started", pytrace=False)
    pytest.skip(f"{what} not available on this machine")


def serve(what: str, make: Callable[[], Server]) -> Iterator[Server]:
    """A fixture body: ``make()`` started, yielded, stopped; not installed: :func:`service_unavailable`."""
    try:
        server = make()
        server.start()
    except ServiceNotInstalled as exc:
        service_unavailable(f"{what} ({exc})")
    try:
        yield server
    finally:
        server.stop()
