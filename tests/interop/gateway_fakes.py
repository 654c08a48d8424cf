"""An in-memory stand-in for Kafka in the gateways' unit tests: it keeps what would have been sent,
so tests can decode the chunks and dead letters exactly as a consumer would. The real producer is
exercised by tests/integration/test_hl7_gateway.py."""

from __future__ import annotations

from hfrisk.gateway.publisher import PublishError
from hfrisk.stream.messages import decode_chunk


class RecordingPublisher:
    def __init__(self, *, down: bool = False):
        self.chunks: list[tuple[bytes, bytes]] = []
        self.dead_letters = []
        self.down = down

    def send_chunks(self, records):
        if self.down:
            raise PublishError("broker unreachable")
        self.chunks.extend(records)

    def send_dead_letter(self, letter):
        if self.down:
            raise PublishError("broker unreachable")
        self.dead_letters.append(letter)

    def close(self):
        pass

    def decoded(self):
        return [decode_chunk(value) for _, value in self.chunks]
