"""Streaming: Kafka message schema, replay, Faust workers, Redis sink, alerts."""
