"""The local stack: real Kafka, Redis, Prometheus and Triton servers on loopback, and ``hfrisk up``/``down``.

Each launcher (:class:`KafkaBroker`, :class:`RedisServer`, :class:`PrometheusServer`,
:class:`TritonServer`) is a :class:`ServerLauncher`: ``start()`` waits until the server takes
requests, ``restart()`` keeps its ports and data, ``with`` stops it. :func:`start_stack` starts them
all with the stream workers; docs/local-stack.md is the guided tour.

Example::

    from hfrisk.stack import RedisServer

    with RedisServer(tmp_path / "redis") as server:
        server.client().ping()

The names below are imported on first use, so ``import hfrisk.stack`` loads no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from hfrisk.core.lazy import lazy_exports

if TYPE_CHECKING:
    from hfrisk.stack.kafka import KafkaBroker, KafkaListenerSecurity
    from hfrisk.stack.local import StackInfo, start_stack, stop_stack
    from hfrisk.stack.launcher import ServerLauncher
    from hfrisk.stack.process import ManagedProcess, ServiceError, ServiceNotInstalled, free_port
    from hfrisk.stack.prometheus import PrometheusServer
    from hfrisk.stack.redis_server import RedisServer, RedisTLS, RedisUser
    from hfrisk.stack.triton_server import TritonServer

# name -> module that defines it
_EXPORTS = {
    "KafkaBroker": "hfrisk.stack.kafka",
    "KafkaListenerSecurity": "hfrisk.stack.kafka",
    "RedisServer": "hfrisk.stack.redis_server",
    "RedisTLS": "hfrisk.stack.redis_server",
    "RedisUser": "hfrisk.stack.redis_server",
    "PrometheusServer": "hfrisk.stack.prometheus",
    "TritonServer": "hfrisk.stack.triton_server",
    "ServerLauncher": "hfrisk.stack.launcher",
    "ManagedProcess": "hfrisk.stack.process",
    "ServiceError": "hfrisk.stack.process",
    "ServiceNotInstalled": "hfrisk.stack.process",
    "free_port": "hfrisk.stack.process",
    "StackInfo": "hfrisk.stack.local",
    "start_stack": "hfrisk.stack.local",
    "stop_stack": "hfrisk.stack.local",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
