"""Google Cloud Functions entry points (functions-framework).

Each one translates its trigger (a CloudEvent or an HTTP request) into plain
values and calls one use case of ``core.pipeline`` or ``migrate``.
"""
