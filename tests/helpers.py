"""Plain helpers shared by the test packages (fixtures live in the conftest files)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from psycopg import sql

from cncwear.monitoring.window import MonitorConfig

POSTGRES_URL = os.environ.get("CNCWEAR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
"""A PostgreSQL server where the tests may create and drop databases of their own."""
TEST_REDIS_URL = os.environ.get("CNCWEAR_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
"""The Redis database the tests may empty at will (never the default database 0)."""


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_database(prefix: str = "cncwear_test") -> Iterator[str]:
    """A PostgreSQL database of its own on the test server (its URL), dropped at the end."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"{POSTGRES_URL}/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


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


def window_config(*, window_rows: int, min_rows: int, feedback_min_rows: int) -> MonitorConfig:
    """A drift window's configuration with the API's defaults for the figures a test leaves."""
    return MonitorConfig(
        window_rows=window_rows,
        min_rows=min_rows,
        drift_share=0.5,
        ks_alpha=0.05,
        wasserstein_threshold=0.1,
        feedback_window_rows=2000,
        feedback_min_rows=feedback_min_rows,
    )
