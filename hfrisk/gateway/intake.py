"""The part both gateways share: a decoded recording onto the raw topic, a refused one to the dead letters.

A gateway parses its own wire format (HL7 v2, FHIR) with :mod:`hfrisk.model.readers`; from there
:class:`Intake` does the same for both: cut into chunks, encode (the codec's rules refuse what the
worker would), send, or dead-letter the original bytes with the reason. Nothing is acknowledged
before Kafka holds it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from hfrisk.core.config import KafkaSettings
from hfrisk.core.logs import get_logger
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.stream.messages import message_key
from hfrisk.stream.messages.dead_letter import DeadLetter

from hfrisk.gateway.chunks import Sequencer, ecg_to_chunks
from hfrisk.gateway.publisher import Publisher, encode_all

__all__ = ["Intake", "Accepted"]

log = get_logger(__name__)


@dataclass(frozen=True)
class Accepted:
    patient_id: str
    device_id: str
    chunks: int
    first_sequence: int
    duration_s: float


class Intake:
    """Turns recordings into chunks on Kafka; ``source`` names the gateway in dead letters."""

    def __init__(self, publisher: Publisher, kafka: KafkaSettings, *, chunk_s: float, source: str,
                 sequencer: Sequencer | None = None):
        self.publisher = publisher
        self.kafka = kafka
        self.chunk_s = chunk_s
        self.source = source
        self.sequencer = sequencer or Sequencer()

    async def accept(self, ecg: ECG, *, source: str = "") -> Accepted:
        """Send ``ecg``'s chunks and return when Kafka has them all.

        Raises ``ECGInputError`` when the codec refuses a chunk (nothing is sent then), and
        :class:`~hfrisk.gateway.publisher.PublishError` when Kafka does not take them.
        """
        # Encoding before sending: a recording is sent whole or not at all.
        probe = ecg_to_chunks(ecg, Sequencer(), chunk_s=self.chunk_s, source=source)
        encode_all(probe, self.kafka.max_message_bytes)
        chunks = ecg_to_chunks(ecg, self.sequencer, chunk_s=self.chunk_s, source=source)
        records = encode_all(chunks, self.kafka.max_message_bytes)
        await asyncio.to_thread(self.publisher.send_chunks, records)
        log.info("message accepted", gateway=self.source, device_id=ecg.device_id, chunks=len(chunks),
                 first_sequence=chunks[0].sequence, duration_s=round(ecg.duration_s, 3))
        return Accepted(ecg.patient_id, ecg.device_id, len(chunks), chunks[0].sequence, ecg.duration_s)

    async def refuse(self, raw: bytes, error: ECGInputError, *, kind: str, patient_id: str = "") -> DeadLetter:
        """Dead-letter ``raw`` with the error's reason; returns the letter sent."""
        letter = replace(
            DeadLetter.for_message(
                raw, key=message_key(patient_id) if patient_id else None, reason=error.reason.value,
                detail=error.detail, topic=self.source, partition=-1, offset=-1, patient_id=patient_id,
                max_message_bytes=self.kafka.max_message_bytes,
            ),
            kind=kind,
        )
        await asyncio.to_thread(self.publisher.send_dead_letter, letter)
        # The detail can quote message content; the reason code is what logs need.
        log.warning("message refused", gateway=self.source, reason=error.reason.value, size=len(raw))
        return letter
