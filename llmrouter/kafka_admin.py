"""Create the router's topics (faust creates only its internal ones)."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from llmrouter.settings import Settings
from llmrouter.topics import topic_specs


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every missing topic of :func:`topic_specs`; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(spec.name, spec.partitions, settings.kafka.replication_factor,
                     topic_configs={"cleanup.policy": "compact"} if spec.compacted else {})
            for spec in missing
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another worker created them at the same moment
        return [spec.name for spec in missing]
    finally:
        await admin.close()
