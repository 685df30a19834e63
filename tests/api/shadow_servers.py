"""A real server with a challenger in shadow, and labelled runs streamed through it: shared by the
challenger tests (tests/api/test_challenger.py, test_shadow_live.py) and the dashboard's
champion-versus-challenger view (tests/dashboard). The champion is a copy of the session's
baseline and the challenger a copy of its forest, or the other way round, in a registered model of
their own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from pydantic import SecretStr

from cncwear.core.schema import LABELS, THRESHOLD
from cncwear.data.dataset import Dataset
from cncwear.monitoring.shadow import majority_verdict
from cncwear.registry.challenger import install_challenger
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.batch import to_batch
from cncwear_api.schemas.predict import PredictRequest
from cncwear_api.serving.holder import ServedModel, load_served_model
from tests.helpers import TEST_REDIS_URL

from .conftest import Registry, RunningServer, serve, wait_until
from .labelled_runs import batches, records, run_label, run_rows

TOKEN = "shadow-live-token-7c1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def shadow_server(
    registry: Registry,
    folder: Path | None = None,
    *,
    policy: str = "shadow",
    challenger_is_forest: bool = True,
    with_challenger: bool = True,
    wait_loaded: bool = True,
    **changes: Any,
) -> Iterator[tuple[RunningServer, ModelStore, str, str]]:
    """A server under ``policy`` whose champion is the baseline copy and whose challenger the
    forest copy, or the other way round; under the shadow policy it waits until the challenger is
    loaded, unless told otherwise. Runs go to a store in ``folder`` when given (else the session
    home's). Yields the server, the model's store, the champion and the challenger."""
    baseline, forest = registry.fallback_version, registry.compiled_version
    first, second = (baseline, forest) if challenger_is_forest else (forest, baseline)
    name, (champion, challenger) = registry.new_model(first, second, champion=first)
    if folder is not None:
        changes.setdefault("data_store_url", f"sqlite:///{folder / 'runs.db'}")
    settings = registry.settings(
        model_name=name,
        api_token=SecretStr(TOKEN),
        redis_url=TEST_REDIS_URL,
        retrain_after_runs=0,
        promotion_policy=policy,
        **changes,
    )
    store = ModelStore(settings)
    for version in (champion, challenger):  # moves here must not tag the session's retrain runs
        store.client.delete_model_version_tag(name, version, Tag.RETRAIN_RUN_ID)
    if with_challenger:
        with store.promotion_lock():
            install_challenger(store, challenger, "challenger: awaiting live evidence; a test")
    with serve(settings) as running:
        running.wait_ready(champion)
        if with_challenger and wait_loaded and policy == "shadow":
            with running.client() as client:
                wait_until(lambda: challenger_loaded(client), "the challenger to be loaded")
        yield running, store, champion, challenger


def challenger_loaded(client: httpx.Client) -> bool:
    return bool(client.get("/model/challenger").json().get("loaded"))


def new_run() -> str:
    return f"mill-1/shadow/job-{uuid.uuid4().hex[:8]}"


def stream(
    running: RunningServer, run: str, rows: pd.DataFrame, size: int = 100, first_batch: int = 0
) -> list[bytes]:
    """The rows sent through /predict with the run id, ``size`` at a time, each request with a
    request id of its own made from the run and the batch (counted from ``first_batch``, when the
    run goes on from an earlier call); the answers' bytes."""
    answers = []
    with running.client() as client:
        for i, batch in enumerate(batches(rows, size), start=first_batch):
            response = client.post(
                "/predict",
                json={"rows": records(batch), "run": run},
                headers={"X-Request-ID": f"{run.replace('/', '-')}-{i}"},
            )
            assert response.status_code == 200, response.text
            answers.append(response.content)
    return answers


def label_runs(
    running: RunningServer, dataset: Dataset, experiments: list[int]
) -> list[dict[str, Any]]:
    """Each experiment streamed as a run of its own, then labelled; the label answers."""
    answers = []
    for experiment in experiments:
        run = new_run()
        stream(running, run, run_rows(dataset, experiment), size=200)
        with running.client() as client:
            response = client.post(
                f"/runs/{run}/label", json=run_label(dataset, experiment), headers=AUTH
            )
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def predicted(served: ServedModel, rows: pd.DataFrame) -> np.ndarray:
    return served.probability_worn(
        to_batch(PredictRequest(rows=records(rows)), served.input_columns)
    )


def verdict(served: ServedModel, rows: pd.DataFrame) -> int | None:
    return majority_verdict((predicted(served, rows) >= THRESHOLD).astype(int))


def discordant_experiments(registry: Registry, dataset: Dataset) -> tuple[int, int]:
    """Two experiments the forest gets right, by majority of its rows' predictions: one the
    baseline (which knows only the class balance) gets right too, one it gets wrong."""
    store = registry.store()
    forest, baseline = (
        load_served_model(store, store.client.get_model_version(registry.model_name, v))
        for v in (registry.compiled_version, registry.fallback_version)
    )
    both = wins = None
    for experiment in sorted({int(e) for e in dataset.rows["experiment"]}):
        rows = run_rows(dataset, experiment)
        label = LABELS[run_label(dataset, experiment)["tool_condition"]]
        if verdict(forest, rows) != label:
            continue
        if verdict(baseline, rows) == label:
            both = both if both is not None else experiment
        else:
            wins = wins if wins is not None else experiment
    assert both is not None and wins is not None, "no such pair of experiments"
    return both, wins
