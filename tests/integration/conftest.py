"""The module-scoped worker of the dataflow tests (helpers live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import isolated_settings, start_worker


@pytest.fixture(scope="module")
def worker(kafka_and_redis: None, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One running worker (tiny fp32 model) shared by the tests of a module."""
    directory = tmp_path_factory.mktemp("worker")
    settings, path = isolated_settings(directory, tiny_model_dir)
    proc = start_worker(path, settings, directory / "worker.log")
    yield proc
    proc.stop()
    print(proc.log_tail(20))
