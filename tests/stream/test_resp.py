"""The sink's RESP packer sends what redis-py would: the same bytes for every kind of argument the
sink passes (and the ones it might), so the values stored do not depend on which one packed them,
whether hiredis framed them or the Python loop did."""

from __future__ import annotations

import numpy as np
import pytest
from redis.connection import Connection, PythonRespSerializer
from redis.exceptions import DataError

from hfrisk.stream.sinks import resp
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


def _redis_py(commands, encoding="utf-8", errors="strict") -> bytes:
    """redis-py's own pure-Python packer (the reference whether or not it would use hiredis itself)."""
    connection = Connection(encoding=encoding, encoding_errors=errors)
    packer = PythonRespSerializer(6000, connection.encoder.encode)
    return b"".join(bytes(part) for command in commands for part in packer.pack(*command))


@pytest.fixture(params=["hiredis", "python"])
def packer(request, monkeypatch):
    """Each test twice: with hiredis framing what it takes, and with the Python loop alone."""
    if request.param == "python":
        monkeypatch.setattr(resp, "_hiredis_pack", None)
    else:
        assert resp._hiredis_pack is not None, "hiredis is a dependency"
    return request.param


def test_the_bytes_are_redis_pys_for_every_kind_of_argument(packer):
    assert pack_commands(COMMANDS) == _redis_py(COMMANDS)
    expected = b"".join(bytes(part) for part in Connection().pack_commands(COMMANDS))
    assert pack_commands(COMMANDS) == expected  # and what the installed redis-py itself sends


def test_hiredis_frames_the_sinks_arguments_as_the_python_loop_does():
    """What the sink sends (str, int, float, bytes): hiredis's bytes are the loop's, for floats of
    every magnitude and sign, the non-finite ones and integers beyond 64 bits."""
    rng = np.random.default_rng(7)
    floats = [float(v) for v in rng.normal(size=3000) * 10.0 ** rng.integers(-300, 300, 3000)]
    floats += [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 5e-324, 1.7976931348623157e308, 1e16, 0.1]
    ints = [0, -1, 2**63 - 1, -(2**63), 2**80, -(10**30)]
    commands = [("ZADD", "k", value, f"m-{i}") for i, value in enumerate(floats)]
    commands += [("HSET", b"h", "f", value, "g", "caf\u00e9 \u4e2d\U0001f600") for value in ints]
    commands += [("WATCH", *(f"key-{i}" for i in range(40))), ("EXEC",)]
    assert resp._pack_with_hiredis(commands) == resp._pack_in_python(commands, "utf-8", "strict")
    assert pack_commands(commands) == _redis_py(commands)


def test_strings_use_the_clients_encoding(packer):
    commands = [("SET", "k", "caf\u00e9 \u4e2d")]
    expected = _redis_py(commands, "latin-1", "replace")
    assert pack_commands(commands, "latin-1", "replace") == expected == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\ncaf\xe9 ?\r\n"


@pytest.mark.parametrize("bad", [True, None, [1], object()])
def test_arguments_redis_py_refuses_are_refused(bad, packer):
    with pytest.raises(DataError):
        Connection().pack_commands([("SET", "k", bad)])
    with pytest.raises(DataError):
        pack_commands([("SET", "k", bad)])
