"""Running the router's own processes locally, for the tests, the benchmarks and the demo.

One child-process helper, one free port finder, one settings-file writer: the
tests and ``bench/`` use these instead of their own copies.
"""
