"""POST /retrain on a running API, run by a real worker, and served without a restart."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cncwear.core.choices import CandidateName
from cncwear.core.schema import input_columns
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.jobs.queue import RETRAIN_QUEUE
from cncwear.training.retrain import retrain
from cncwear_api.core.settings import ApiSettings
from tests.api.conftest import serve
from tests.helpers import free_port

from .conftest import Worker, wait_for

TOKEN = "test-token-for-retrain"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def api_settings(settings: Settings, **changes: Any) -> ApiSettings:
    base = {**settings.model_dump(), "api_token": TOKEN, "poll_interval_seconds": 3600.0}
    return ApiSettings(**{**base, **changes})


def one_row(dataset: Dataset) -> dict[str, Any]:
    rows = dataset.active().rows[input_columns(use_identifying_columns=False)]
    return {"rows": rows.head(1).to_dict(orient="records")}


def served_version(client: httpx.Client, payload: dict[str, Any]) -> str | None:
    response = client.post("/predict", json=payload)
    return str(response.json()["model"]["version"]) if response.status_code == 200 else None


def test_a_retrain_queued_over_http_is_served_by_the_running_api_without_a_restart(
    queue_settings: Settings, start_worker: Callable[[Settings], Worker], dataset: Dataset
) -> None:
    seed = retrain(queue_settings, candidates=["baseline"], reason="weak seed champion")
    payload = one_row(dataset)
    # Polling is off (once an hour): only the trainer's announcement can make the server swap.
    with serve(api_settings(queue_settings)) as running, running.client() as client:
        running.wait_ready(seed.version)
        start_worker(queue_settings)
        body = {"reason": "over http", "candidates": [CandidateName.DECISION_TREE.value]}
        assert client.post("/retrain", json=body).status_code == 401
        answer = client.post("/retrain", json=body, headers=AUTH)
        assert answer.status_code == 202
        job_id = answer.json()["job_id"]
        assert answer.headers["Location"] == f"/jobs/{job_id}"
        again = client.post("/retrain", json=body, headers=AUTH)
        assert again.status_code == 202
        assert again.json() == {"job_id": job_id, "state": again.json()["state"], "created": False}

        states: set[str] = set()
        progress: set[tuple[str, float]] = set()

        def job_done() -> bool:
            job = client.get(f"/jobs/{job_id}").json()
            states.add(job["state"])
            if job["state"] == "running" and job["stage"] is not None:
                progress.add((job["stage"], job["percent"]))
            return job["state"] in {"succeeded", "failed"}

        wait_for(job_done, timeout=240, what="the job")
        job = client.get(f"/jobs/{job_id}").json()
        assert job["state"] == "succeeded", job["error"]
        assert "running" in states
        assert any(stage.startswith("training") and 0 < p < 100 for stage, p in progress)
        assert job["result"]["promoted"] is True
        new_version = job["result"]["version"]
        wait_for(
            lambda: served_version(client, payload) == new_version,
            timeout=60,
            what="the API to serve the new champion",
        )
        assert [j["job_id"] for j in client.get("/jobs").json()] == [job_id]


def test_a_data_folder_outside_the_data_roots_is_refused_by_name(
    queue_settings: Settings,
) -> None:
    with serve(api_settings(queue_settings)) as running, running.client() as client:
        answer = client.post("/retrain", json={"data_dir": "/etc"}, headers=AUTH)
        assert answer.status_code == 422
        assert answer.json()["problems"][0]["column"] == "data_dir"
        assert client.get("/jobs/" + "0" * 32).status_code == 404
        assert client.get("/jobs/not-an-id").status_code == 422


def redis_answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[bool], str]]:
    """A redis-server of the test's own, which the test can stop and start again."""
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []
    binary = shutil.which("redis-server")
    assert binary, "these tests need redis-server"

    def switch(on: bool) -> str:
        if on:
            processes.append(
                subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(tmp_path)],
                    stdout=subprocess.DEVNULL,
                )
            )  # fmt: skip
            wait_for(lambda: redis_answers(port), timeout=30, what="the test's redis-server")
        else:
            for process in processes:
                process.kill()
                process.wait()
        return f"redis://127.0.0.1:{port}/0"

    yield switch
    switch(False)


def test_without_redis_retrain_answers_503_predict_keeps_serving_and_both_recover(
    queue_settings: Settings, own_redis: Callable[[bool], str], dataset: Dataset
) -> None:
    url = own_redis(True)
    settings = queue_settings.model_copy(update={"redis_url": url})
    seed = retrain(settings, candidates=["baseline"], reason="champion to serve")
    payload = one_row(dataset)
    with serve(api_settings(settings)) as running, running.client() as client:
        running.wait_ready(seed.version)
        own_redis(False)
        answer = client.post("/retrain", json={}, headers=AUTH)
        assert answer.status_code == 503
        assert "queue is unavailable" in answer.json()["detail"]
        assert client.get("/jobs").status_code == 503
        assert served_version(client, payload) == seed.version
        assert client.get("/ready").status_code == 200
        own_redis(True)
        wait_for(
            lambda: client.post("/retrain", json={}, headers=AUTH).status_code == 202,
            timeout=60,
            what="/retrain to work again",
        )
        assert served_version(client, payload) == seed.version


def test_two_retrain_requests_at_once_over_http_make_one_job(queue_settings: Settings) -> None:
    answers: list[dict[str, Any]] = []
    with serve(api_settings(queue_settings)) as running:
        barrier = threading.Barrier(4)

        def request() -> None:
            with running.client() as client:
                barrier.wait()
                response = client.post("/retrain", json={"reason": "at once"}, headers=AUTH)
                assert response.status_code == 202
                answers.append(response.json())

        threads = [threading.Thread(target=request) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(answers) == 4
    assert len({a["job_id"] for a in answers}) == 1
    assert sum(a["created"] for a in answers) == 1
    assert redis.Redis.from_url(queue_settings.redis_url).llen(RETRAIN_QUEUE) == 1
