"""Redis commands as RESP bytes: what redis-py's ``Connection.pack_commands`` sends, argument for
argument, in a third of its CPU.

The sink sends ~23 commands (~120 arguments) per window; redis-py encodes and frames each argument
through several calls (its ``Encoder.encode``, ``pack_command``'s buffer cut-offs), which was about a
third of a window's client CPU (docs/bench/worker-chunk-notes.md). Arguments are encoded exactly as
``Encoder.encode`` does, so the stored values are the same bytes. With the ``hiredis`` package (a
dependency; redis-py parses replies with it) each command is framed by its C ``pack_command``, in
about a quarter of the Python loop's CPU, when the client encodes strings as strict UTF-8 (its
default); an argument hiredis does not take (a ``bytearray``, a ``bool`` to refuse) sends the whole
call through the Python loop, so the bytes and the refusals are the same either way
(tests/stream/test_resp.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import DataError

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - a dependency; without it the Python loop packs everything
    _hiredis_pack = None

__all__ = ["pack_commands"]

_UTF8 = {"utf-8", "utf8", "UTF-8", "UTF8"}


def pack_commands(commands: Iterable[Sequence[Any]], encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The RESP arrays of ``commands`` (each a name and its arguments), joined.

    ``encoding``/``errors``: the client's, for ``str`` arguments (``Encoder.encoding``,
    ``encoding_errors``); ``int`` and ``float`` are sent as their ``repr``, bytes as they are; a
    ``bool`` is refused as redis-py refuses it.
    """
    if _hiredis_pack is not None and encoding in _UTF8 and errors == "strict":
        commands = commands if isinstance(commands, list) else list(commands)
        try:
            return _pack_with_hiredis(commands)
        except TypeError:
            pass  # an argument it does not take: the loop below packs or refuses it as redis-py does
    return _pack_in_python(commands, encoding, errors)


def _pack_with_hiredis(commands: list[Sequence[Any]]) -> bytes:
    out: list[bytes] = []
    for command in commands:
        if len(command[0].split()) != 1:
            raise TypeError("a name with literal arguments in it: the loop splits it")
        out.append(_hiredis_pack(command if type(command) is tuple else tuple(command)))
    return b"".join(out)


def _pack_in_python(commands: Iterable[Sequence[Any]], encoding: str, errors: str) -> bytes:
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
