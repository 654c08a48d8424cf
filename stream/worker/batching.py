"""Micro-batches that gather while the last one is being scored.

Faust's ``noack_take(max, within)`` stops taking events while the agent works on a batch, then waits
for ``max`` events or for ``within`` seconds, counted from when it starts waiting. Under load that
costs twice: the events that arrived meanwhile sit in Faust's queue while the event loop waits idle
on the preprocessing pool and Triton; and a batch larger than what arrives in ``within`` seconds is
never reached, so each batch is followed by a full ``within`` of waiting
(docs/bench/stream-tuning.md, "Micro-batch size").

:func:`gathered_batches` keeps taking events into the next batch while the agent works, and hands
a batch over as soon as it is full **or its oldest event has waited** ``linger_s``. Under a backlog
every batch is full; live, a batch holds what arrived while the last one was scored, and no event
waits for company longer than ``linger_s``. Like ``noack_take`` it acknowledges nothing: the
agent's checkpoint does (docs/stream-worker.md).

Example::

    async for events in gathered_batches(stream, 128, linger_s=0.05):
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

__all__ = ["gathered_batches"]


async def gathered_batches(stream: Any, max_events: int, *, linger_s: float) -> AsyncIterator[Sequence[Any]]:
    """Batches of ``stream``'s events (a Faust stream), at most ``max_events`` each, none of whose
    events waited more than ``linger_s`` for the batch to be handed over (unless the agent was still
    busy with the previous one). Events are not acknowledged."""
    if max_events < 1:
        raise ValueError(f"max_events must be at least 1, got {max_events}")
    if linger_s < 0:
        raise ValueError(f"linger_s must not be negative, got {linger_s}")
    loop = asyncio.get_running_loop()
    buffer: list[Any] = []
    oldest_at = 0.0
    arrived = asyncio.Event()  # the buffer holds at least one event
    full = asyncio.Event()
    room = asyncio.Event()  # cleared while the buffer is full: the stream waits
    room.set()

    async def gather(value: Any) -> Any:
        # Faust calls this for every event, in the background (the stream is passive), also while
        # the agent works on a batch.
        nonlocal oldest_at
        try:
            event = stream.current_event
            if event is None:
                raise RuntimeError("a batched stream got a value without its event")
            buffer.append(event)
            if len(buffer) == 1:
                oldest_at = loop.time()
                arrived.set()
            if len(buffer) >= max_events:
                full.set()
                room.clear()
                # Back-pressure: the next event waits in Faust's bounded queue, then in Kafka.
                await stream.wait(room)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # as noack_take: a processor's failure must stop the app, not hang it
            stream.log.exception("could not add an event to the batch: %r", exc)
            await stream.crash(exc)
        return value

    acks_enabled = stream.enable_acks
    stream.enable_acks = False  # the events are acknowledged by the agent, after they are written
    stream.add_processor(gather)
    stream._enable_passive(aiter(stream.channel))  # as noack_take does: consume in the background
    try:
        while not stream.should_stop:
            if not buffer:
                await stream.wait_for_stopped(arrived)
                continue
            wait_s = oldest_at + linger_s - loop.time()
            if wait_s > 0 and len(buffer) < max_events:
                await stream.wait_for_stopped(full, timeout=wait_s)
                if stream.should_stop:
                    break
            batch = buffer[:]
            buffer.clear()
            arrived.clear()
            full.clear()
            room.set()
            yield batch
            del batch
    finally:
        stream.enable_acks = acks_enabled
        stream._processors.remove(gather)
        room.set()  # a stream waiting for room is not left hanging
