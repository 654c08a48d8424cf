"""The local stack: launchers for Kafka, Redis, Triton and Prometheus on one process base, `hfrisk up`/`down`, and the terminal ward view."""
