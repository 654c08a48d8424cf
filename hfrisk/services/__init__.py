"""Launchers for the real servers of the local stack (Kafka, Redis, Triton, Prometheus)."""
