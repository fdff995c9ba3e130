"""The local stack: real emulators (and, later, function hosts) on 127.0.0.1.

Used by the test fixtures, ``make emulators`` and ``make demo``.
"""
