"""The sink's RESP packer sends what redis-py would: the same bytes for every kind of argument the
sink passes (and the ones it might), so the values stored do not depend on which one packed them."""

from __future__ import annotations

import pytest
from redis.connection import Connection
from redis.exceptions import DataError

from hfrisk.stream.sinks.resp import pack_commands

COMMANDS = [
    ("MULTI",),
    ("ZADD", "hfrisk:trend:bed-1", 1700000000123.456, '{"window_id":"1700000000123456-3","log_risk":0.25}'),
    ("ZREMRANGEBYRANK", "hfrisk:trend:bed-1", 0, -2881),
    ("HSET", "hfrisk:latest:bed-1", "log_risk", 1.0000000000000002, "hazard_ratio", float("inf"),
     "n_beats_used", 11, "quality_reasons", "[]", "patient_id", "lit-\u00e9\u4e2d\U0001f600"),
    ("SET", b"hfrisk:window:bed-1:1-3", bytearray(b"\x00\xff raw"), "EX", 86400),
    ("SET", "hfrisk:buffer:bed-1", memoryview(b"x" * 10_000)),  # above redis-py's 6,000-byte cut-off
    ("XADD", "hfrisk:alerts", "MAXLEN", "~", 10000, "*", "kind", "raised", "threshold", -0.0, "windows", 2),
    ("CONFIG GET", "maxmemory"),  # a name with a literal argument in it
    ("EXEC",),
]


def test_the_bytes_are_redis_pys_for_every_kind_of_argument():
    connection = Connection()  # never connected: only its packer is used
    expected = b"".join(bytes(part) for part in connection.pack_commands(COMMANDS))
    assert pack_commands(COMMANDS) == expected


def test_strings_use_the_clients_encoding():
    connection = Connection(encoding="latin-1", encoding_errors="replace")
    commands = [("SET", "k", "caf\u00e9 \u4e2d")]
    expected = b"".join(bytes(part) for part in connection.pack_commands(commands))
    assert pack_commands(commands, "latin-1", "replace") == expected == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\ncaf\xe9 ?\r\n"


@pytest.mark.parametrize("bad", [True, None, [1], object()])
def test_arguments_redis_py_refuses_are_refused(bad):
    with pytest.raises(DataError):
        Connection().pack_commands([("SET", "k", bad)])
    with pytest.raises(DataError):
        pack_commands([("SET", "k", bad)])
