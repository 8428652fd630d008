"""The ``llmrouter`` command.

::

    llmrouter infra up|down|status     local Kafka (KRaft, jars from Maven Central) + Redis
    llmrouter topics create [--apply-configs]   create the router's topics, check those that exist
    llmrouter worker [--processes N]   run a router worker (Faust), or N of them in one group
    llmrouter send "prompt"            produce one request, print its result
    llmrouter providers list|register|remove   the provider registry (llm.providers)
    llmrouter flags list|set NAME on|off       degradation flags on every worker (llm.router.flags)
    llmrouter override disable|force|clear P   a provider skipped, or tried first, on every worker
    llmrouter breakers|limits|ledger [--all]   a worker's breakers, rate-limit shares, spend and budgets
    llmrouter dlq list|replay          dead letters on llm.dlq: show them, produce them again
    llmrouter events replay --table ledger   the ledger rebuilt from llm.events, held against the live one
    llmrouter cache clear|stats        invalidate cached answers everywhere; a worker's cache figures
    llmrouter simulate                 a local stand-in for the cloud APIs (OpenAI, HF, Anthropic)
    llmrouter loadtest --rate R|--concurrency N   load the router through Kafka; latency, loss, duplicates
    llmrouter demo                     infra + worker + a sample workload, with a summary
    llmrouter model build-tiny DIR     a small random-weight model of TinyLlama's shape
    llmrouter model quantize SRC DST   int8 dynamic quantization (ONNX Runtime)

Every command takes ``--settings FILE`` (or ``$LLMROUTER_SETTINGS``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from llmrouter.wire.contract import PRIORITIES
from llmrouter.errors import ConfigError, RouterError
from llmrouter.config.settings import Settings, load_settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.settings)
        return args.func(args, settings) or 0
    except ConfigError as exc:
        print(f"llmrouter: {exc}", file=sys.stderr)
        return 2
    except RouterError as exc:
        print(f"llmrouter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmrouter", description="Kafka-native LLM request router.")
    parser.add_argument("--settings", help="settings YAML (default: $LLMROUTER_SETTINGS, else built-in defaults)")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    infra = sub.add_parser("infra", help="local Kafka + Redis").add_subparsers(required=True, metavar="ACTION")
    p = infra.add_parser("up", help="start Kafka and Redis unless they already answer")
    p.set_defaults(func=_infra_up)
    p = infra.add_parser("down", help="stop what `infra up` started")
    p.add_argument("--wipe", action="store_true", help="also delete their data")
    p.set_defaults(func=_infra_down)
    infra.add_parser("status", help="show both services").set_defaults(func=_infra_status)

    topics = sub.add_parser("topics", help="topic administration").add_subparsers(required=True, metavar="ACTION")
    p = topics.add_parser("create", help="create missing topics, check those that exist")
    p.add_argument("--apply-configs", action="store_true",
                   help="also set retention, cleanup policy and min ISR of existing topics to the settings")
    p.set_defaults(func=_topics_create)

    p = sub.add_parser("worker", help="run a router worker")
    p.add_argument("--loglevel", default="info", choices=["crit", "error", "warn", "info", "debug"])
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="run N worker processes in the group (one per core); web ports and data dirs numbered")
    p.set_defaults(func=_worker)

    p = sub.add_parser("send", help="send one request and print its result")
    p.add_argument("prompt")
    p.add_argument("--priority", default="normal", choices=PRIORITIES)
    p.add_argument("--stream", action="store_true", help="print tokens as they arrive")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--task-type", default="general")
    p.add_argument("--provider", action="append", dest="providers", metavar="NAME",
                   help="only this provider (repeat for an allow-list in chain order)")
    p.add_argument("--request-id", help="idempotency key (default: a new UUID)")
    p.add_argument("--encoding", default="avro", choices=["avro", "json"])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the result")
    p.add_argument("--json", action="store_true", help="print the whole result record as JSON")
    p.set_defaults(func=_send)

    from llmrouter.commands import cache as cachecmd, dlq as dlqcmd, events as eventscmd, flags as flagscmd
    from llmrouter.commands import providers as providerscmd, tables as tablescmd
    from llmrouter.commands import loadtest
    from llmrouter.commands.simulate import add_simulate_parser

    providerscmd.add_parser(sub)
    flagscmd.add_parser(sub)
    tablescmd.add_parser(sub)
    dlqcmd.add_parser(sub)
    eventscmd.add_parser(sub)
    cachecmd.add_parser(sub)
    add_simulate_parser(sub)
    loadtest.add_parser(sub)

    p = sub.add_parser("demo", help="run the main job: infra, a worker and a sample workload")
    p.add_argument("--requests", type=int, default=12, help="size of the sample workload")
    p.add_argument("--keep-worker", action="store_true", help="leave the worker running afterwards")
    p.set_defaults(func=_demo)

    model = sub.add_parser("model", help="local model tools").add_subparsers(required=True, metavar="ACTION")
    p = model.add_parser("build-tiny", help="build a small random-weight model of TinyLlama's shape")
    p.add_argument("dir", type=Path)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.set_defaults(func=_model_build_tiny)
    p = model.add_parser("quantize", help="int8 dynamic quantization of an exported model")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.set_defaults(func=_model_quantize)
    return parser


def _infra_up(args: argparse.Namespace, settings: Settings) -> None:
    from llmrouter import infra

    infra.up(bootstrap=settings.kafka.bootstrap_servers, redis_url=settings.redis.url)


def _infra_down(args: argparse.Namespace, settings: Settings) -> None:
    from llmrouter import infra

    infra.down(wipe=args.wipe)


def _infra_status(args: argparse.Namespace, settings: Settings) -> None:
    from llmrouter import infra

    print(json.dumps(infra.status(bootstrap=settings.kafka.bootstrap_servers, redis_url=settings.redis.url),
                     indent=2))


def _topics_create(args: argparse.Namespace, settings: Settings) -> None:
    from llmrouter.runtime.kafka_admin import ensure_topics
    from llmrouter.runtime.topic_plan import APPLY_COMMAND

    report = asyncio.run(ensure_topics(settings, apply_configs=args.apply_configs))
    print(f"created {len(report.created)} topic(s): {', '.join(report.created)}" if report.created
          else "no topic to create")
    for topic, configs in report.altered.items():
        print(f"altered {topic}: {', '.join(f'{k}={v}' for k, v in configs.items())}")
    for drift in report.drift:
        print(f"warning: {drift}", file=sys.stderr)
    if report.drift:
        print(f"warning: left as they are; run `{APPLY_COMMAND}` to set them", file=sys.stderr)


def _worker(args: argparse.Namespace, settings: Settings) -> int | None:
    import logging

    import faust
    import structlog

    from llmrouter.app import build_router
    from llmrouter.runtime.kafka_admin import ensure_topics
    from llmrouter.observability.logs import configure_logging, json_formatter, worker_logging_config
    from llmrouter.runtime.new_group import seed_new_group
    from llmrouter.runtime.topic_plan import APPLY_COMMAND

    if args.processes < 1:
        raise ConfigError(f"--processes must be at least 1, not {args.processes}")
    # Our own lines logged before faust starts (faust replaces this handler with its own).
    before_faust = logging.StreamHandler()
    before_faust.addFilter(logging.Filter("llmrouter"))
    before_faust.setFormatter(json_formatter() if settings.worker.log_format == "json" else
                              logging.Formatter("[%(asctime)s] [%(process)s] [%(levelname)s] %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[before_faust])
    configure_logging(settings.worker.log_format)
    log = structlog.get_logger("llmrouter.topics")
    report = asyncio.run(ensure_topics(settings))  # a topic that does not fit stops here: ConfigError, exit 2
    for drift in report.drift:
        log.warning("topic_config_differs", topic=drift.topic, config=drift.key, actual=drift.actual,
                    expected=drift.expected, fix=f"run `{APPLY_COMMAND}`")
    asyncio.run(seed_new_group(settings))  # a new group starts at recent requests, not a week of stale ones
    if args.processes > 1:
        from llmrouter.commands.worker import supervise

        return supervise(settings, args.processes, settings_path=args.settings, loglevel=args.loglevel)
    router = build_router(settings)
    faust.Worker(router.app, loglevel=args.loglevel, quiet=True,
                 logging_config=worker_logging_config(settings.worker.log_format)).execute_from_commandline()


def _send(args: argparse.Namespace, settings: Settings) -> int:
    from llmrouter.commands.send import send_one

    return asyncio.run(send_one(settings, args))


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from llmrouter.commands.demo import run_demo

    return run_demo(settings, requests=args.requests, keep_worker=args.keep_worker)


def _model_build_tiny(args: argparse.Namespace, settings: Settings) -> None:
    from llmrouter.localmodel.build_tiny import build_tiny_model

    path = build_tiny_model(args.dir, layers=args.layers, hidden=args.hidden)
    print(f"tiny model written to {path}")


def _model_quantize(args: argparse.Namespace, settings: Settings) -> None:
    from llmrouter.localmodel.quantize import quantize_model

    path = quantize_model(args.src, args.dst)
    print(f"int8 model written to {path}")


if __name__ == "__main__":
    sys.exit(main())
