"""``llmrouter providers list|register|remove``: the provider registry from the shell.

``register`` and ``remove`` produce to the compacted ``llm.providers`` topic
(key: the provider name; a null value removes), which every worker follows;
``register`` checks the config first, against the same rules the workers
apply (:mod:`llmrouter.registry.admission`), and refuses a bad one with every
problem named, so nothing invalid is produced. With
``registry.signing_key_env`` set, ``register`` and ``remove`` sign each
record with the registry key from that variable
(:mod:`llmrouter.registry.signing`) and refuse to run without it. ``list`` asks a running worker's
``/providers/`` view (health, latency, error rate, cost); with no worker it
shows what the settings file and the topic configure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import aiohttp
import yaml
from aiokafka import AIOKafkaProducer

from llmrouter.wire.codec import Codec
from llmrouter.errors import ConfigError
from llmrouter.runtime.kafka_admin import ensure_topics
from llmrouter.providers.spec import KINDS, ProviderSpec, spec_from_record
from llmrouter.registry.admission import check_admission, removal_problem
from llmrouter.registry.reader import CompactedTopicReader
from llmrouter.registry.service import admission_rules
from llmrouter.registry.signing import SIGNATURE_HEADER, key_problem, sign
from llmrouter.config.secrets import Secrets
from llmrouter.config.settings import Settings
from llmrouter.topics import PROVIDERS


def add_parser(sub: argparse._SubParsersAction) -> None:
    providers = sub.add_parser("providers", help="the provider registry").add_subparsers(required=True,
                                                                                       metavar="ACTION")
    p = providers.add_parser("list", help="providers of a running worker (or, without one, as configured)")
    p.add_argument("--worker", help="worker web URL (default: from the settings, http://HOST:PORT)")
    p.add_argument("--json", action="store_true", help="print the whole registry view as JSON")
    p.set_defaults(func=list_command)

    p = providers.add_parser("register", help="register or update a provider on every worker")
    p.add_argument("name")
    p.add_argument("--file", help="YAML or JSON with ProviderConfig fields (flags override it)")
    p.add_argument("--kind", choices=KINDS[1:])
    p.add_argument("--endpoint", help="base URL, e.g. http://gpu-box:8000/v1")
    p.add_argument("--api-key-env", help="the variable holding the key on the workers ('' = no key needed)")
    p.add_argument("--model", action="append", dest="models", help="a model name (repeat for more)")
    p.add_argument("--rate-limit", help="e.g. 1000/minute")
    p.add_argument("--timeout-s", type=float)
    p.add_argument("--max-concurrent", type=int)
    p.add_argument("--retry-attempts", type=int)
    p.add_argument("--context-tokens", type=int)
    p.add_argument("--price-input-per-1k-usd", type=float)
    p.add_argument("--price-output-per-1k-usd", type=float)
    p.add_argument("--health-check-url")
    p.add_argument("--emergency-only", action="store_true", default=None)
    p.add_argument("--disabled", action="store_false", dest="enabled", default=None)
    p.set_defaults(func=register_command)

    p = providers.add_parser("remove", help="remove a provider from every worker")
    p.add_argument("name")
    p.set_defaults(func=remove_command)


def register_command(args: argparse.Namespace, settings: Settings) -> int:
    record = registration_record(args)
    spec = spec_from_record(record)  # ConfigError -> exit 2 with every problem
    check_admission(spec, admission_rules(settings))  # what the workers would refuse, refused here first
    asyncio.run(produce_registration(settings, spec.name, spec))
    where = spec.base_url or "(the vendor's API)"
    print(f"registered {spec.name} ({spec.kind} at {where}); running workers apply it within seconds")
    return 0


def remove_command(args: argparse.Namespace, settings: Settings) -> int:
    problem = removal_problem(args.name, admission_rules(settings))
    if problem:
        raise ConfigError(problem)
    asyncio.run(produce_registration(settings, args.name, None))
    print(f"removed {args.name}; running workers stop sending it traffic within seconds")
    return 0


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.worker or f"http://{settings.worker.web_host}:{settings.worker.web_port}").rstrip("/")
    view = asyncio.run(_worker_view(url))
    if view is None:
        print(f"(no worker answered at {url}; showing the configuration only)", file=sys.stderr)
        view = {"worker": None, "providers": asyncio.run(_configured(settings))}
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print(format_table(view["providers"]))
        for item in view.get("rejected") or []:  # records of llm.providers the worker refused
            print(f"rejected record {item['name']} (offset {item['offset']}): {item['reason']}")
    return 0


def registration_record(args: argparse.Namespace) -> dict[str, Any]:
    """The ProviderConfig fields given by ``--file`` and the flags (flags win)."""
    record: dict[str, Any] = {}
    if args.file:
        try:
            with open(args.file) as handle:
                loaded = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read provider file {args.file}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"provider file {args.file} must hold a mapping of ProviderConfig fields")
        record.update(loaded)
    for field in ("kind", "endpoint", "api_key_env", "models", "rate_limit", "timeout_s", "max_concurrent",
                  "retry_attempts", "context_tokens", "price_input_per_1k_usd", "price_output_per_1k_usd",
                  "health_check_url", "emergency_only", "enabled"):
        value = getattr(args, field)
        if value is not None:
            record[field] = value
    record["name"] = args.name
    return record


def format_table(providers: list[dict[str, Any]]) -> str:
    """One line per provider: state, health, recent latency and errors, spend."""
    rows = [("NAME", "KIND", "SOURCE", "STATE", "HEALTH", "P50 MS", "ERR %", "CALLS", "COST $")]
    for p in providers:
        stats = p.get("stats") or {}
        health = (stats.get("health") or {}).get("healthy")
        available = p.get("available")
        state = {True: "available", None: "configured"}.get(available, f"unavailable: {p.get('reason', '')}")
        if p.get("emergency_only"):
            state += " (emergency only)"
        p50 = stats.get("latency_p50_ms")
        rows.append((p["name"], p["kind"], p.get("source", ""), state,
                     {True: "ok", False: "failing", None: "-"}[health],
                     "-" if p50 is None else f"{p50:.0f}", f"{100 * stats.get('error_rate', 0):.1f}",
                     str(stats.get("calls", 0)), f"{stats.get('cost_usd', 0):.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


async def produce_registration(settings: Settings, name: str, spec: ProviderSpec | None, *,
                               secrets: Secrets | None = None) -> None:
    """Register (or, with None, remove) ``name`` on every worker: one record on llm.providers, signed when the
    settings ask for signatures."""
    value = Codec().encode_avro("ProviderConfig", spec.to_record()) if spec is not None else None
    headers = registration_headers(settings, secrets or Secrets.load(), name.encode(), value)
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(PROVIDERS), value, key=name.encode(), headers=headers or None)
    finally:
        await producer.stop()


def registration_headers(settings: Settings, secrets: Secrets, key: bytes,
                         value: bytes | None) -> list[tuple[str, bytes]]:
    """The record's signature header, or none when the settings do not ask for signed registrations."""
    variable = settings.registry.signing_key_env
    if variable is None:
        return []
    secret = secrets.get(variable)
    if secret is None:
        raise ConfigError(f"registry.signing_key_env is {variable}: set {variable} (the registry key) in this "
                          f"shell's environment or the secrets file to sign the record; the workers refuse unsigned ones")
    problem = key_problem(secret)
    if problem:
        raise ConfigError(f"{variable}: {problem}")
    return [(SIGNATURE_HEADER, sign(secret, key, value))]


async def _worker_view(url: str) -> dict[str, Any] | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.get(f"{url}/providers/") as response:
                if response.status != 200:
                    return None
                return await response.json()
    except (aiohttp.ClientError, TimeoutError):
        return None


async def _configured(settings: Settings) -> list[dict[str, Any]]:
    """Settings providers, overlaid with what llm.providers registers or removes."""
    configured = {name: {**spec.to_record(), "source": "settings", "available": None}
                  for name, spec in settings.provider_specs().items()}
    codec, rules = Codec(), admission_rules(settings)

    async def apply(key: bytes | None, value: bytes | None, offset: int) -> None:
        name = (key or b"").decode("utf-8", "replace")
        if value is None:
            if removal_problem(name, rules) is None:
                configured.pop(name, None)
            return
        try:
            spec = spec_from_record(codec.decode("ProviderConfig", value))
            check_admission(spec, rules)
        except Exception as exc:  # a refused record is shown as such, never applied
            if name not in configured or configured[name].get("source") != "settings":
                configured[name] = {"name": name, "kind": "?", "source": "topic", "available": False,
                                    "reason": f"refused: {exc}"}
            return
        configured[name] = {**spec.to_record(), "source": "topic", "available": None}

    reader = CompactedTopicReader(settings.kafka.bootstrap_servers, settings.topic(PROVIDERS))
    await reader.start()
    try:
        await reader.read_to_end(apply, timeout_s=10)
    finally:
        await reader.stop()
    return list(configured.values())
