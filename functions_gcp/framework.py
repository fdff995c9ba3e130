"""functions-framework's decorators, applied only where the framework runs (it is imported before our code).

Under ``functions-framework`` (and its ``create_app`` test client) the framework
is already loaded when it imports ``main.py``, so the decorators register each
function's signature type as usual. Elsewhere (a plain ``import main``) the
functions stay plain functions and nobody pays the 0.3 s import of the
framework and Flask that a cold start would otherwise count twice.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def cloud_event(function: F) -> F:
    """``@functions_framework.cloud_event`` when the framework is running."""
    framework = sys.modules.get("functions_framework")
    return framework.cloud_event(function) if framework else function  # type: ignore[no-any-return]


def http(function: F) -> F:
    """``@functions_framework.http`` when the framework is running."""
    framework = sys.modules.get("functions_framework")
    return framework.http(function) if framework else function  # type: ignore[no-any-return]
