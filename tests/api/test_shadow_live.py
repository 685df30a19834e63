"""The challenger in shadow on live traffic: it scores the rows ``/predict`` stored in a run off the
request path, keeps its probabilities with the run, and is promoted or rejected once labelled runs
say so. Real servers on copies of the session's registry (the champion a copy of the baseline, the
challenger a copy of the forest, or the other way round), each with a store of its own."""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from cncwear.data.dataset import Dataset
from cncwear.data.runs import tables
from cncwear.data.runs.store import RunStore
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.serving.holder import ModelHolder, ServedModel
from cncwear_api.serving.shadow import ShadowScorer

from .conftest import WAIT_SECONDS, Registry, RunningServer, scrape, serve, wait_until
from .labelled_runs import run_rows
from .shadow_servers import (
    discordant_experiments,
    label_runs,
    new_run,
    predicted,
    shadow_server,
    stream,
)

WORN, UNWORN = 8, 4
"""Bundled experiments, worn and unworn (605 and 532 rows)."""


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


def loaded_roles(metrics: dict[str, float]) -> set[tuple[str, str]]:
    """(role, version) of each ``cncwear_model_info`` series at 1."""
    found = set()
    for key, value in metrics.items():
        if key.startswith("cncwear_model_info[") and value == 1:
            labels = dict(ast.literal_eval(key.removeprefix("cncwear_model_info")))
            found.add((labels["role"], labels["version"]))
    return found


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
    with shadow_server(registry, tmp_path) as (running, store, champion, forest):
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
    assert loaded_roles(metrics) == {("champion", champion), ("challenger", forest)}
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


def test_a_hung_scoring_worker_fills_its_queue_and_predict_answers_as_ever(
    registry: Registry, dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = run_rows(dataset, UNWORN).head(100)
    run = new_run()
    release = threading.Event()
    score = ShadowScorer._score

    def hung(scorer: ShadowScorer, group: list[Any]) -> list[str]:
        release.wait(timeout=WAIT_SECONDS)
        return score(scorer, group)

    monkeypatch.setattr(ShadowScorer, "_score", hung)
    with shadow_server(registry, tmp_path, shadow_queue_rows=30) as (running, _, _, forest):
        with without_shadow(running, tmp_path) as plain:
            plain_answers = stream(plain, run, rows, size=10)
        answers = stream(running, run, rows, size=10)
        answered_while_hung = not release.is_set()
        metrics = scrape(running)
        release.set()
        runs = RunStore(running.settings)
        wait_until(
            lambda: np.isfinite(challenger_rows(runs, run, forest)).sum() == 30,
            "the queued rows to be scored once the worker is free",
        )
    assert answered_while_hung
    assert answers == plain_answers
    assert shadow_rows(metrics, "dropped") == len(rows) - 30  # the bound's worth was queued
    assert shadow_rows(metrics, "scored") == 0


def test_a_killed_scoring_worker_never_fails_predict_and_is_started_again(
    registry: Registry, dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = run_rows(dataset, WORN).head(50)
    run = new_run()
    score = ShadowScorer._score
    killed: list[str] = []

    def killing_once(scorer: ShadowScorer, group: list[Any]) -> list[str]:
        if not killed:
            killed.append(threading.current_thread().name)
            raise SystemExit  # ends the worker thread, as a kill of it would
        return score(scorer, group)

    monkeypatch.setattr(ShadowScorer, "_score", killing_once)
    with shadow_server(registry, tmp_path) as (running, _, _, forest):
        with without_shadow(running, tmp_path) as plain:
            plain_answers = stream(plain, run, rows, size=10)
        first = stream(running, run, rows.head(10), size=10)
        wait_until(lambda: bool(killed), "the worker to be killed")
        rest = stream(running, run, rows.iloc[10:], size=10, first_batch=1)
        runs = RunStore(running.settings)
        wait_until(
            lambda: np.isfinite(challenger_rows(runs, run, forest)).sum() == len(rows) - 10,
            "the worker started again to score the rows after the kill",
        )
        metrics = scrape(running)
    assert first + rest == plain_answers
    assert shadow_rows(metrics, "failed") == 10  # the batch in hand when it was killed
    assert shadow_rows(metrics, "scored") == len(rows) - 10
    assert shadow_rows(metrics, "dropped") == 0


# -- the decision on labelled runs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def discordant(registry: Registry, dataset: Dataset) -> tuple[int, int]:
    return discordant_experiments(registry, dataset)


SHADOW_TEST = {"shadow_min_runs": 2, "shadow_alpha": 0.3}
"""Three runs won and none lost make p = 0.25: significant at 0.3."""


def test_a_better_challenger_is_promoted_once_on_labelled_runs_and_then_served(
    registry: Registry, dataset: Dataset, tmp_path: Path, discordant: tuple[int, int]
) -> None:
    both, wins = discordant
    with shadow_server(registry, tmp_path, **SHADOW_TEST) as (running, store, champion, forest):
        label_runs(running, dataset, [both, wins, wins])
        still = store.challenger_version()
        assert still is not None and str(still.version) == forest  # p = 0.5 so far
        with running.client() as client:
            evidence = client.get("/model/challenger").json()["evidence"]
        assert evidence["outcome"] == "inconclusive"
        assert (evidence["runs"], evidence["challenger_wins"], evidence["champion_wins"]) == (
            3,
            2,
            0,
        )
        assert evidence["p_value"] == pytest.approx(0.5)
        assert any("1 more run(s) the challenger gets right" in n for n in evidence["needs"])
        held = store.champion_version()
        assert held is not None and str(held.version) == champion
        label_runs(running, dataset, [wins])
        moved = store.champion_version()
        assert moved is not None and str(moved.version) == forest
        assert store.challenger_version() is None
        running.wait_ready(forest)  # the swap, without a restart
        label_runs(running, dataset, [wins])  # nothing in shadow: nothing more to decide
        metrics = scrape(running)
    decisions = {k: v for k, v in metrics.items() if k.startswith("cncwear_shadow_decisions_total")}
    assert decisions == {
        "cncwear_shadow_decisions_total[('decision', 'inconclusive')]": 3.0,
        "cncwear_shadow_decisions_total[('decision', 'promote')]": 1.0,
    }
    tags = store.version_tags(forest)
    assert (tags[Tag.SHADOW_STATE], tags[Tag.SHADOW_DECIDED_BY]) == ("promoted", "automatic")
    assert "the challenger wins" in tags[Tag.SHADOW_REASON]
    assert (
        metrics["cncwear_live_accuracy[('role', 'challenger')]"]
        > metrics["cncwear_live_accuracy[('role', 'champion')]"]
    )
    assert 0.0 <= metrics["cncwear_shadow_agreement[]"] < 1.0


def test_a_worse_challenger_is_rejected_and_the_champion_stays(
    registry: Registry, dataset: Dataset, tmp_path: Path, discordant: tuple[int, int]
) -> None:
    both, wins = discordant
    with shadow_server(registry, tmp_path, challenger_is_forest=False, **SHADOW_TEST) as (
        running,
        store,
        champion,
        baseline,
    ):
        label_runs(running, dataset, [both, wins, wins, wins])
        with running.client() as client:
            wait_until(
                lambda: client.get("/model/challenger").status_code == 404,
                "the challenger to be gone",
            )
            serving = client.get("/model").json()["version"]
        metrics = scrape(running)
    assert store.challenger_version() is None
    kept = store.champion_version()
    assert kept is not None and str(kept.version) == champion == serving
    tags = store.version_tags(baseline)
    assert (tags[Tag.SHADOW_STATE], tags[Tag.SHADOW_DECIDED_BY]) == ("rejected", "automatic")
    assert "the challenger loses" in tags[Tag.SHADOW_REASON]
    assert metrics["cncwear_shadow_decisions_total[('decision', 'reject')]"] == 1.0


def test_a_challenger_past_its_max_age_is_rejected_without_a_label(
    registry: Registry, tmp_path: Path
) -> None:
    with shadow_server(
        registry,
        tmp_path,
        wait_loaded=False,  # it may be rejected as soon as it is loaded
        shadow_max_age_seconds=0.5,
        shadow_check_interval_seconds=0.2,
    ) as (_, store, champion, _challenger):
        wait_until(lambda: store.challenger_version() is None, "the stale challenger's rejection")
    kept = store.champion_version()
    assert kept is not None and str(kept.version) == champion
