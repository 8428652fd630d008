"""The ``llmrouter`` command line: :mod:`.cli` builds the parser, and each verb is one module here.

``worker`` (and ``--processes N``), ``send``, ``demo``, ``providers``, ``flags``
and ``override``, ``breakers``/``limits``/``ledger`` (:mod:`.tables`), ``dlq``,
``events``, ``cache``, ``simulate`` and ``loadtest``. A command parses its flags,
calls the parts that do the work and prints; no behaviour lives here.
"""
