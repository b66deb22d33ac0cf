"""The scheduler's web dashboard: workers, task stream, progress, activities, ``/metrics``.

:mod:`~distml.dashboard.server` serves it (from :mod:`~distml.dashboard.snapshot`s of the
scheduler's state), :mod:`~distml.dashboard.access` derives its token and links,
:mod:`~distml.dashboard.metrics` writes Prometheus text; the page itself is ``static/``.
"""
