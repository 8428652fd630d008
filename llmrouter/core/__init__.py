"""The router's pure logic: no Kafka, Faust, aiohttp, Redis or asyncio in here.

Each module holds one idea, takes time and settings as arguments, and is
tested in plain synchronous tests that run in milliseconds.

A module here imports only other core modules, :mod:`llmrouter.errors` and
the standard library (never asyncio, sockets or threads), and reads no clock;
``tests/unit/test_layout.py`` checks both. What needs a codec or the settings
is handed in (a parsed number, a :class:`~llmrouter.core.dlq.LetterFormat`).
"""
