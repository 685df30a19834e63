"""The scaled-out configuration of deploy/docker-compose.yml, without containers: an MLflow tracking
server process on a PostgreSQL database of the local server, with its artifacts in a folder it
serves, and cncwear API and worker processes that reach it over HTTP only.

No Docker engine runs here, so the containers themselves are not started; the processes run the
same console scripts with the same environment variables the compose file gives them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import SUITE_AUTOML_ENGINE
from tests.helpers import emptied_redis, free_port
from tests.helpers import postgres_database as temporary_postgres_database

BIN = Path(sys.executable).parent
START_SECONDS = 300.0
"""Upper bound for a process to start on a busy machine (the API imports MLflow, scikit-learn)."""


def wait_until(condition: Callable[[], object], what: str, timeout: float = START_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Process:
    """A process started by a test, its output in a log file, stopped with its process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, 15)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, 9)
                self.popen.wait(timeout=30)


def start(
    command: list[str], env: dict[str, str], log: Path, name: str, cwd: Path | None = None
) -> Process:
    with log.open("wb") as out:
        popen = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name=name, popen=popen, log=log)


@contextmanager
def api_replicas(
    env: dict[str, str], logs: Path, count: int = 2
) -> Iterator[tuple[list[str], list[Process]]]:
    """``count`` ``cncwear-api`` processes of one environment, each on a free port: their URLs and
    processes once every one serves its champion; all stopped at the end."""
    ports = [free_port() for _ in range(count)]
    processes = [
        start(
            [str(BIN / "cncwear-api")],
            {**env, "CNCWEAR_PORT": str(port)},
            logs / f"api{index}.log",
            f"api{index}",
        )
        for index, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process in zip(urls, processes, strict=True):
            wait_until(
                lambda u=url, p=process: answers(f"{u}/ready") or not p.running(),
                f"{process.name} to serve the champion",
            )
            assert process.running(), process.output()
        yield urls, processes
    finally:
        for process in processes:
            process.stop()


def stack_environment(home: Path, redis_url: str, token: str, **settings: str) -> dict[str, str]:
    """The environment of a one-home stack's processes (API replicas, workers, ``cncwear
    train``): the fast budget on one core, and ``settings`` (``CNCWEAR_*`` names) on top."""
    return {
        **clean_environment(),
        "CNCWEAR_HOME": str(home),
        "CNCWEAR_REDIS_URL": redis_url,
        "CNCWEAR_API_TOKEN": token,
        "CNCWEAR_BUDGET": "fast",
        "CNCWEAR_N_JOBS": "1",
        **settings,
    }


def clean_environment() -> dict[str, str]:
    """The test process's environment without any cncwear or MLflow setting of the developer;
    workers started with it serve no metrics endpoint (no fixed port in tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))}
    return {**env, "CNCWEAR_WORKER_METRICS_PORT": "0", "CNCWEAR_AUTOML_ENGINE": SUITE_AUTOML_ENGINE}


@pytest.fixture(scope="package")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of its own on the local server, dropped at the end."""
    with temporary_postgres_database("cncwear_deploy") as url:
        yield url


@dataclass(frozen=True)
class TrackingServer:
    url: str
    backend_store_uri: str
    artifacts: Path


@pytest.fixture(scope="package")
def tracking_server(
    postgres_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TrackingServer]:
    """``mlflow server`` on the PostgreSQL database, serving artifacts from a folder (the compose
    stack's server does the same with a MinIO bucket as the destination)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    artifacts = folder / "artifacts"
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "2",
        "--backend-store-uri", postgres_database.replace("postgresql://", "postgresql+psycopg://"),
        "--artifacts-destination", str(artifacts),
        "--serve-artifacts",
    ]  # fmt: skip
    env = {
        **clean_environment(),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # MLflow's background job runner (GenAI evaluation jobs) is not used by cncwear.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    server = start(command, env, folder / "server.log", "mlflow")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(f"{url}/health") or not server.running(), "the MLflow server")
        assert server.running(), server.output()
        yield TrackingServer(url=url, backend_store_uri=postgres_database, artifacts=artifacts)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """The test Redis database, emptied before and after each module: one module's jobs, queued
    tasks and triggers (a retrain its labelled run queued) are not another's."""
    with emptied_redis() as url:
        yield url
