"""The bytes a worker saves for a :class:`~hfrisk.stream.windowing.state.BufferState` and reads back.

Versions 2 and 3 (``STATE_VERSION``, written): a binary container, so that the samples are copied
once instead of base64-encoded at every checkpoint (issue #15)::

    magic b"HFWB" | version: uint16 LE | n: uint32 LE | metadata: n bytes of JSON | payload

The metadata is the state's JSON with each array replaced by ``{"shape": [...], "at": offset}``;
the payload is the arrays' little-endian bytes (float32, or int16 for ``buf_counts``), C order, one
after another; every payload byte belongs to exactly one array. Version 3 adds ``buf_counts`` (held
samples as int16 counts and their calibration, stored instead of ``buf``: half the bytes); version
2 has float32 only. Version 1 (``JSON_STATE_VERSION``): the state as JSON, arrays in base64, which
workers before version 2 saved. All three are read. Layout and compatibility: docs/windowing.md,
"Restarts and the saved state".
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from hfrisk.stream.windowing.state import (
    BINARY_STATE_VERSIONS,
    JSON_STATE_VERSION,
    KNOWN_STATE_VERSIONS,
    STATE_VERSION,
    BufferState,
)

__all__ = ["MAGIC", "ArrayPayload", "encode_state", "decode_state", "state_from_dict"]

MAGIC = b"HFWB"  # "hfrisk window buffer"; a JSON state starts with "{"
_HEADER = struct.Struct("<4sHI")


class ArrayPayload:
    """The arrays of a binary state, kept out of its JSON metadata; passed to pydantic as the
    context ``{"payload": ...}`` (the array fields in state.py look for it).

    Writing, :meth:`add` keeps each array and leaves ``{"shape", "at"}`` in the metadata; reading,
    :meth:`take` copies an array out of ``data`` and records the bytes it used, so that
    :meth:`check_tiled` can refuse bytes no array accounts for.
    """

    def __init__(self, data: bytes | memoryview = b""):
        self.data = memoryview(data)
        self.arrays: list[tuple[np.ndarray, np.dtype]] = []
        self.nbytes = 0
        self.used: list[tuple[int, int]] = []

    def add(self, a: np.ndarray, dtype: np.dtype) -> dict:
        stored = {"shape": list(a.shape), "at": self.nbytes}
        self.arrays.append((a, dtype))
        self.nbytes += a.size * dtype.itemsize
        return stored

    def take(self, stored: Any, dtype: np.dtype) -> np.ndarray:
        try:
            shape, at = stored["shape"], stored["at"]
        except (KeyError, TypeError):
            raise ValueError(f"expected {{'shape': [...], 'at': offset}}, got {stored!r:.80}") from None
        if not (
            isinstance(shape, list)
            and all(type(n) is int and n >= 0 for n in shape)
            and type(at) is int
            and at >= 0
        ):
            raise ValueError(f"bad array reference {stored!r:.80}")
        count = math.prod(shape)
        stop = at + dtype.itemsize * count
        if stop > len(self.data):
            raise ValueError(
                f"array of shape {shape} at payload bytes {at}..{stop}, but the payload has "
                f"{len(self.data)} bytes: truncated"
            )
        self.used.append((at, stop))
        # A native copy, as the JSON form's decode_array gives: nothing keeps the stored bytes.
        return np.frombuffer(self.data, dtype.newbyteorder("<"), count, at).reshape(shape).astype(dtype)

    def check_tiled(self) -> None:
        """Every payload byte belongs to exactly one array: no overlap, gap or trailing bytes."""
        end = 0
        for at, stop in sorted(self.used):
            if at != end:
                raise ValueError(f"array payload bytes {min(at, end)}..{max(at, end)} are overlapped or unused")
            end = stop
        if end != len(self.data):
            raise ValueError(f"array payload has {len(self.data)} bytes, its arrays account for {end}")


def encode_state(state: BufferState) -> bytes:
    """``state`` in the binary form (version ``STATE_VERSION``)."""
    if state.state_version != STATE_VERSION:  # one read from the JSON form
        state = state.model_copy(update={"state_version": STATE_VERSION})
    payload = ArrayPayload()
    meta = state.model_dump_json(context={"payload": payload}, exclude=state.fields_not_stored()).encode()
    # The held samples are a view with rows apart (room for the next chunks): made contiguous, then
    # joined, two plain copies, which measured faster than writing them into a preallocated bytearray.
    arrays = [np.ascontiguousarray(a, dtype.newbyteorder("<")) for a, dtype in payload.arrays]
    return b"".join([_HEADER.pack(MAGIC, STATE_VERSION, len(meta)), meta, *arrays])


def decode_state(data: bytes) -> BufferState:
    """A state from either form; ``ValueError`` (pydantic's ``ValidationError`` is one) saying what is
    wrong with a truncated, corrupt or unknown one: the worker then starts that patient afresh."""
    if data[:1] == b"{":
        return _json_version(BufferState.model_validate_json(data))
    if data[: len(MAGIC)] != MAGIC:
        raise ValueError(f"not a saved window buffer: {len(data)} bytes starting {bytes(data[:8])!r}")
    if len(data) < _HEADER.size:
        raise ValueError(f"window buffer of {len(data)} bytes, shorter than its {_HEADER.size}-byte header: truncated")
    _, version, n = _HEADER.unpack_from(data)
    if version not in BINARY_STATE_VERSIONS:
        raise ValueError(
            f"window buffer state version {version}, this worker reads "
            f"{', '.join(map(str, KNOWN_STATE_VERSIONS[:-1]))} and {KNOWN_STATE_VERSIONS[-1]}"
        )
    head = _HEADER.size + n
    if head > len(data):
        raise ValueError(
            f"window buffer metadata of {n} bytes, but {len(data) - _HEADER.size} follow the header: truncated"
        )
    payload = ArrayPayload(memoryview(data)[head:])
    state = BufferState.model_validate_json(bytes(data[_HEADER.size : head]), context={"payload": payload})
    if state.state_version != version:
        raise ValueError(f"window buffer header says version {version}, its metadata {state.state_version}")
    if version < STATE_VERSION and state.buf_counts is not None:
        raise ValueError(f"window buffer state version {version} with held counts, which only version {STATE_VERSION} has")
    payload.check_tiled()
    return state


def state_from_dict(data: dict) -> BufferState:
    """A state from the JSON form's data (``BufferState.to_dict``)."""
    return _json_version(BufferState.model_validate(data))


def _json_version(state: BufferState) -> BufferState:
    if state.state_version != JSON_STATE_VERSION:
        raise ValueError(
            f"window buffer state version {state.state_version} in the JSON form, which is version {JSON_STATE_VERSION}"
        )
    return state
