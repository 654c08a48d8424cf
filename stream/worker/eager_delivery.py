"""Faust's consumer hands each fetched message to its topic's queue without four tasks per message.

Faust's fetch loop (``Consumer._drain_messages``) delivers every message with
``await self.wait_first(callback(message), self.suspend_flow.wait())``, so that a delivery blocked
on a full queue gives way to a rebalance. mode's ``wait_first`` makes a task of each argument and of
the service's ``stopped`` and ``crashed`` events, waits for the first, then cancels the other three:
four tasks, an ``asyncio.wait`` and three cancellations for a message that is almost always put on
its queue at once. In the stream worker that was ~8-12 % of the event loop's CPU
(docs/bench/stream-tuning.md, "2026-12-06 midday").

:func:`install` gives Faust's consumer a ``wait_first`` that runs the first coroutine's first step
itself. A delivery that finishes there (the queue had room, the flow was not suspended) returns at
once and the other arguments are closed unstarted; one that has to wait (a full queue, suspended
flow, a full producer buffer) is handed, where it stopped, to mode's own ``wait_first`` together
with the other arguments, as before. What the fetch loop sees is the same either way: the first
step is the one the delivery task would have run first (mode starts the tasks in argument order),
an error from it is raised after the other arguments are closed (mode raises it after cancelling
them), and a consumer already stopping or crashed, a timeout, or a first argument that is not a
coroutine, goes to mode's ``wait_first`` unchanged. faust-streaming is pinned below 0.16
(pyproject.toml); tests/stream/test_eager_delivery.py checks the behaviour against mode's.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Generator
from typing import Any

from faust.transport.consumer import Consumer
from mode.services import Service, WaitResults

__all__ = ["install", "eager_wait_first"]

_mode_wait_first = Service.wait_first


class _Resumed(Awaitable):
    """Awaits a coroutine that has already run up to ``pending`` (what it yielded), from there on:
    what ``await coro`` would have done after that first step."""

    def __init__(self, coro, pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        self.pending = None
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # thrown in by the task (a cancellation): pass it on
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def _close(awaitables) -> None:
    for awaitable in awaitables:
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started: no "was never awaited" warning


async def eager_wait_first(self: Service, *coros: Any, timeout: Any = None) -> WaitResults:
    """``Service.wait_first`` that first runs its first coroutine's first step (module docstring)."""
    first = coros[0] if coros else None
    if (
        timeout is not None
        or not inspect.iscoroutine(first)
        or self._stopped.is_set()
        or self._crashed.is_set()
    ):
        return await _mode_wait_first(self, *coros, timeout=timeout)
    try:
        pending = first.send(None)
    except StopIteration as stop:
        _close(coros[1:])
        if self._stopped.is_set() or self._crashed.is_set():
            return WaitResults([], [], True)
        return WaitResults([first], [stop.value], False)
    except BaseException:
        _close(coros[1:])
        raise
    resumed = _Resumed(first, pending)
    results = await _mode_wait_first(self, resumed, *coros[1:], timeout=timeout)
    done = [first if winner is resumed else winner for winner in results.done]
    return WaitResults(done, results.results, results.stopped)


def install() -> None:
    """Give Faust's consumers :func:`eager_wait_first`, in this whole process (idempotent;
    :func:`~hfrisk.stream.worker.app.create_app` does it unless ``stream.eager_delivery`` is off)."""
    Consumer.wait_first = eager_wait_first
