"""Acceptance of the scaled-out configuration: two API processes and two worker processes on one
Redis, the registry an MLflow tracking server on PostgreSQL reached over HTTP only.

One module-scoped stack serves both scenarios, and its first retrain (a baseline: seconds) is
shared, so the module trains twice in all.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from mlflow.tracking import MlflowClient

from cncwear.core.schema import input_columns
from cncwear.data.dataset import Dataset
from cncwear.jobs.store import JOBS_INDEX
from tests.helpers import free_port

from .conftest import BIN, Process, TrackingServer, clean_environment, start, wait_until

TOKEN = "deploy-test-token"
MODEL_NAME = "cncwear"
JOB_SECONDS = 600.0
"""Upper bound for one retrain on a busy machine; the tests wait for the job, not for a time."""


@dataclass
class Stack:
    apis: list[str]
    api_processes: list[Process]
    workers: list[Process]
    homes: list[Path]
    """CNCWEAR_HOME of every process: in this mode none of them may create it."""
    working_dirs: list[Path]
    tracking: TrackingServer
    redis_url: str

    def client(self, index: int) -> httpx.Client:
        return httpx.Client(
            base_url=self.apis[index],
            timeout=60.0,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )


def stack_environment(tracking: TrackingServer, redis_url: str, home: Path) -> dict[str, str]:
    """What deploy/docker-compose.yml gives the api and trainer services, pointed at the test's
    server, Redis and a home folder that must stay absent."""
    return {
        **clean_environment(),
        "MLFLOW_TRACKING_URI": tracking.url,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "CNCWEAR_REDIS_URL": redis_url,
        # The labelled runs in the registry's PostgreSQL database, beside MLflow's tables.
        "CNCWEAR_DATA_STORE_URL": tracking.backend_store_uri.replace(
            "postgresql://", "postgresql+psycopg://"
        ),
        "CNCWEAR_HOME": str(home),
        "CNCWEAR_MODEL_NAME": MODEL_NAME,
        "CNCWEAR_API_TOKEN": TOKEN,
        "CNCWEAR_BUDGET": "fast",
        "CNCWEAR_AUTOML_ENGINE": "flaml",
        "CNCWEAR_N_JOBS": "1",
    }


@pytest.fixture(scope="module")
def stack(
    tracking_server: TrackingServer, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    started: list[Process] = []
    homes: list[Path] = []
    working_dirs: list[Path] = []

    def launch(name: str, command: list[str], extra: dict[str, str] | None = None) -> Process:
        home, cwd = root / f"{name}-home", root / f"{name}-cwd"
        cwd.mkdir()
        homes.append(home)
        working_dirs.append(cwd)
        env = {**stack_environment(tracking_server, redis_url, home), **(extra or {})}
        process = start(command, env, root / f"{name}.log", name, cwd=cwd)
        started.append(process)
        return process

    try:
        workers = [
            launch(
                f"worker{index}",
                [str(BIN / "cncwear-trainer"), "worker", "--hostname", f"deploy{index}@%h"],
            )
            for index in range(2)
        ]
        ports = [free_port(), free_port()]
        apis = [
            launch(f"api{index}", [str(BIN / "cncwear-api")], {"CNCWEAR_PORT": str(port)})
            for index, port in enumerate(ports)
        ]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for process in workers:
            wait_until(lambda p=process: "ready." in p.output() or not p.running(), process.name)
            assert process.running(), process.output()
        for url, process in zip(urls, apis, strict=True):
            wait_until(lambda u=url, p=process: _answers(u) or not p.running(), process.name)
            assert process.running(), process.output()
        yield Stack(urls, apis, workers, homes, working_dirs, tracking_server, redis_url)
    finally:
        for process in started:
            process.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def queue_retrain(client: httpx.Client, candidates: list[str], reason: str) -> dict[str, Any]:
    response = client.post(
        "/retrain", json={"budget": "fast", "candidates": candidates, "reason": reason}
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def finished_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal job
        job = client.get(f"/jobs/{job_id}").json()
        return job["state"] in {"succeeded", "failed"}

    wait_until(finished, f"job {job_id}", JOB_SECONDS)
    assert job["state"] == "succeeded", job
    return job


def served_version(url: str) -> str | None:
    try:
        response = httpx.get(f"{url}/ready", timeout=5.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    version: str = response.json()["model"]["version"]
    return version


@pytest.fixture(scope="module")
def first_champion(stack: Stack) -> dict[str, Any]:
    """A first retrain queued over HTTP on an empty registry: its job once finished."""
    with stack.client(0) as client:
        queued = queue_retrain(client, ["baseline"], "first champion")
        assert queued["created"] is True
        job = finished_job(client, queued["job_id"])
    version: str = job["result"]["version"]
    for url in stack.apis:
        wait_until(lambda u=url: served_version(u) == version, f"{url} to serve {version}")
    return job


@pytest.fixture(scope="module")
def rows(dataset: Dataset) -> list[dict[str, Any]]:
    frame = dataset.rows.groupby("experiment").sample(n=2, random_state=3)
    frame = frame[input_columns(use_identifying_columns=False)].head(8)
    return [dict(zip(frame.columns, row, strict=True)) for row in frame.itertuples(index=False)]


def test_a_retrain_over_http_lands_in_the_postgresql_registry_and_its_artifact_store(
    stack: Stack, first_champion: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    result = first_champion["result"]
    assert result["promoted"] is True, result["decision"]
    version = result["version"]

    # The registry lives in PostgreSQL: the version and the alias are rows of the test database.
    with psycopg.connect(stack.tracking.backend_store_uri) as connection:
        versions = connection.execute(
            "SELECT version FROM model_versions WHERE name = %s", (MODEL_NAME,)
        ).fetchall()
        aliases = connection.execute(
            "SELECT alias, version FROM registered_model_aliases WHERE name = %s", (MODEL_NAME,)
        ).fetchall()
    assert [str(v) for (v,) in versions] == [version]
    assert [(a, str(v)) for a, v in aliases] == [("champion", version)]

    # The model's files went through the server into the folder it serves.
    client = MlflowClient(tracking_uri=stack.tracking.url, registry_uri=stack.tracking.url)
    model_version = client.get_model_version(MODEL_NAME, version)
    assert model_version.tags["cncwear.promotion.decision"] == "promoted"
    logged = list(stack.tracking.artifacts.rglob("MLmodel"))
    assert logged, "no MLflow model in the server's artifact folder"
    assert any((m.parent / "extra_files" / "reference_profile.json").is_file() for m in logged)

    # Both replicas serve it.
    for url in stack.apis:
        response = httpx.post(f"{url}/predict", json={"rows": rows}, timeout=60.0)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["version"] == version

    # Nothing was written on the processes' local disks: no home, nothing in their folders.
    assert [home for home in stack.homes if home.exists()] == []
    assert [str(p) for cwd in stack.working_dirs for p in cwd.iterdir()] == []


@dataclass
class LoadReport:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    versions: dict[str, set[str]] = field(default_factory=dict)

    def failures(self) -> int:
        return len(self.errors) + sum(n for s, n in self.statuses.items() if not 200 <= s < 300)


async def predict_until(
    url: str, rows: list[dict[str, Any]], stop: asyncio.Event, report: LoadReport
) -> None:
    """Ask ``url`` to predict, again and again, until ``stop``; every answer counted."""
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        while not stop.is_set():
            try:
                response = await client.post("/predict", json={"rows": rows})
            except httpx.HTTPError as error:
                report.errors.append(f"{url}: {type(error).__name__}: {error}")
                continue
            report.statuses[response.status_code] += 1
            if response.status_code == 200:
                version = response.json()["model"]["version"]
                report.versions.setdefault(url, set()).add(version)
            await asyncio.sleep(0.01)


async def switch_under_load(
    stack: Stack, rows: list[dict[str, Any]], new_version: list[str]
) -> tuple[LoadReport, dict[str, Any], dict[str, Any]]:
    report, stop = LoadReport(), asyncio.Event()
    load = [
        asyncio.create_task(predict_until(url, rows, stop, report))
        for url in stack.apis
        for _ in range(2)
    ]
    try:
        with stack.client(0) as first, stack.client(1) as second:
            body = {"budget": "fast", "candidates": ["decision_tree"], "reason": "scale-out test"}
            one, other = await asyncio.gather(
                asyncio.to_thread(first.post, "/retrain", json=body),
                asyncio.to_thread(second.post, "/retrain", json=body),
            )
            accepted = [one.json(), other.json()]
            job = await asyncio.to_thread(finished_job, first, accepted[0]["job_id"])
        version = job["result"]["version"]
        new_version.append(version)
        for url in stack.apis:
            await asyncio.to_thread(
                wait_until, lambda u=url: served_version(u) == version, f"{url} to switch"
            )
        await asyncio.sleep(2.0)  # and a little more load on the new champion
    finally:
        stop.set()
        await asyncio.gather(*load)
    return report, {"one": accepted[0], "other": accepted[1]}, job


def test_two_apis_and_two_workers_make_one_job_of_two_requests_and_switch_without_failures(
    stack: Stack, first_champion: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    old = first_champion["result"]["version"]
    new_version: list[str] = []
    report, accepted, job = asyncio.run(switch_under_load(stack, rows, new_version))

    # De-duplication: the two requests, one to each API, got the same job; one was created.
    assert accepted["one"]["job_id"] == accepted["other"]["job_id"]
    assert sorted([accepted["one"]["created"], accepted["other"]["created"]]) == [False, True]
    with stack.client(0) as client:
        made = [(j["request"]["reason"], j["state"]) for j in client.get("/jobs").json()]
    jobs = redis.Redis.from_url(stack.redis_url)
    assert jobs.zcard(JOBS_INDEX) == 2, made  # the first champion's job and this one
    jobs.close()

    # The new champion was promoted and both APIs switched to it under load, with no failure.
    (version,) = new_version
    assert job["result"]["promoted"] is True, job["result"]["decision"]
    assert version != old
    assert report.failures() == 0, (report.statuses, report.errors[:5])
    for url in stack.apis:
        assert report.versions[url] == {old, version}, report.versions

    # Both workers were up throughout and answer the containers' health check.
    for worker in stack.workers:
        assert worker.running(), worker.output()
    ping = subprocess.run(
        [str(BIN / "cncwear-trainer"), "ping"],
        env=stack_environment(stack.tracking, stack.redis_url, stack.homes[0]),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "deploy0@" in ping.stdout and "deploy1@" in ping.stdout
    assert [home for home in stack.homes if home.exists()] == []
