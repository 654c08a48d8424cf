"""Per-patient buffers that turn a stream of chunks into 10-s windows, with gaps, late chunks and redelivery handled."""
