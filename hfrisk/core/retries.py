"""Retrying with exponential backoff, on tenacity: the one retry mechanism of hfrisk.

:func:`retrying` (async, exponential backoff): :class:`~hfrisk.serving.client.RiskClient` retries a
Triton request a few times (with jitter) before giving up, and the stream worker holds a batch and
retries for as long as it takes while Triton, Redis or Kafka is unreachable (``attempts=None``).
:func:`wait_until` (sync, fixed interval): every wait for a server, a port or a Kafka topic leader.

>>> import asyncio
>>> calls = []
>>> async def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("down")
...     return "up"
>>> async def no_wait(_s): pass
>>> asyncio.run(retrying(retry_on=ConnectionError, backoff=Backoff(0.1, 1.0), sleep=no_wait)(flaky))
'up'
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_fixed,
)

__all__ = ["Backoff", "retrying", "wait_until"]

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Waits of ``first_s``, doubling, capped at ``max_s``; with ``jitter`` each wait is scaled by
    a random factor in [0.5, 1), so that clients retrying together spread out. It is a tenacity
    wait strategy (callable on the retry state)."""

    first_s: float = 0.2
    max_s: float = 10.0
    jitter: bool = False

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure (0-based)."""
        delay = min(self.max_s, self.first_s * 2 ** min(attempt, 30))
        return delay * (0.5 + random.random() / 2) if self.jitter else delay

    def __call__(self, retry_state: RetryCallState) -> float:
        return self.delay(retry_state.attempt_number - 1)


def retrying(
    *,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
    backoff: Backoff,
    attempts: int | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncRetrying:
    """A tenacity policy; ``await retrying(...)(call)`` awaits ``call()`` until it succeeds
    (``call`` must be an ``async def``: tenacity runs anything else as a plain function).

    ``retry_on``: exception types, or a predicate on the exception, worth another try; anything
    else is raised at once. ``attempts``: retries after the first try (``None``: no limit); once
    spent, the last error is raised unchanged. ``on_retry(error, failures so far, delay_s)`` is
    called before each wait (for the log).
    """
    if isinstance(retry_on, (type, tuple)):
        retry = retry_if_exception_type(retry_on)
    else:
        retry = retry_if_exception(retry_on)

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None and state.next_action is not None:
            on_retry(state.outcome.exception(), state.attempt_number, state.next_action.sleep)

    return AsyncRetrying(
        retry=retry,
        wait=backoff,
        stop=stop_never if attempts is None else stop_after_attempt(attempts + 1),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


def wait_until(
    check: Callable[[], T],
    timeout_s: float,
    *,
    interval_s: float = 0.1,
    what: str | Callable[[T], str] = "the condition",
    error: type[Exception] = TimeoutError,
) -> T:
    """Call ``check`` every ``interval_s`` until it returns something true and return that; after
    ``timeout_s`` raise ``error`` with ``what`` (a text, or made from the last result). Exceptions
    from ``check`` propagate: a probe that may fail while a server starts catches its own.

    >>> wait_until(lambda: 42, timeout_s=1.0)
    42
    """

    def give_up(state: RetryCallState) -> T:
        raise error(what(state.outcome.result()) if callable(what) else what)

    policy = Retrying(
        retry=retry_if_result(lambda result: not result),
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry_error_callback=give_up,
    )
    return policy(check)
