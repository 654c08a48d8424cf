"""What one micro-batch of the worker is made of: the chunk messages in, the messages out, the
report of what it did, and the two ways it can end without being written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hfrisk.stream.alerts.policy import AlertEvent
from hfrisk.stream.messages.dead_letter import DeadLetter
from hfrisk.stream.sinks import WindowResult, WriteOutcome
from hfrisk.stream.windowing import SkippedWindows

__all__ = ["BatchAborted", "BatchFailed", "ChunkRecord", "OutboundMessage", "Publisher", "BatchReport"]


class BatchAborted(RuntimeError):
    """The batch was abandoned because the worker is stopping; none of its messages was acknowledged."""


class BatchFailed(RuntimeError):
    """A batch failed (a bug): its windows were never written, so the worker must stop without
    saving or acknowledging anything more; a restart redoes it from the last checkpoint."""


@dataclass(frozen=True)
class ChunkRecord:
    """One message of the chunk topic as the worker sees it; ``ack`` acknowledges it to Kafka."""

    value: bytes
    key: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    ack: Callable[[], Awaitable[Any]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class OutboundMessage:
    """A record for one of the output topics: ``role`` is ``scores``, ``alerts`` or ``dead_letter``."""

    role: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None = None


class Publisher(Protocol):
    async def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Send all ``messages``; return once Kafka has acknowledged every one."""


@dataclass
class BatchReport:
    """What one batch did (for logs and tests)."""

    chunks: Counter = field(default_factory=Counter)
    windows: Counter = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    results: list[WindowResult] = field(default_factory=list)
    outcomes: list[WriteOutcome] = field(default_factory=list)
    skipped: list[SkippedWindows] = field(default_factory=list)
    events: list[AlertEvent] = field(default_factory=list)
    # Seconds per step (decode, window, prepare, infer, write, publish): where a batch spent its time.
    timings: dict[str, float] = field(default_factory=dict)
