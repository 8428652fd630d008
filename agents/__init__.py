"""The agents: one file per pipeline stage.

This folder is installed as ``llmrouter.agents`` (``package-dir`` in
pyproject.toml maps it into the llmrouter namespace): import it as
``llmrouter.agents``; there is no ``llmrouter/agents/`` folder.

* :mod:`.intake` — decodes and validates requests, forwards each to the accepted topic of its priority;
* :mod:`.answer` — one result per request, with no second provider call for one already answered;
* :mod:`.provider_state` — the owner of each provider folds every worker's reports into one breaker;
* :mod:`.windows` — the owner of each subject adds up every worker's counts and judges the alert rules.
"""
