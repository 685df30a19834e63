"""``/model/challenger``: the version in shadow, and an operator's promotion or rejection of it
(token-protected, recorded as manual decisions). A real server on the session's registry, each
scenario on a registered model of its own whose champion is a copy of the baseline and whose
challenger is a copy of the forest."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest

from cncwear.registry.challenger import install_challenger
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.serving.holder import ModelHolder

from .conftest import Registry, RunningServer, records, wait_until
from .shadow_servers import AUTH, challenger_loaded, shadow_server


def offline(
    registry: Registry, **changes: Any
) -> AbstractContextManager[tuple[RunningServer, ModelStore, str, str]]:
    """:func:`shadow_server` under the offline policy: the routes answer the same, and nothing
    scores in shadow, so nothing moves on its own."""
    return shadow_server(registry, policy="offline", **changes)


def test_the_challenger_is_shown_with_its_age_and_state(registry: Registry) -> None:
    with offline(registry) as (running, _, champion, forest), running.client() as client:
        response = client.get("/model/challenger")
    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["alias"], body["champion_version"]) == (
        forest,
        "challenger",
        champion,
    )
    assert body["state"] == "challenger: awaiting live evidence"
    assert body["age_seconds"] >= 0 and body["since"] is not None
    assert body["holdout"]["accuracy"] > 0.5


def test_promoting_the_challenger_needs_the_token(registry: Registry) -> None:
    with offline(registry) as (running, store, champion, forest), running.client() as client:
        assert client.post("/model/challenger/promote").status_code == 401
        wrong = client.post("/model/challenger/promote", headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401
        assert client.post("/model/challenger/reject").status_code == 401
    still = store.challenger_version()
    assert still is not None and str(still.version) == forest
    kept = store.champion_version()
    assert kept is not None and str(kept.version) == champion


def test_a_manual_promotion_makes_the_challenger_the_served_champion(registry: Registry) -> None:
    with offline(registry) as (running, store, champion, forest), running.client() as client:
        response = client.post(
            "/model/challenger/promote", headers=AUTH, json={"reason": "seen enough runs"}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {
            "decision": "promoted",
            "version": forest,
            "previous_champion": champion,
            "reason": "seen enough runs",
            "decided_by": "manual",
            "serving_version": forest,
        }
        assert client.get("/model").json()["version"] == forest
        gone = client.get("/model/challenger")
    assert gone.status_code == 404
    assert "nothing is in shadow" in gone.json()["detail"]
    tags = store.version_tags(forest)
    assert (tags[Tag.SHADOW_STATE], tags[Tag.SHADOW_DECIDED_BY]) == ("promoted", "manual")


def test_a_manual_rejection_keeps_the_champion_and_records_the_reason(registry: Registry) -> None:
    with offline(registry) as (running, store, champion, forest), running.client() as client:
        response = client.post(
            "/model/challenger/reject", headers=AUTH, json={"reason": "worn on every run"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["decision"], body["version"], body["serving_version"]) == (
            "rejected",
            forest,
            champion,
        )
        assert client.get("/model").json()["version"] == champion
    assert store.challenger_version() is None
    tags = store.version_tags(forest)
    assert tags[Tag.SHADOW_STATE] == "rejected"
    assert tags[Tag.SHADOW_REASON] == "worn on every run"


def test_without_a_body_the_reason_says_it_was_done_by_hand(registry: Registry) -> None:
    with offline(registry) as (running, store, _, forest), running.client() as client:
        response = client.post("/model/challenger/reject", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["reason"] == "rejected by hand"
    assert store.version_tags(forest)[Tag.SHADOW_REASON] == "rejected by hand"


def test_with_no_challenger_every_challenger_route_answers_404_saying_so(
    registry: Registry,
) -> None:
    with (
        offline(registry, with_challenger=False) as (running, _, champion, _forest),
        running.client() as client,
    ):
        answers = [
            client.get("/model/challenger"),
            client.post("/model/challenger/promote", headers=AUTH),
            client.post("/model/challenger/reject", headers=AUTH),
        ]
        assert client.get("/model").json()["version"] == champion
    for response in answers:
        assert response.status_code == 404
        assert "holds the alias 'challenger': nothing is in shadow" in response.json()["detail"]


def test_a_bad_reason_is_a_422_naming_the_field(registry: Registry) -> None:
    with offline(registry) as (running, store, _, forest), running.client() as client:
        empty = client.post("/model/challenger/promote", headers=AUTH, json={"reason": ""})
        unknown = client.post("/model/challenger/reject", headers=AUTH, json={"why": "x"})
    assert empty.status_code == unknown.status_code == 422
    assert [p["column"] for p in empty.json()["problems"]] == ["reason"]
    assert "why" in [p["column"] for p in unknown.json()["problems"]]
    still = store.challenger_version()
    assert still is not None and str(still.version) == forest


def test_under_offline_this_server_loads_no_challenger(registry: Registry) -> None:
    with offline(registry) as (running, _, _, _), running.client() as client:
        body = client.get("/model/challenger").json()
        card = client.get("/model").json()
    assert body["loaded"] is None and body["load_failures"] == 0
    assert card["challenger"] is None


@pytest.mark.parametrize("policy", ["offline", "shadow"])
def test_the_model_card_names_the_promotion_policy_the_server_runs_under(
    registry: Registry, policy: str
) -> None:
    with (
        shadow_server(registry, policy=policy, with_challenger=False) as (running, *_),
        running.client() as client,
    ):
        assert client.get("/model").json()["promotion_policy"] == policy


def test_under_shadow_the_challenger_is_loaded_beside_the_champion_which_answers(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    with (
        shadow_server(registry, wait_loaded=False) as (running, _, champion, forest),
        running.client() as client,
    ):
        wait_until(lambda: challenger_loaded(client), "the challenger to be loaded")
        body = client.get("/model/challenger").json()
        assert (body["version"], body["load_error"], body["load_failures"]) == (forest, None, 0)
        loaded = client.get("/model").json()["challenger"]
        assert loaded == {"version": forest, "load_error": None, "load_failures": 0}
        predicted = client.post("/predict", json={"rows": records(real_rows.head(5))})
        assert predicted.status_code == 200
        assert predicted.json()["model"]["version"] == champion
        promoted = client.post("/model/challenger/promote", headers=AUTH)
        assert promoted.json()["serving_version"] == forest
        assert (
            client.post("/predict", json={"rows": records(real_rows.head(5))}).json()["model"][
                "version"
            ]
            == forest
        )
        assert client.get("/model/challenger").status_code == 404


def test_a_challenger_that_cannot_be_loaded_is_reported_and_the_champion_answers(
    registry: Registry, real_rows: pd.DataFrame, tmp_path: Path
) -> None:
    with shadow_server(registry, with_challenger=False) as (
        running,
        store,
        champion,
        forest,
    ):
        local = Path(
            mlflow.artifacts.download_artifacts(
                f"models:/{store.settings.model_name}/{forest}", dst_path=tmp_path
            )
        )
        (model_file,) = [p for p in local.iterdir() if p.suffix == ".skops"]
        model_file.write_bytes(model_file.read_bytes()[:1000] + b"\x00garbage" * 100)
        corrupt = store.client.create_model_version(store.settings.model_name, source=str(local))
        with store.promotion_lock():
            install_challenger(store, str(corrupt.version), "a corrupt challenger")
        with running.client() as client:
            assert client.post("/model/refresh", headers=AUTH).status_code == 200
            body = client.get("/model/challenger").json()
            assert body["version"] == str(corrupt.version)
            assert body["loaded"] is False and body["load_failures"] >= 1
            assert f"version {corrupt.version} cannot be loaded" in body["load_error"]
            predicted = client.post("/predict", json={"rows": records(real_rows.head(5))})
            assert predicted.status_code == 200
            assert predicted.json()["model"]["version"] == champion
            served = client.get("/model").json()
        assert served["version"] == champion
        assert served["challenger"]["version"] is None
        assert served["challenger"]["load_failures"] == body["load_failures"]
        assert served["challenger"]["load_error"] == body["load_error"]


def test_a_challenger_holder_drops_its_model_once_the_alias_is_gone(registry: Registry) -> None:
    name, (_, forest) = registry.new_model(
        registry.fallback_version, registry.compiled_version, champion=registry.fallback_version
    )
    store = registry.store(name)
    store.set_challenger(forest)
    metrics = ApiMetrics()
    holder = ModelHolder(store, metrics, role="challenger")
    held = holder.refresh()
    assert held is not None and held.version == forest
    store.remove_challenger()
    assert holder.refresh() is None and holder.current is None
    assert holder.load_failures == 0
