"""Azure Functions v2 blueprints and the local devhost.

Each function translates its trigger (blob event, queue message, HTTP request)
into plain values and calls one use case of ``core.pipeline`` or ``migrate``.
"""
