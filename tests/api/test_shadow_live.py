"""The challenger in shadow on live traffic: it scores the rows ``/predict`` stored in a run off the
request path, keeps its probabilities with the run, and is promoted or rejected once labelled runs
say so. Real servers on copies of the session's registry (the champion a copy of the baseline, the
challenger a copy of the forest, or the other way round), each with a store of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cncwear.data.dataset import Dataset
from cncwear.data.runs import tables
from cncwear.data.runs.store import RunStore
from cncwear.registry.challenger import install_challenger
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.batch import to_batch
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.schemas.predict import PredictRequest
from cncwear_api.serving.holder import ModelHolder, ServedModel
from tests.helpers import TEST_REDIS_URL

from .conftest import Registry, RunningServer, serve, wait_until
from .labelled_runs import batches, records, run_rows

TOKEN = "shadow-live-token-7c1e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORN, UNWORN = 8, 4
"""Bundled experiments, worn and unworn (605 and 532 rows)."""


@contextmanager
def shadow_server(
    registry: Registry,
    folder: Path,
    *,
    challenger_is_forest: bool = True,
    with_challenger: bool = True,
    wait_loaded: bool = True,
    **changes: Any,
) -> Iterator[tuple[RunningServer, ModelStore, str, str]]:
    """A server under the shadow policy whose champion is the baseline copy and whose challenger
    (loaded) the forest copy, or the other way round. Yields the server, the model's store, the
    champion and the challenger."""
    baseline, forest = registry.fallback_version, registry.compiled_version
    first, second = (baseline, forest) if challenger_is_forest else (forest, baseline)
    name, (champion, challenger) = registry.new_model(first, second, champion=first)
    settings = registry.settings(
        model_name=name,
        api_token=SecretStr(TOKEN),
        data_store_url=f"sqlite:///{folder / 'runs.db'}",
        redis_url=TEST_REDIS_URL,
        retrain_after_runs=0,
        promotion_policy="shadow",
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
        if with_challenger and wait_loaded:
            with running.client() as client:
                wait_until(
                    lambda: bool(client.get("/model/challenger").json().get("loaded")),
                    "the challenger to be loaded",
                )
        yield running, store, champion, challenger


def new_run() -> str:
    return f"mill-1/shadow/job-{uuid.uuid4().hex[:8]}"


def stream(running: RunningServer, run: str, rows: pd.DataFrame, size: int = 100) -> list[bytes]:
    """The rows sent through /predict with the run id, ``size`` at a time, each request with a
    request id of its own made from the run and the batch; the answers' bytes."""
    answers = []
    with running.client() as client:
        for i, batch in enumerate(batches(rows, size)):
            response = client.post(
                "/predict",
                json={"rows": records(batch), "run": run},
                headers={"X-Request-ID": f"{run.replace('/', '-')}-{i}"},
            )
            assert response.status_code == 200, response.text
            answers.append(response.content)
    return answers


def challenger_rows(store: RunStore, run: str, version: str) -> np.ndarray:
    """The challenger's probabilities stored for the run, by row (NaN: not scored)."""
    with store.engine.connect() as db:
        parts = db.execute(
            sa.select(tables.shadow).where(
                tables.shadow.c.run == run, tables.shadow.c.model_version == version
            )
        ).all()
    width = max((p.first_row + p.rows for p in parts), default=0)
    out = np.full(width, np.nan)
    for p in parts:
        out[p.first_row : p.first_row + p.rows] = np.frombuffer(p.probability, np.float64)
    return out


def loaded(store: ModelStore, version: str) -> ServedModel:
    """``version`` loaded as the API loads a challenger."""
    store.set_challenger(version)
    served = ModelHolder(store, ApiMetrics(), role="challenger").refresh()
    assert served is not None and served.version == version
    return served


def predicted(served: ServedModel, rows: pd.DataFrame) -> np.ndarray:
    return served.probability_worn(
        to_batch(PredictRequest(rows=records(rows)), served.input_columns)
    )


def scrape(running: RunningServer) -> dict[str, float]:
    with running.client() as client:
        text = client.get("/metrics").text
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def shadow_rows(metrics: dict[str, float], outcome: str) -> float:
    return metrics.get(f"cncwear_shadow_rows_total[('outcome', '{outcome}')]", 0.0)


@contextmanager
def without_shadow(running: RunningServer, folder: Path) -> Iterator[RunningServer]:
    """A server of the same champion, offline, with no challenger and a store of its own: what
    ``/predict`` answers without a shadow."""
    settings = running.settings.model_copy(
        update={
            "promotion_policy": "offline",
            "data_store_url": f"sqlite:///{folder / 'plain.db'}",
        }
    )
    with serve(settings) as plain:
        plain.wait_ready()
        yield plain


def test_the_challenger_scores_a_runs_rows_off_the_path_and_keeps_its_own_predictions(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    rows = run_rows(dataset, WORN).head(250)
    run = new_run()
    with shadow_server(registry, tmp_path) as (running, store, _, forest):
        with without_shadow(running, tmp_path) as plain:
            plain_answers = stream(plain, run, rows)
        answers = stream(running, run, rows)
        runs = RunStore(running.settings)
        wait_until(
            lambda: np.isfinite(challenger_rows(runs, run, forest)).sum() == len(rows),
            "the challenger to score every row of the run",
        )
        metrics = scrape(running)
        stored = challenger_rows(runs, run, forest)
        own = predicted(loaded(store, forest), rows)
    np.testing.assert_allclose(stored, own, rtol=0, atol=1e-12)
    assert shadow_rows(metrics, "scored") == len(rows)
    assert shadow_rows(metrics, "dropped") == 0
    assert answers == plain_answers  # the champion's answers, byte for byte


def test_a_full_queue_drops_the_rows_for_the_challenger_counts_them_and_answers_as_ever(
    registry: Registry, dataset: Dataset, tmp_path: Path
) -> None:
    rows = run_rows(dataset, UNWORN).head(60)
    run = new_run()
    with shadow_server(registry, tmp_path, shadow_queue_rows=5) as (running, _, _, forest):
        with without_shadow(running, tmp_path) as plain:
            plain_answers = stream(plain, run, rows, size=10)
        answers = stream(running, run, rows, size=10)  # every batch over the bound
        metrics = scrape(running)
        stored = challenger_rows(RunStore(running.settings), run, forest)
    assert shadow_rows(metrics, "dropped") == len(rows)
    assert shadow_rows(metrics, "scored") == 0
    assert stored.size == 0
    assert answers == plain_answers
