"""``allotment sidecar``: the request path on loopback, for apps in any language.

A small HTTP server in front of the Python SDK's ``Client``: checks and entitlement lists
answered from its cache (kept current by the change feed), usage reports kept in its durable
buffer until delivered, reservations passed through, and ``/livez``, ``/readyz`` and
``/metrics``. It has no authentication of its own (``app.py``).
"""

from allotment.sidecar.app import create_app

__all__ = ["create_app"]
