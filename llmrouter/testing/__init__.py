"""Running the router's own processes locally, for the tests, the benchmarks and the demo.

* :mod:`.worker_process` — a worker in a child process, and the environment it gets;
* :mod:`.ports` — the one free-port finder;
* :mod:`.settings_file` — the one writer of a settings file for a worker of its own;
* :mod:`.topics` — deleting the topics a run made.

Starting, waiting for and stopping a child is :class:`llmrouter.infra.process.Child`'s
(in ``infra/`` because ``llmrouter infra up`` needs it in production). The tests and
``bench/`` use these instead of their own copies.
"""
