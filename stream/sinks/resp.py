"""Redis commands as RESP bytes: what redis-py's ``Connection.pack_commands`` sends, argument for
argument, in a third of its CPU.

The sink sends ~23 commands (~120 arguments) per window; redis-py encodes and frames each argument
through several calls (its ``Encoder.encode``, ``pack_command``'s buffer cut-offs), which was about a
third of a window's client CPU (docs/bench/worker-chunk-notes.md). Arguments are encoded exactly as
``Encoder.encode`` does, so the stored values are the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import DataError

__all__ = ["pack_commands"]


def pack_commands(commands: Iterable[Sequence[Any]], encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The RESP arrays of ``commands`` (each a name and its arguments), joined.

    ``encoding``/``errors``: the client's, for ``str`` arguments (``Encoder.encoding``,
    ``encoding_errors``); ``int`` and ``float`` are sent as their ``repr``, bytes as they are; a
    ``bool`` is refused as redis-py refuses it.
    """
    out: list[bytes] = []
    append = out.append
    for command in commands:
        name, *rest = command
        # A name with literal arguments in it ("CONFIG GET") is sent as separate arguments, as redis-py does.
        head = (name.encode() if isinstance(name, str) else bytes(name)).split()
        append(b"*%d\r\n" % (len(head) + len(rest)))
        for word in head:
            append(b"$%d\r\n%s\r\n" % (len(word), word))
        for arg in rest:
            if isinstance(arg, str):
                arg = arg.encode(encoding, errors)
            elif isinstance(arg, (bytes, bytearray, memoryview)):
                arg = bytes(arg)
            elif isinstance(arg, bool):
                raise DataError("Invalid input of type: 'bool'. Convert to a bytes, string, int or float first.")
            elif isinstance(arg, (int, float)):
                arg = repr(arg).encode()
            else:
                raise DataError(
                    f"Invalid input of type: '{type(arg).__name__}'. Convert to a bytes, string, int or float first."
                )
            append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)
