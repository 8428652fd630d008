"""The worker's web views (Faust's web server): what operators read and change.

* :mod:`.operator` — ``/health/``, ``/metrics`` and the table views;
* :mod:`.admin` — ``/admin/flags/``, behind the admin key;
* :mod:`.alerts` — ``/windows/`` and ``/alerts/``;
* :mod:`.dashboard` — ``/dashboard/``, live charts.
"""
