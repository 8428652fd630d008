"""Dispatch: a request run down its provider chain, and every guard the chain asks on the way.

* :mod:`.serving` — one request served: its route (:func:`llmrouter.core.routing.choose`), its dispatch, its
  result record; the user's quota;
* :mod:`.dispatcher` — the chain: attempts, retries, hedging, fallback; :mod:`.attempts` — its records and the
  guards' protocols; :mod:`.call` — one request's call and deadline, shared by its attempts;
* :mod:`.bulkhead` — at most N calls to a provider at once, the most urgent first;
* :mod:`.breakers` — this worker's breaker per provider; :mod:`.fleet` — the group's shared state;
* :mod:`.limits` — each provider's rate limit as token-bucket shares;
* :mod:`.budgets` and :mod:`.ledger_audit` — the cost ledger, its budgets and its audit events;
* :mod:`.flags` — the degradation flags and overrides every worker follows.

The decisions themselves (breaker, bucket, ledger, routing, retry) are pure and live in :mod:`llmrouter.core`.
"""
