"""The `llmrouter` command end to end: the installed console script, real
Kafka, Redis, RocksDB and ONNX Runtime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import free_port, isolated_settings, start_worker

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
LLMROUTER = shutil.which("llmrouter", path=str(Path(sys.executable).parent)) or "llmrouter"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120):
    base = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTER")}
    return subprocess.run([LLMROUTER, *args], env={**base, **(env or {})}, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli_worker(kafka_and_redis, tiny_model_dir, tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli")
    settings, path = isolated_settings(directory, tiny_model_dir)
    worker = start_worker(path, settings, directory / "worker.log")
    yield path
    worker.stop()


def test_send_prints_the_result_served_by_the_local_model(cli_worker):
    """`llmrouter send "prompt"` produces a request and prints its result: ok, local, tokens."""
    done = run("send", "What is Kafka?", "--priority", "critical", "--max-tokens", "8",
               env={"LLMROUTER_SETTINGS": str(cli_worker)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[ok] ") and "priority=critical route=local provider=local" in done.stdout


def test_send_streams_tokens_and_json_prints_the_whole_record(cli_worker):
    """--stream prints tokens as they come; --json prints the LLMResult record."""
    done = run("send", "stream please", "--stream", "--json", "--max-tokens", "6", "--request-id", "cli-stream-1",
               env={"LLMROUTER_SETTINGS": str(cli_worker)})
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout[done.stdout.index("{\n"):])
    assert record["request_id"] == "cli-stream-1" and record["status"] == "ok"
    assert done.stdout.startswith(record["text"])


def test_send_with_an_unknown_provider_prints_the_rejection(cli_worker):
    """--provider narrows the chain; a name no worker knows is rejected with the known ones listed."""
    done = run("send", "who?", "--provider", "nobody", env={"LLMROUTER_SETTINGS": str(cli_worker)})
    assert done.returncode == 1 and done.stdout.startswith("[rejected] ")
    assert "unknown_provider" in done.stdout and "'local'" in done.stdout


def test_sending_an_answered_request_id_again_says_it_was_replayed(cli_worker):
    """The same --request-id twice: the second answer is the stored result."""
    env = {"LLMROUTER_SETTINGS": str(cli_worker)}
    first = run("send", "once", "--request-id", "cli-dup-1", "--max-tokens", "4", env=env)
    second = run("send", "once", "--request-id", "cli-dup-1", "--max-tokens", "4", env=env)
    assert "replayed" not in first.stdout and "(replayed stored result)" in second.stdout


def test_providers_list_without_a_worker_shows_the_configuration(kafka_and_redis, tiny_model_dir, tmp_path):
    """No worker answers: the settings' providers and llm.providers' registrations are listed as
    configured, and stderr says that live figures need a worker."""
    settings, path = isolated_settings(tmp_path, tiny_model_dir)
    env = {"LLMROUTER_SETTINGS": str(path)}
    registered = run("providers", "register", "mine", "--kind", "openai_compatible", "--endpoint",
                     "http://127.0.0.1:9/v1", "--model", "m", "--api-key-env", "", env=env)
    assert registered.returncode == 0, registered.stderr
    done = run("providers", "list", env=env)
    assert done.returncode == 0 and "no worker answered" in done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert list(rows) == ["local", "huggingface", "together", "openai", "anthropic", "mine"]
    assert "topic" in rows["mine"] and "configured" in rows["mine"] and "emergency only" in rows["openai"]


def test_model_build_tiny_and_quantize_make_a_loadable_int8_model(tmp_path):
    """`model build-tiny` then `model quantize` leave model.onnx, config.json and tokenizer.json."""
    built = run("model", "build-tiny", str(tmp_path / "m"))
    assert built.returncode == 0, built.stderr
    quantized = run("model", "quantize", str(tmp_path / "m"), str(tmp_path / "m-int8"))
    assert quantized.returncode == 0, quantized.stderr
    assert {p.name for p in (tmp_path / "m-int8").iterdir()} >= {"model.onnx", "config.json", "tokenizer.json"}


def test_invalid_settings_exit_2_with_the_problem(tmp_path):
    """A bad settings file stops every command with exit code 2 and a sentence."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("worker:\n  web_port: -1\n")
    done = run("--settings", str(bad), "infra", "status")
    assert done.returncode == 2 and "worker.web_port" in done.stderr


def test_the_demo_serves_a_mixed_workload_through_kafka(kafka_and_redis, tmp_path):
    """`llmrouter demo` in an empty folder: builds the tiny int8 model, starts the simulator and a
    worker, and every request comes back, the duplicate re-emitted and the garbage dead-lettered; in the
    cloud scene a failing Hugging Face fails over to Together and a run-time provider serves."""
    name = f"demo-{uuid.uuid4().hex[:10]}"  # not tmp_path.name: it repeats across runs, and Redis keeps answers
    env = {"LLMROUTER__KAFKA__TOPIC_PREFIX": f"{name}.", "LLMROUTER__WORKER__APP_ID": name,
           "LLMROUTER__WORKER__WEB_PORT": str(free_port())}
    done = run("demo", "--requests", "8", env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8/9 ok" in done.stdout  # the ninth, over max_tokens, is rejected on purpose
    assert "stored result re-emitted, no model call" in done.stdout
    assert "dead letter from" in done.stdout and "undecodable" in done.stdout
    # the local model answered each of the 8 (a prompt repeated may come from the cache, its answer still local's)
    assert done.stdout.count(" local  local ") + done.stdout.count(" cache  local ") == 8
    assert "cache l1 (huggingface's answer, no call)" in done.stdout
    assert "huggingface provider_unavailable x4 -> together ok" in done.stdout
    assert "huggingface rate_limited -> huggingface ok" in done.stdout
    assert "demo-vllm ok" in done.stdout
