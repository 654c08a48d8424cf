"""What travels on the Kafka topics: the ECG chunk record (:mod:`.chunk`), its wire constants and
Avro schema (:mod:`.schema`), its codec (:mod:`.codec`) and content rules (:mod:`.validation`),
dead-letter records (:mod:`.dead_letter`) and the scores topic's record (:mod:`.scores`).
Formats: docs/message-schema.md, docs/dead-letters.md."""

from hfrisk.stream.messages.chunk import EcgChunk, WireSamples, datetime_to_us, message_key, wire_samples
from hfrisk.stream.messages.codec import decode_chunk, encode_chunk
from hfrisk.stream.messages.dead_letter import DeadLetter, value_limit
from hfrisk.stream.messages.schema import (
    HEADER_BYTES,
    MAGIC,
    SAMPLE_DTYPES,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    WRITER_SCHEMAS,
    load_schema,
)
from hfrisk.stream.messages.scores import score_record
from hfrisk.stream.messages.validation import validate_chunk

__all__ = [
    "EcgChunk",
    "WireSamples",
    "encode_chunk",
    "decode_chunk",
    "validate_chunk",
    "wire_samples",
    "message_key",
    "datetime_to_us",
    "MAGIC",
    "SCHEMA_VERSION",
    "HEADER_BYTES",
    "SCHEMA_PATH",
    "SAMPLE_DTYPES",
    "WRITER_SCHEMAS",
    "load_schema",
    "DeadLetter",
    "value_limit",
    "score_record",
]
