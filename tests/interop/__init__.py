"""Implementations of the contract that are not ours, and what they are checked with:
sample records of every schema (``records.py``).
"""
