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
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_fixed,
)

__all__ = ["Backoff", "RetryPolicy", "retrying", "wait_until"]

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
) -> RetryPolicy:
    """A retry policy; ``await retrying(...)(call)`` awaits ``call()`` until it succeeds
    (``call`` must be an ``async def``).

    ``retry_on``: exception types, or a predicate on the exception, worth another try; anything
    else is raised at once. ``attempts``: retries after the first try (``None``: no limit); once
    spent, the last error is raised unchanged. ``on_retry(error, failures so far, delay_s)`` is
    called before each wait (for the log).
    """
    return RetryPolicy(retry_on=retry_on, backoff=backoff, attempts=attempts, on_retry=on_retry, sleep=sleep)


class RetryPolicy:
    """What :func:`retrying` returns: the first try is awaited directly, and tenacity takes over
    only once it has failed. tenacity's bookkeeping costs ~25 µs a call even when nothing fails, and
    the stream worker makes a call like this for every Triton request and every batch's Redis write
    and publishing (docs/bench/stream-tuning.md, "tenacity on the first try"); the waits, the
    attempt numbers given to ``on_retry`` and the errors raised are tenacity's either way."""

    def __init__(self, *, retry_on, backoff: Backoff, attempts: int | None, on_retry, sleep) -> None:
        if isinstance(retry_on, (type, tuple)):
            types = retry_on
            self._retryable: Callable[[BaseException], bool] = lambda exc: isinstance(exc, types)
        else:
            self._retryable = retry_on
        self.backoff, self.attempts, self.on_retry, self.sleep = backoff, attempts, on_retry, sleep

    async def __call__(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except BaseException as exc:
            if self.attempts == 0 or not self._retryable(exc):
                raise
            failure = exc
        delay = self.backoff.delay(0)
        if self.on_retry is not None:
            self.on_retry(failure, 1, delay)
        del failure  # not kept alive (with its traceback) through the retries
        await self.sleep(delay)
        return await self._after_first_failure()(call)

    def _after_first_failure(self) -> AsyncRetrying:
        """tenacity's policy for the tries after the first, numbered from the second."""
        on_retry, backoff = self.on_retry, self.backoff

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None and state.next_action is not None:
                on_retry(state.outcome.exception(), state.attempt_number + 1, state.next_action.sleep)

        return AsyncRetrying(
            retry=retry_if_exception(self._retryable),
            wait=lambda state: backoff.delay(state.attempt_number),
            stop=stop_never if self.attempts is None else stop_after_attempt(self.attempts),
            before_sleep=before_sleep,
            sleep=self.sleep,
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
