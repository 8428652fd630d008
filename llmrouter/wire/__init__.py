"""The external contract on the wire: records, their rules, their bytes, and a small client of it.

* :mod:`.contract` — the request and result records and the rules a request must meet (pure);
* :mod:`.codec` — bytes <-> dicts: Avro single-object encoding or JSON;
* :mod:`.envelope` — where a request came from, carried from intake to the answer stage;
* :mod:`.dead_letters` — dead letters and the requests in them as bytes, for ``llmrouter dlq``;
* :mod:`.client` — produce requests and wait for their results (``llmrouter send``, the demo, tests).
"""
