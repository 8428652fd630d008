"""A simulated cloud LLM provider for load-testing routing (``llmrouter simulate``).

One port speaks three vendors' real wire formats -- OpenAI chat completions,
the Hugging Face Inference API and Anthropic messages -- with configurable
latency, fault rates, 429 bursts, scripted outcomes and a control API under
``/_sim/``. User documentation: docs/simulator.md.

Modules: :mod:`.profile` (pure decisions: the profile, outcome choice,
latency, reply text), :mod:`.formats` (pure wire formats), :mod:`.server`
(the aiohttp server); the ``simulate`` subcommand is
:mod:`llmrouter.commands.simulate`.
"""

from __future__ import annotations

from llmrouter.simulator.profile import SimProfile
from llmrouter.simulator.server import Simulator, run_simulator

__all__ = ["SimProfile", "Simulator", "run_simulator"]
