"""Getting ECG chunks onto Kafka: the topics the pipeline needs (:mod:`.topics`, :mod:`.kafka_admin`)
and the replay producer that plays recordings as bedside monitors (:mod:`.replay`, docs/replay.md).

The names below are imported on first use, so ``import hfrisk.stream.ingest`` loads no Kafka client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from hfrisk.core.lazy import lazy_exports

if TYPE_CHECKING:
    from hfrisk.stream.ingest.kafka_admin import TopicMismatchError, create_topics
    from hfrisk.stream.ingest.replay import ReplayError, ReplayStats, feed, replay
    from hfrisk.stream.ingest.topics import TopicSpec, ensure_topics, topic_specs

# name -> module that defines it
_EXPORTS = {
    "replay": "hfrisk.stream.ingest.replay",
    "feed": "hfrisk.stream.ingest.replay",
    "ReplayStats": "hfrisk.stream.ingest.replay",
    "ReplayError": "hfrisk.stream.ingest.replay",
    "TopicSpec": "hfrisk.stream.ingest.topics",
    "topic_specs": "hfrisk.stream.ingest.topics",
    "ensure_topics": "hfrisk.stream.ingest.topics",
    "create_topics": "hfrisk.stream.ingest.kafka_admin",
    "TopicMismatchError": "hfrisk.stream.ingest.kafka_admin",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
