"""The chunk message's wire constants: header (magic byte, schema version), sample types and the
Avro schema ``ecg_chunk.avsc``, one writer schema per version this build reads. The layout and the
versioning rules are in docs/message-schema.md."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import numpy as np

__all__ = [
    "MAGIC",
    "HEADER_BYTES",
    "SCHEMA_PATH",
    "SCHEMA",
    "SCHEMA_VERSION",
    "WRITER_SCHEMAS",
    "HEADER",
    "SAMPLE_DTYPES",
    "WIRE_NAME",
    "load_schema",
]

MAGIC = 0xEC
SCHEMA_PATH = Path(__file__).with_name("ecg_chunk.avsc")
HEADER_BYTES = 2
# Wire name -> numpy dtype. Little-endian whatever the host: the bytes must mean the same on
# every consumer.
SAMPLE_DTYPES: dict[str, np.dtype] = {"INT16": np.dtype("<i2"), "FLOAT32": np.dtype("<f4")}
# Native dtype -> wire name.
WIRE_NAME: dict[np.dtype, str] = {np.dtype(np.int16): "INT16", np.dtype(np.float32): "FLOAT32"}


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The Avro schema as a parsed dict, with its ``hfrisk_schema_version``."""
    raw = json.loads(path.read_text())
    return fastavro.parse_schema(raw) | {"hfrisk_schema_version": raw["hfrisk_schema_version"]}


SCHEMA = load_schema()
SCHEMA_VERSION: int = SCHEMA["hfrisk_schema_version"]
# Writer schema per version this code can read. A new version adds its file here and keeps the old
# ones: decode resolves an old writer schema to the current one (Avro schema resolution), so
# fields added with a default are filled in for old messages.
WRITER_SCHEMAS: dict[int, dict] = {SCHEMA_VERSION: SCHEMA}
HEADER = bytes((MAGIC, SCHEMA_VERSION))
