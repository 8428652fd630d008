"""``llmrouter send``: produce one request, wait for its result, print it."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from llmrouter.wire.client import RouterClient
from llmrouter.config.settings import Settings


async def send_one(settings: Settings, args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"prompt": args.prompt, "max_tokens": args.max_tokens,
                               "temperature": args.temperature, "task_type": args.task_type, "stream": args.stream}
    if args.request_id:
        request["request_id"] = args.request_id
    if args.providers:
        request["providers"] = args.providers

    def print_chunk(chunk: dict[str, Any]) -> None:
        if chunk["request_id"] == request_id:
            if chunk.get("restart"):
                sys.stdout.write(f"\n[the stream broke; answering again with {chunk['provider']}]\n")
            sys.stdout.write(chunk["delta"])
            sys.stdout.flush()

    async with RouterClient(settings) as client:
        request_id = await client.send(request, priority=args.priority, encoding=args.encoding)
        try:
            collected = await client.wait_for([request_id], timeout_s=args.timeout,
                                              on_chunk=print_chunk if args.stream else None)
        except TimeoutError:
            print(f"llmrouter: no result for {request_id} within {args.timeout:.0f}s; is a worker running "
                  f"(`llmrouter worker`)? The request stays queued in Kafka.", file=sys.stderr)
            return 1
    received = collected.results[request_id][0]
    record = received.record
    if args.stream:
        sys.stdout.write("\n")
    if args.json:
        print(json.dumps({**record, "replay": received.replay}, indent=2))
    else:
        print(describe(record, replay=received.replay, with_text=not args.stream))
    return 0 if record["status"] == "ok" else 1


def describe(record: dict[str, Any], *, replay: bool = False, with_text: bool = True) -> str:
    """A short human description of one result."""
    head = (f"[{record['status']}] {record['request_id']} priority={record['priority']} route={record['route']} "
            f"provider={record['provider'] or '-'} latency={record['total_latency_ms']:.0f}ms "
            f"tokens={record['prompt_tokens']}+{record['completion_tokens']}"
            + (" (replayed stored result)" if replay else ""))
    if record["status"] != "ok":
        return f"{head}\n  {record['error_code']}: {record['error_message']}"
    return f"{head}\n{record['text']}" if with_text else head
