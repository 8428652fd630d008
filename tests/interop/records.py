"""One sample record of every contract schema, as the router's code would build it.

Samples set the fields without defaults and some with, including bytes that
are not text, an empty and a non-empty map, nested records and a negative
number, so a decoder that differs from ours on any of them shows it.
"""

from __future__ import annotations

from typing import Any

SAMPLES: dict[str, dict[str, Any]] = {
    "LLMRequest": {
        "request_id": "req-1", "prompt": "Say hello in French", "max_tokens": 12, "temperature": 0.5,
        "messages": [{"role": "user", "content": "héllo"}], "providers": ["local", "together"],
        "metadata": {"tenant": "acme"}, "created_at_ms": 1_764_500_000_000, "seed": -7,
    },
    "LLMResult": {
        "request_id": "req-1", "status": "ok", "text": "Bonjour", "provider": "local", "model": "tiny",
        "route": "local", "prompt_tokens": 5, "completion_tokens": 3, "cost_usd": 0.25,
        "attempts": [{"provider": "local", "outcome": "ok", "latency_ms": 12.5}],
        "total_latency_ms": 20.0, "completed_at_ms": 1_764_500_000_123,
    },
    "StreamChunk": {"request_id": "req-1", "seq": 3, "delta": " monde", "final": True, "provider": "local"},
    "DeadLetter": {
        "request_id": None, "source_topic": "llm.requests.normal", "source_partition": 1, "source_offset": 42,
        "original_key": b"k\x00", "original_value": b"\xc3\x01\xff\x00\"quoted\"\n",
        "headers": [{"key": "trace", "value": b"\x01\x02"}, {"key": "empty", "value": None}],
        "reason": "value is neither Avro single-object encoding nor a JSON object", "error_code": "undecodable",
        "attempts": 1, "failed_at_ms": 1_764_500_000_456,
    },
    "Alert": {"rule": "error_rate", "state": "firing", "value": 0.3, "threshold": 0.1, "window_s": 60,
              "subject": "together", "message": "error rate 30%", "at_ms": 1_764_500_000_789},
    "Event": {"entity": "provider:together", "kind": "breaker_opened", "data": {"failures": "5", "window_s": "60"},
              "at_ms": 1_764_500_001_000},
    "ProviderConfig": {"name": "together", "kind": "together", "endpoint": "https://api.together.xyz",
                       "api_key_env": "TOGETHER_API_KEY", "models": ["meta-llama/Llama-3-8b"],
                       "price_input_per_1k_usd": 0.0002, "enabled": False},
}
