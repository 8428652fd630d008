"""The router's pure logic: no Kafka, Faust, aiohttp, Redis or asyncio in here.

Each module holds one idea, takes time and settings as arguments, and is
tested in plain synchronous tests that run in milliseconds.
"""
