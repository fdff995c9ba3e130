"""Helpers of the local stacks: a temporary environment, and start-together / stop-together."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Self


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class Stack:
    """Processes started together and stopped together: ``with SomeStack() as stack:``.

    Subclasses implement ``start`` and register what must be stopped on ``self._stack``.
    """

    _stack: contextlib.ExitStack

    def start(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
