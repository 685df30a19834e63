"""Plain helpers shared by the test packages (fixtures live in the conftest files)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import redis

TEST_REDIS_URL = os.environ.get("CNCWEAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
"""The Redis database the tests may empty at will (never the default database 0)."""


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def emptied_redis(url: str = TEST_REDIS_URL) -> Iterator[str]:
    """The test Redis database, emptied before and after use."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
