"""Windows for many patients: :class:`WindowAssembler` routes each chunk to its patient's
:class:`~hfrisk.stream.windowing.buffer.PatientBuffer` and saves or restores those buffers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hfrisk.stream.windowing.buffer import PatientBuffer
from hfrisk.stream.windowing.state import ChunkLike
from hfrisk.stream.windowing.windows import Outcome

__all__ = ["WindowAssembler"]


@dataclass
class WindowAssembler:
    """Windows for many patients: routes each chunk to its patient's :class:`PatientBuffer`.

    ``buffers`` maps patient id to buffer; a worker restores them from its table with
    :meth:`restore` when it is assigned a partition.
    """

    window_s: float
    hop_s: float
    reorder_s: float = 5.0
    time_tolerance_s: float = 0.02
    max_pending: int = 1024
    buffers: dict[str, PatientBuffer] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, card, stream_settings=None) -> WindowAssembler:
        """Window length from the model card, hop and reorder horizon from ``StreamSettings``."""
        from hfrisk.core.config import get_settings

        stream = stream_settings or get_settings().stream
        return cls(window_s=card.window.window_s, hop_s=stream.hop_s, reorder_s=stream.reorder_s)

    def buffer(self, patient_id: str) -> PatientBuffer:
        """The patient's buffer, created empty on first use."""
        buffer = self.buffers.get(patient_id)
        if buffer is None:
            buffer = self.buffers[patient_id] = PatientBuffer(
                patient_id,
                self.window_s,
                self.hop_s,
                reorder_s=self.reorder_s,
                time_tolerance_s=self.time_tolerance_s,
                max_pending=self.max_pending,
            )
        return buffer

    def feed(self, chunk: ChunkLike) -> list[Outcome]:
        return self.buffer(chunk.patient_id).feed(chunk)

    def feed_many(self, chunks: Iterable[ChunkLike]) -> Iterator[Outcome]:
        for chunk in chunks:
            yield from self.feed(chunk)

    def close(self, patient_id: str) -> list[Outcome]:
        return self.buffers[patient_id].close() if patient_id in self.buffers else []

    def state(self, patient_id: str) -> bytes:
        """The patient's buffer as bytes, to persist (after its windows reached the sink)."""
        return self.buffer(patient_id).to_bytes()

    def restore(self, patient_id: str, state: bytes | dict) -> PatientBuffer:
        """Replace the patient's buffer by a saved one; its grid must match this assembler's."""
        buffer = PatientBuffer.from_dict(state) if isinstance(state, dict) else PatientBuffer.from_bytes(state)
        if buffer.patient_id != patient_id:
            raise ValueError(f"saved state is of patient {buffer.patient_id!r}, not {patient_id!r}")
        if (buffer.window_s, buffer.hop_s) != (self.window_s, self.hop_s):
            raise ValueError(
                f"saved grid (window {buffer.window_s:g} s, hop {buffer.hop_s:g} s) differs from this assembler's "
                f"(window {self.window_s:g} s, hop {self.hop_s:g} s): window ids would change meaning"
            )
        self.buffers[patient_id] = buffer
        return buffer

    def drop(self, patient_id: str) -> None:
        """Forget a patient (partition revoked, or discharged)."""
        self.buffers.pop(patient_id, None)
