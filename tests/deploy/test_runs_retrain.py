"""Acceptance of the whole loop of labelled runs, on real processes: two ``cncwear-api`` replicas
and a ``cncwear-trainer`` worker share one home (the embedded store and registry). A run streamed to
both replicas in turn is labelled and accepted; the retrain it queues through the worker learns
from it (the run is in the MLflow run's dataset input and the version's tags), and both replicas
serve the new champion.

The first champion is the deliberately weak baseline, so that the retrain on the run is promoted
and the serving of a new champion is shown, not hoped for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from tests.api.labelled_runs import batches, records, run_label, run_rows

from .conftest import BIN, api_replicas, stack_environment, start

TOKEN = "runs-retrain-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXPERIMENT = 8
RUN = "mill-3/2026-12-02/job-8"
RETRAIN_SECONDS = 900.0


@dataclass
class Loop:
    home: Path
    urls: list[str]

    def client(self, index: int) -> httpx.Client:
        return httpx.Client(base_url=self.urls[index], timeout=60.0, headers=AUTH)


@pytest.fixture
def loop(tmp_path: Path, redis_url: str) -> Iterator[Loop]:
    home = tmp_path / "home"
    env = stack_environment(
        home,
        redis_url,
        TOKEN,
        CNCWEAR_RETRAIN_AFTER_RUNS="1",
        CNCWEAR_POLL_INTERVAL_SECONDS="2",
    )
    weak = start(
        [str(BIN / "cncwear"), "train", "-c", "baseline"], env, tmp_path / "train.log", "train"
    )
    assert weak.popen.wait(timeout=RETRAIN_SECONDS) == 0, weak.output()
    worker = start([str(BIN / "cncwear-trainer"), "worker"], env, tmp_path / "worker.log", "worker")
    try:
        with api_replicas(env, tmp_path) as (urls, _):
            yield Loop(home, urls)
    finally:
        worker.stop()


def test_a_run_streamed_to_two_replicas_and_labelled_trains_the_champion_both_then_serve(
    loop: Loop, dataset: Dataset
) -> None:
    rows = run_rows(dataset, EXPERIMENT)
    with loop.client(0) as first, loop.client(1) as second:
        weak = first.get("/model").json()["version"]
        for index, batch in enumerate(batches(rows, 100)):
            client = (first, second)[index % 2]
            answer = client.post("/predict", json={"rows": records(batch), "run": RUN})
            assert answer.status_code == 200, answer.text

        labelled = second.post(f"/runs/{RUN}/label", json=run_label(dataset, EXPERIMENT))
        assert labelled.status_code == 200, labelled.text
        record = labelled.json()
        assert (record["state"], record["rows"]) == ("accepted", len(rows)), record["reasons"]
        (version_id,) = record["dataset_versions"]

        job = wait_for_job(first)
        assert job["state"] == "succeeded", job
        assert job["request"]["reason"] == "1 new labelled run"
        result = job["result"]
        assert (result["data_version"], result["promoted"]) == (version_id, True), result

        models = ModelStore(Settings(home=loop.home))
        inputs = models.run(result["run_id"]).inputs.dataset_inputs
        assert [i.dataset.digest for i in inputs] == [version_id]
        assert RUN in inputs[0].dataset.source
        assert models.version_tags(result["version"])[Tag.DATA_VERSION] == version_id

        for client in (first, second):
            served = wait_for_champion(client, result["version"])
            assert served["version"] != weak
            assert served["data_version"] == version_id


def wait_for_job(client: httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + RETRAIN_SECONDS
    while time.monotonic() < deadline:
        jobs = client.get("/jobs").json()
        if jobs and jobs[0]["state"] in ("succeeded", "failed"):
            job: dict[str, Any] = jobs[0]
            return job
        time.sleep(1.0)
    raise AssertionError(f"no retrain finished in {RETRAIN_SECONDS:.0f} s: {jobs}")


def wait_for_champion(client: httpx.Client, version: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120.0
    model: dict[str, Any] = {}
    while time.monotonic() < deadline:
        model = client.get("/model").json()
        if model.get("version") == version:
            return model
        time.sleep(0.5)
    raise AssertionError(f"{client.base_url} still serves {model.get('version')}, not {version}")
