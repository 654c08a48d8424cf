"""What the gateways write to Kafka: chunks on the raw topic, refused messages on the dead-letter topic.

:class:`KafkaPublisher` waits until Kafka has every chunk of a message (``acks=all``, idempotent
producer: order kept per patient, no duplicates from its retries) before the gateway acknowledges
the message: a message is ACKed only once nothing of it can be lost, and NAKed for a resend when
Kafka does not take it in time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kafka import KafkaProducer

from hfrisk.core.config import KafkaSettings
from hfrisk.core.security import kafka_client_kwargs
from hfrisk.stream.messages import EcgChunk, encode_chunk
from hfrisk.stream.messages.dead_letter import DeadLetter

__all__ = ["Publisher", "KafkaPublisher", "PublishError", "encode_all"]


class PublishError(RuntimeError):
    """Kafka did not take a message's records in time (the sender should send it again)."""


class Publisher(Protocol):
    def send_chunks(self, records: Sequence[tuple[bytes, bytes]]) -> None: ...

    def send_dead_letter(self, letter: DeadLetter) -> None: ...

    def close(self) -> None: ...


def encode_all(chunks: Sequence[EcgChunk], max_bytes: int) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of each chunk; raises the codec's ``ECGInputError`` for any it refuses."""
    return [(chunk.key, encode_chunk(chunk, max_bytes=max_bytes)) for chunk in chunks]


class KafkaPublisher:
    """A kafka-python producer for one gateway process (thread-safe; call from worker threads)."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 10.0, client_id: str = "hfrisk-gateway"):
        self.kafka = kafka
        self.timeout_s = timeout_s
        self._producer = KafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=kafka.max_message_bytes,
            **kafka_client_kwargs(kafka),
        )

    def send_chunks(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        futures = [self._producer.send(self.kafka.ecg_topic, key=key, value=value) for key, value in records]
        self._producer.flush(timeout=self.timeout_s)
        try:
            for future in futures:
                future.get(timeout=self.timeout_s)
        except Exception as exc:  # KafkaTimeoutError, broker errors: the sender resends
            raise PublishError(f"Kafka did not take the chunks on {self.kafka.ecg_topic}: {exc!r}") from exc

    def send_dead_letter(self, letter: DeadLetter) -> None:
        future = self._producer.send(
            self.kafka.dead_letter_topic, key=letter.key, value=letter.value, headers=letter.headers()
        )
        try:
            future.get(timeout=self.timeout_s)
        except Exception as exc:
            raise PublishError(f"Kafka did not take the dead letter on {self.kafka.dead_letter_topic}: {exc!r}") from exc

    def close(self) -> None:
        self._producer.close(timeout=self.timeout_s)
