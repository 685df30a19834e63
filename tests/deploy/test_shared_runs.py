"""Acceptance of labelled runs scaled out: two real ``cncwear-api`` processes share one store, the
embedded default (SQLite under a shared ``CNCWEAR_HOME``) and PostgreSQL (a throwaway database of
the local server). A run streamed to both in turn is one run; once either has answered, the rows
are in the store, even if that process is killed the instant after.

The champion is the session's trained registry of tests/api (its MLflow SQLite store, reached by
both processes); the rows are real, from the bundled experiments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.data.runs.store import RunStore
from tests.api.conftest import Registry, registry  # noqa: F401  (the session's trained registry)
from tests.api.labelled_runs import batches, records, run_label, run_rows, sent_equals_stored
from tests.helpers import TEST_REDIS_URL, postgres_database

from .conftest import BIN, Process, api_replicas, clean_environment

TOKEN = "shared-runs-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXPERIMENT = 8
"""Worn, 605 rows (412 of active cutting): seven batches of 100 rows, the last one short."""


@dataclass
class Replicas:
    urls: list[str]
    processes: list[Process]
    settings: Settings
    """What the replicas were configured with, for opening their store here."""

    def client(self, index: int) -> httpx.Client:
        return httpx.Client(base_url=self.urls[index], timeout=60.0, headers=AUTH)

    def kill(self, index: int) -> None:
        """SIGKILL: no shutdown, no flush, nothing the process could still do."""
        process = self.processes[index].popen
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def throwaway_database() -> Iterator[str]:
    """A PostgreSQL database of its own, dropped at the end: the SQLAlchemy URL of it."""
    with postgres_database("cncwear_runs") as url:
        yield url.replace("postgresql://", "postgresql+psycopg://")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def replicas(
    request: pytest.FixtureRequest,
    registry: Registry,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Replicas]:
    """Two API processes of one champion and one store: the default under their shared home, or
    the PostgreSQL database."""
    root = tmp_path_factory.mktemp(f"runs-{request.param}")
    home = root / "home"
    store_url = None
    if request.param == "postgresql":
        store_url = request.getfixturevalue("throwaway_database")
    tracking = f"sqlite:///{registry.home.resolve() / 'mlflow.db'}"
    settings = Settings(home=home, mlflow_tracking_uri=tracking, data_store_url=store_url)
    env = {
        **clean_environment(),
        "CNCWEAR_HOME": str(home),
        "MLFLOW_TRACKING_URI": tracking,
        "CNCWEAR_MODEL_NAME": registry.model_name,
        "CNCWEAR_API_TOKEN": TOKEN,
        "CNCWEAR_REDIS_URL": TEST_REDIS_URL,
        "CNCWEAR_RETRAIN_AFTER_RUNS": "0",  # the retrain through a worker is tested elsewhere
        **({"CNCWEAR_DATA_STORE_URL": store_url} if store_url else {}),
    }
    with api_replicas(env, root) as (urls, processes):
        yield Replicas(urls, processes, settings)


def send(client: httpx.Client, run: str, batch: Any) -> dict[str, Any]:
    response = client.post("/predict", json={"rows": records(batch), "run": run})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_run_streamed_to_both_replicas_in_turn_is_one_run_and_is_accepted_once_labelled(
    replicas: Replicas, dataset: Dataset
) -> None:
    run = f"mill-3/2026-12-01/job-{uuid.uuid4().hex[:8]}"
    rows = run_rows(dataset, EXPERIMENT)
    clients = [replicas.client(0), replicas.client(1)]
    try:
        answered = [
            send(clients[index % 2], run, batch) for index, batch in enumerate(batches(rows, 100))
        ]
        assert [a["run"]["run_rows"] for a in answered] == [
            min(100 * (i + 1), len(rows)) for i in range(len(answered))
        ]
        # Each replica sees the whole run, whichever served its rows.
        seen = [c.get(f"/runs/{run}").json() for c in clients]
        assert seen[0] == seen[1]
        assert seen[0]["rows"] == len(rows)

        label = clients[1].post(f"/runs/{run}/label", json=run_label(dataset, EXPERIMENT))
        assert label.status_code == 200, label.text
        record = label.json()
        assert record["state"] == "accepted", record["reasons"]
        assert clients[0].get(f"/runs/{run}").json()["state"] == "accepted"
        # A second label, through the other replica: 409.
        again = clients[0].post(f"/runs/{run}/label", json=run_label(dataset, EXPERIMENT))
        assert again.status_code == 409

        # Live performance of labelled runs is the shared store's: both replicas agree.
        shared = [c.get("/drift").json()["runs_performance"] for c in clients]
        assert shared[0] == shared[1]
        assert shared[0]["rows"] >= len(rows)
    finally:
        for client in clients:
            client.close()

    stored = RunStore(replicas.settings).rows(run)
    sent_equals_stored(rows, stored)
    probabilities = [p["probability_worn"] for a in answered for p in a["predictions"]]
    np.testing.assert_allclose(stored["probability_worn"], probabilities, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad_id", ["job 1842", "mill-3/../job-1842", "x" * 129])
def test_an_invalid_run_id_gets_a_422_naming_run(
    replicas: Replicas, dataset: Dataset, bad_id: str
) -> None:
    with replicas.client(0) as client:
        body = {"rows": records(run_rows(dataset, EXPERIMENT).head(2)), "run": bad_id}
        response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert [p["column"] for p in response.json()["problems"]] == ["run"]


def test_the_default_store_is_a_file_under_the_shared_home(replicas: Replicas) -> None:
    if replicas.settings.data_store_url is None:
        assert (Path(replicas.settings.home) / "runs.db").is_file()
    else:
        assert not (Path(replicas.settings.home) / "runs.db").exists()


def test_cncwear_runs_stream_sends_a_recorded_job_to_the_api_as_a_mill_would(
    replicas: Replicas, dataset: Dataset, tmp_path: Path
) -> None:
    """The README's first step of the shop's workflow: a job's file, streamed in 100-row batches
    through /predict under a run id by the real CLI, is the run the store holds."""
    rows = run_rows(dataset, EXPERIMENT)
    job = tmp_path / "experiment_08.csv"
    rows.to_csv(job, index=False)
    run = f"mill-5/job-{uuid.uuid4().hex[:8]}"
    env = {**clean_environment(), "CNCWEAR_API_TOKEN": TOKEN}
    stream = [str(BIN / "cncwear"), "runs", "stream", str(job), "--url", replicas.urls[0]]
    streamed = subprocess.run(
        [*stream, "--run", run], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert streamed.returncode == 0, streamed.stderr
    assert f"{len(rows)} rows sent, {len(rows)} in the run" in " ".join(streamed.stderr.split())
    sent_equals_stored(rows, RunStore(replicas.settings).rows(run))
    refused = subprocess.run(
        [*stream, "--run", "bad id"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 2 and "run id" in refused.stderr


def test_a_replica_killed_right_after_an_answer_lost_none_of_the_rows_it_answered(
    replicas: Replicas, dataset: Dataset
) -> None:
    """Runs last in the module: it kills the second replica."""
    run = f"mill-4/job-{uuid.uuid4().hex[:8]}"
    rows = run_rows(dataset, EXPERIMENT)
    parts = list(batches(rows, 100))
    with replicas.client(0) as first, replicas.client(1) as second:
        send(first, run, parts[0])
        send(second, run, parts[1])
        send(second, run, parts[2])
        replicas.kill(1)  # the instant its answer arrived
        answered = rows.iloc[: sum(len(p) for p in parts[:3])]
        sent_equals_stored(answered, RunStore(replicas.settings).rows(run))

        # The survivor carries on with the same run.
        for part in parts[3:]:
            send(first, run, part)
    sent_equals_stored(rows, RunStore(replicas.settings).rows(run))
