"""``llmrouter loadtest``: the Kafka-based load test upstream users run against a router.

Pure parts, unit-tested without Kafka: :mod:`.schedule` (when to send: open
loop at a rate, closed loop at a concurrency), :mod:`.workload` (what to
send: a seeded mix of priorities, repeated prompts, simple and complex
tasks, streamed or not), :mod:`.stats` (what came back: latency per
priority and per path, errors, lost, duplicates) and :mod:`.display` (the
progress line and the table).

Kafka and processes: :mod:`.kafka_run` (one run: produce on schedule, read
``llm.results``, drain), :mod:`.echo` and :mod:`.baseline` (the bare
consume -> produce echo that gives every figure its limit), :mod:`.procstats`
(CPU and RSS of the worker under test), :mod:`.plot` (the PNG) and
:mod:`.command` (the subcommand and the report).
"""
