"""The ``llmrouter simulate`` subcommand: flags and profile file to a running simulator.

The command line (:mod:`llmrouter.commands.cli`) adds it with :func:`add_simulate_parser`; the
subcommand's ``func(args, settings)`` builds the :class:`SimProfile` (the
``--profile`` file first, then each flag given) and serves until Ctrl-C.
API keys are read from the environment variable named by
``--api-key-env``, never from the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from llmrouter.errors import ConfigError
from llmrouter.simulator.profile import SimProfile

__all__ = ["add_simulate_parser", "profile_from_args"]

# flag dest -> (type, help); each is a profile key of the same name
_PROFILE_FLAGS: dict[str, tuple[type, str]] = {
    "latency_ms": (float, "median milliseconds before the first byte (default 20)"),
    "latency_sigma": (float, "lognormal shape of the latency; 0 = always the median (default 0)"),
    "token_delay_ms": (float, "milliseconds between stream events (default 2)"),
    "error_rate": (float, "chance, 0..1, that a request takes a fault from fault_weights (default 0)"),
    "retry_after_s": (float, "seconds a 429 asks the client to wait (default 1)"),
    "hang_s": (float, "seconds a `timeout` outcome sends nothing (default 60)"),
    "burst_every_s": (float, "start a 429 burst every this many seconds; 0 = no bursts (default 0)"),
    "burst_length_s": (float, "seconds each 429 burst lasts (default 0)"),
    "context_tokens": (int, "prompt words above which a request gets context_too_long (default 4096)"),
    "reply_words": (int, "words per reply when below max_tokens; 0 = max_tokens (default 0)"),
    "seed": (int, "seed of the outcome draws, latencies and reply text (default 0)"),
}


def add_simulate_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``simulate`` to an argparse subparsers object; its ``func`` is ``(args, settings) -> int``."""
    parser = sub.add_parser(
        "simulate", help="run the provider simulator (OpenAI, Hugging Face, Anthropic wire formats)",
        description="Serve simulated OpenAI, Hugging Face and Anthropic APIs on one port, with "
                    "configurable latency and faults, for load-testing routing. See docs/simulator.md.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port to listen on; 0 picks a free one (default 8900)")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="YAML or JSON file of profile keys")
    parser.add_argument("--api-key-env", metavar="NAME",
                        help="require the API key held in environment variable NAME (default: accept any key)")
    for dest, (kind, text) in _PROFILE_FLAGS.items():
        parser.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=kind, default=None, help=text,
                            metavar=_metavar(dest))
    parser.set_defaults(func=_simulate)
    return parser


def _metavar(dest: str) -> str:
    for suffix, metavar in (("_ms", "MS"), ("_s", "SECONDS"), ("_rate", "P"), ("_sigma", "SIGMA")):
        if dest.endswith(suffix):
            return metavar
    return "N"


def profile_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> SimProfile:
    """The profile file's keys, overridden by the flags given; ConfigError on anything invalid."""
    values: dict[str, Any] = {}
    if args.profile is not None:
        values.update(_read_profile_file(args.profile))
    for dest in _PROFILE_FLAGS:
        if getattr(args, dest) is not None:
            values[dest] = getattr(args, dest)
    if args.api_key_env:
        environ = os.environ if env is None else env
        key = environ.get(args.api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env names {args.api_key_env!r}, but that environment variable is not set.")
        values["api_key"] = key
    return SimProfile.from_mapping(values)


def _read_profile_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"Cannot read the profile file {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"The profile file {path} must hold a mapping of profile keys.")
    return data


def _simulate(args: argparse.Namespace, settings: Any) -> int:
    from llmrouter.simulator.server import run_simulator

    profile = profile_from_args(args)
    try:
        return run_simulator(args.host, args.port, profile)
    except OSError as exc:
        print(f"llmrouter: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
