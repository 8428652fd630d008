"""``llmrouter cache clear|stats``: invalidate cached answers on every worker, read a worker's cache figures.

``clear`` writes a clear record to ``llm.router.cache`` (every worker applies it to its L1 and L3 and,
from then on, serves nothing under the prefix that was stored before it, whichever level holds it; see
:mod:`llmrouter.cache.sync`), then deletes the prefix from Redis once, since L2 is shared.
Which entries: ``--all`` (every namespace version), ``--version N`` (one namespace version), plus
``--tenant T`` (that tenant's entries of that version, its users' included: two prefixes, two clear
records), ``--user U`` (a user with no tenant) or both (that user of that tenant), or a raw ``--prefix``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request

from aiokafka import AIOKafkaProducer

from llmrouter.cache.keys import KEY_ROOT, clear_prefixes, key_prefix
from llmrouter.cache.l2 import RedisCache
from llmrouter.cache.service import l2_namespace
from llmrouter.cache.sync import clear_record
from llmrouter.errors import ConfigError
from llmrouter.runtime.clock import wall_ms
from llmrouter.config.settings import Settings
from llmrouter.topics import CACHE


def add_parser(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="the answer cache").add_subparsers(required=True, metavar="ACTION")
    p = cache.add_parser("clear", help="invalidate cached answers on every worker and in Redis")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every cached answer, every namespace version")
    which.add_argument("--version", type=int, help="one namespace version (with --user/--tenant: one tenant's)")
    which.add_argument("--prefix", help="every key starting with this (keys look like llm:v1:u.alice:<sha256>)")
    p.add_argument("--user", help="with --version: only this user_id's entries (of --tenant's, when given)")
    p.add_argument("--tenant", help="with --version: only this tenant's entries (metadata.tenant), its users' too")
    p.set_defaults(func=clear_command)
    p = cache.add_parser("stats", help="a running worker's cache figures (levels, hits, misses)")
    p.add_argument("--worker", help="worker web URL (default: from the settings, http://HOST:PORT)")
    p.set_defaults(func=stats_command)


def clear_prefix_list(args: argparse.Namespace) -> list[str]:
    """The key prefixes the arguments name (a tenant's own scope and its users' are two)."""
    if (args.user or args.tenant) and args.version is None:
        raise ConfigError("--user and --tenant need --version: a tenant's keys live under a namespace version")
    if args.all:
        return [f"{KEY_ROOT}:"]
    if args.prefix is not None:
        if not args.prefix.startswith(f"{KEY_ROOT}:"):
            raise ConfigError(f"cache keys start with '{KEY_ROOT}:'; {args.prefix!r} would clear nothing")
        return [args.prefix]
    if args.user or args.tenant:
        return list(clear_prefixes(args.version, tenant=args.tenant, user_id=args.user))
    return [key_prefix(args.version)]


def clear_command(args: argparse.Namespace, settings: Settings) -> int:
    prefixes = clear_prefix_list(args)
    deleted = [asyncio.run(_clear(settings, prefix)) for prefix in prefixes]
    redis_deleted = None if None in deleted else sum(deleted)
    print(json.dumps({"cleared": prefixes, "redis_deleted": redis_deleted,
                      "note": "every worker applies the clear as soon as it reads llm.router.cache"}))
    return 0


async def _clear(settings: Settings, prefix: str) -> int | None:
    key, value = clear_record(prefix, at_ms=wall_ms())
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(CACHE), value, key=key)
    finally:
        await producer.stop()
    redis = RedisCache(settings.redis.url, timeout_s=max(1.0, settings.cache.redis_timeout_s))
    await redis.start()
    try:
        deleted = await redis.clear(l2_namespace(settings) + prefix) if redis.available else None
    finally:
        await redis.stop()
    if deleted is None:
        print("Redis did not answer: its entries expire by TTL, and no worker serves them after the clear",
              file=sys.stderr)
    return deleted


def stats_command(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.worker or f"http://{settings.worker.web_host}:{settings.worker.web_port}").rstrip("/") + "/cache/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print(json.dumps(json.load(response), indent=2))
    except (urllib.error.URLError, OSError) as exc:
        print(f"llmrouter: no worker answered at {url}: {exc}", file=sys.stderr)
        return 1
    return 0
