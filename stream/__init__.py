"""Streaming, stage by stage: ``messages`` (what travels on Kafka), ``ingest`` (topics, replay), ``windowing``
(per-patient 10-s windows), ``scoring`` (micro-batches through the front end and Triton), ``sinks`` (Redis),
``alerts`` (hysteresis) and ``worker`` (the Faust worker that runs them). docs/architecture.md draws the flow."""
