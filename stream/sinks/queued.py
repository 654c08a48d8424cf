"""A window's transaction as plain command tuples: :class:`QueuedCommands` has the few methods of
redis-py's pipeline that the sink queues with, and each appends the arguments that redis-py's
method would queue, in the same order. The sink packs and sends them itself
(``redis_sink._execute``), so redis-py's per-call argument building and queueing (~20 calls a
window) are not needed; ``tests/stream/test_sink_commands.py`` checks every method, and whole windows,
against redis-py's own pipeline, byte for byte once packed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["QueuedCommands"]


class QueuedCommands:
    """The commands of one ``MULTI``/``EXEC``, as ``(name, *args)`` tuples in :attr:`stack`."""

    def __init__(self) -> None:
        self.stack: list[tuple] = []

    def zadd(self, name: str, mapping: dict[Any, float]) -> None:
        args: list[Any] = ["ZADD", name]
        for member, score in mapping.items():
            args += (score, member)
        self.stack.append(tuple(args))

    def zrem(self, name: str, *members: Any) -> None:
        self.stack.append(("ZREM", name, *members))

    def zremrangebyrank(self, name: str, start: int, stop: int) -> None:
        self.stack.append(("ZREMRANGEBYRANK", name, start, stop))

    def expire(self, name: str, seconds: int) -> None:
        self.stack.append(("EXPIRE", name, seconds))

    def delete(self, *names: str) -> None:
        self.stack.append(("DEL", *names))

    def hset(self, name: str, *, mapping: dict[str, Any]) -> None:
        args: list[Any] = ["HSET", name]
        for item in mapping.items():
            args += item
        self.stack.append(tuple(args))

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        self.stack.append(("HINCRBY", name, key, amount))

    def xadd(self, name: str, fields: dict[str, Any], *, maxlen: int, approximate: bool = True) -> None:
        args: list[Any] = ["XADD", name, b"MAXLEN"]
        if approximate:
            args.append(b"~")
        args += (str(maxlen), "*")
        for item in fields.items():
            args += item
        self.stack.append(tuple(args))

    def set(self, name: str, value: Any, *, ex: int) -> None:
        self.stack.append(("SET", name, value, "EX", ex))
