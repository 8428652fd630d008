"""The router's topics on the real broker: created with their retention, min ISR and
cleanup policy; checked at start (a wrong partition count stops the worker with exit 2,
drifted retention is reported and set only when asked)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from llmrouter.config.settings import Settings
from llmrouter.topics import ANSWERED_CHANGELOG, topic_specs
from tests.conftest import BOOTSTRAP, isolated_settings, read_configs

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]
LLMROUTER = shutil.which("llmrouter", path=str(Path(sys.executable).parent)) or "llmrouter"
HOUR_MS = 3_600_000
TOPIC_OVERRIDE = 1  # DescribeConfigs config_source: set on the topic itself


async def own_settings(directory: Path, model_dir: Path, **sections: dict) -> tuple[Settings, Path]:
    """:func:`isolated_settings` (it runs a loop of its own) from inside a test's loop."""
    return await asyncio.to_thread(isolated_settings, directory, model_dir, **sections)


def run_cli(settings_path: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """The installed `llmrouter` command with this settings file and none of the caller's LLMROUTER variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTER")}
    return subprocess.run([LLMROUTER, "--settings", str(settings_path), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


async def admin_client() -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    return admin


# -- topics created with their configs ------------------------------------------------------------

async def test_topics_are_created_with_the_configured_retention_min_isr_and_cleanup_policy(
        kafka_and_redis, tiny_model_dir, tmp_path):
    """Every topic the router creates carries retention.ms (from kafka.retention, in hours),
    cleanup.policy and min.insync.replicas as overrides of its own; llm.providers is
    compacted with no retention of its own."""
    settings, _ = await own_settings(tmp_path, tiny_model_dir, kafka={"retention": {"stream_hours": 2}})
    specs = {spec.name: spec for spec in topic_specs(settings) if spec.managed}
    configs = await read_configs(list(specs))
    print({name: {k: configs[name][k][0] for k in
                                   ("retention.ms", "cleanup.policy", "min.insync.replicas")} for name in specs})

    for name, spec in specs.items():
        assert configs[name]["min.insync.replicas"] == ("1", TOPIC_OVERRIDE), name
        if spec.compacted and spec.retention_ms is None:
            assert configs[name]["cleanup.policy"] == ("compact", TOPIC_OVERRIDE)
            assert configs[name]["retention.ms"][1] != TOPIC_OVERRIDE
        elif spec.compacted:  # the cache topic: compacted, and deleted after the cache TTL
            assert configs[name]["cleanup.policy"] == ("compact,delete", TOPIC_OVERRIDE)
            assert configs[name]["retention.ms"] == (str(spec.retention_ms), TOPIC_OVERRIDE), name
        else:
            assert configs[name]["cleanup.policy"] == ("delete", TOPIC_OVERRIDE), name
            assert configs[name]["retention.ms"] == (str(spec.retention_ms), TOPIC_OVERRIDE), name
    prefix = settings.kafka.topic_prefix
    assert configs[f"{prefix}llm.stream"]["retention.ms"][0] == str(2 * HOUR_MS)
    assert configs[f"{prefix}llm.dlq"]["retention.ms"][0] == str(14 * 24 * HOUR_MS)
    assert configs[f"{prefix}llm.requests.normal"]["retention.ms"][0] == str(7 * 24 * HOUR_MS)


async def test_drifted_retention_is_reported_and_set_only_with_apply_configs(kafka_and_redis, tiny_model_dir,
                                                                            tmp_path):
    """llm.stream altered to a week by someone: `topics create` warns and leaves it;
    `topics create --apply-configs` sets it back to the settings' hour and keeps the
    topic's other overrides (AlterConfigs replaces the whole set)."""
    settings, path = await own_settings(tmp_path, tiny_model_dir)
    stream = settings.topic("llm.stream")
    admin = await admin_client()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, stream, {
            "cleanup.policy": "delete", "retention.ms": str(7 * 24 * HOUR_MS), "min.insync.replicas": "1",
            "segment.ms": "600000"})])
    finally:
        await admin.close()

    warned = run_cli(path, "topics", "create")
    print(warned.stdout, warned.stderr)
    assert warned.returncode == 0, warned.stderr
    assert f"warning: {stream}: retention.ms is 604800000 (7 d), the settings say 3600000 (1 h)" in warned.stderr
    assert "llmrouter topics create --apply-configs" in warned.stderr
    assert (await read_configs([stream]))[stream]["retention.ms"][0] == str(7 * 24 * HOUR_MS)

    applied = run_cli(path, "topics", "create", "--apply-configs")
    print(applied.stdout, applied.stderr)
    assert applied.returncode == 0, applied.stderr
    assert f"altered {stream}: retention.ms=3600000" in applied.stdout and "warning" not in applied.stderr
    after = (await read_configs([stream]))[stream]
    assert after["retention.ms"] == (str(HOUR_MS), TOPIC_OVERRIDE)
    assert after["segment.ms"] == ("600000", TOPIC_OVERRIDE)


# -- existing topics checked at start ---------------------------------------------------------

async def test_a_wrong_partition_count_stops_the_worker_with_exit_2_naming_the_topic(kafka_and_redis,
                                                                                      tiny_model_dir, tmp_path):
    """llm.requests.normal grown to 3 partitions and an answered changelog made with 3 (both
    expected 2): `llmrouter worker` and `llmrouter topics create` exit 2 before faust starts,
    naming each topic, its count, the expected count and what to do; nothing is changed."""
    settings, path = await own_settings(tmp_path, tiny_model_dir)
    normal = settings.topic("llm.requests.normal")
    changelog = ANSWERED_CHANGELOG.format(app_id=settings.worker.app_id)
    admin = await admin_client()
    try:
        await admin.create_partitions({normal: NewPartitions(3)})
        await admin.create_topics([NewTopic(changelog, 3, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()

    started = time.monotonic()
    worker = await asyncio.to_thread(run_cli, path, "worker", timeout=60)
    print(f"worker exited {worker.returncode} after {time.monotonic() - started:.1f}s:\n{worker.stderr}")
    create = await asyncio.to_thread(run_cli, path, "topics", "create")
    for done in (worker, create):
        assert done.returncode == 2, done.stderr
        assert "the router's topics do not fit the settings (2 problem(s)); nothing was changed" in done.stderr
        assert f"{normal} has 3 partition(s), expected 2 (kafka.request_partitions)" in done.stderr
        assert f"{changelog} has 3 partition(s), expected 2 (kafka.partitions)" in done.stderr
        assert "Kafka cannot remove partitions" in done.stderr
    assert "[^Worker]: Starting" not in worker.stdout + worker.stderr
