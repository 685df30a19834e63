"""Reliability and security proof: the API under fuzzing, hostile input and faults.

The trained registry of tests/api (trained once per session, whichever package asks first) and its
real-server helper are reused; faults that need their own Redis, MLflow server or disk get them
from the test that breaks them, never the shared ones.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.api.conftest import (  # noqa: F401  (fixtures shared with tests/api)
    RunningServer,
    real_rows,
    registry,
    serve,
)
from tests.helpers import free_port

TOKEN = "reliability-test-token-7f3a9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class PrivateRedis:
    """A redis-server of the test's own on a free port, which the test may kill and restart.
    With ``persist`` it keeps an append-only file, as a production Redis would."""

    def __init__(self, folder: Path, *, persist: bool) -> None:
        binary = shutil.which("redis-server")
        assert binary, "these tests need redis-server (scripts/test-packages.apt)"
        self.binary, self.folder, self.persist = binary, folder, persist
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        appendonly = "yes" if self.persist else "no"
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", appendonly, "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        client.close()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    started: list[PrivateRedis] = []

    def make(*, persist: bool = False) -> PrivateRedis:
        folder = tmp_path / f"redis-{len(started)}"
        folder.mkdir()
        instance = PrivateRedis(folder, persist=persist)
        instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        instance.kill()


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
