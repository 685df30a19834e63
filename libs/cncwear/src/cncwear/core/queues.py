"""Taking work off a queue in groups: a writer or a scorer that does at once for many items what it
would otherwise do for each (one commit, one model call)."""

from __future__ import annotations

import queue
from typing import Protocol, TypeVar

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _Source(Protocol[T_co]):
    def get(self) -> T_co: ...

    def get_nowait(self) -> T_co: ...


def take_waiting(source: _Source[T]) -> list[T]:
    """The next item, waiting for it, and every item already waiting behind it."""
    group = [source.get()]
    while True:
        try:
            group.append(source.get_nowait())
        except queue.Empty:
            return group
