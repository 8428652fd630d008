"""The echo baseline's process: a bare aiokafka consume -> produce loop, bytes in, the same bytes out.

It is what the router would cost if it did nothing: each request value is
produced again as it is, with its key, to the sink topic, by a producer
configured like the router's (acks from every in-sync replica, idempotent)
that batches (``linger_ms``). It reads without a consumer group (every
partition assigned, from the end) and commits nothing, so it is a floor the
router cannot beat, not a rival. It runs in a process of its own so it
shares no event loop (and no interpreter lock) with the load generator.

Run by :mod:`llmrouter.loadtest.baseline`::

    python -m llmrouter.loadtest.echo --bootstrap 127.0.0.1:9092 --source T1 --sink T2 [--linger-ms 2]

It prints ``ready`` once it reads from the end of every partition of the
source, and stops on SIGTERM or SIGINT after the sends under way are
delivered. A failed delivery stops it with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

READY = "ready"


async def echo(bootstrap: str, source: str, sink: str, *, linger_ms: float, stop: asyncio.Event) -> None:
    """Produce every record that arrives on ``source`` to ``sink`` until ``stop`` is set."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=linger_ms)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await producer.start()
    try:
        await consumer.start()
        partitions = [TopicPartition(source, p) for p in sorted(await producer.partitions_for(source))]
        await producer.partitions_for(sink)
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        print(READY, flush=True)
        failed: list[BaseException] = []

        def delivered(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is not None:
                failed.append(future.exception())

        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                for message in messages:
                    (await producer.send(sink, message.value, key=message.key)).add_done_callback(delivered)
            if failed:
                raise failed[0]
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Echo a topic's records to another topic, bytes as they are.")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--linger-ms", type=float, default=2.0)
    args = parser.parse_args(argv)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await echo(args.bootstrap, args.source, args.sink, linger_ms=args.linger_ms, stop=stop)

    try:
        asyncio.run(run())
    except Exception as exc:  # the parent reads this line in the echo's output
        print(f"echo failed: {exc!r}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
