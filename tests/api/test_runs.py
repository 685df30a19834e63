"""Labelled runs through the API: rows streamed with a run id through ``/predict`` are stored before
the answer, with what was predicted; a label closes and validates the run; uploads, listing,
withdrawal, limits, expiry, metrics, dataset versions.

A real app (its lifespan run by ``TestClient``) on the session's trained registry, with a store of
its own (SQLite in a temporary folder) and real rows of the bundled experiments.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from cncwear.data.dataset import Dataset
from cncwear.data.runs.ids import RunState
from cncwear.data.runs.store import RunStore
from cncwear.data.runs.tables import runs as runs_table
from cncwear_api.core.settings import ApiSettings
from cncwear_api.main import create_app
from cncwear_api.schemas.runs import RunPublic
from tests.helpers import TEST_REDIS_URL

from .conftest import Registry, wait_until
from .labelled_runs import batches, records, run_label, run_rows, sent_equals_stored

TOKEN = "runs-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORN, UNWORN, OTHER_WORN = 8, 4, 7
"""Bundled experiments (worn, unworn, worn) of 605, 532 and 565 rows, 300 to 400 of them active."""
FRESH_WORN = 9
"""Worn, 740 rows: accepted by one test alone (a second run of the same rows is a duplicate)."""


def run_settings(registry: Registry, folder: Path, **changes: Any) -> ApiSettings:
    base: dict[str, Any] = {
        "api_token": SecretStr(TOKEN),
        "data_store_url": f"sqlite:///{folder / 'runs.db'}",
        "redis_url": TEST_REDIS_URL,
        "retrain_after_runs": 0,
    }
    return registry.settings(**{**base, **changes})


@pytest.fixture(scope="module")
def api_settings(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> ApiSettings:
    return run_settings(registry, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def client(registry: Registry, api_settings: ApiSettings) -> Iterator[TestClient]:
    with started(api_settings) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def store(api_settings: ApiSettings) -> RunStore:
    """The store the app writes to, opened here as another process would open it."""
    return RunStore(api_settings)


@pytest.fixture
def run() -> str:
    return f"mill-3/2026-12-01/job-{uuid.uuid4().hex[:8]}"


@contextmanager
def started(settings: ApiSettings) -> Iterator[TestClient]:
    """The app's lifespan running, its champion served."""
    with TestClient(create_app(settings)) as client:
        wait_until(lambda: client.get("/ready").status_code == 200, "the champion to load")
        yield client


def stream(client: TestClient, run: str, rows: Any, size: int = 100) -> list[dict[str, Any]]:
    """The rows sent through /predict with the run id, ``size`` at a time; the answers."""
    answers = []
    for batch in batches(rows, size):
        response = client.post("/predict", json={"rows": records(batch), "run": run})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def problem_columns(response: Any) -> list[str]:
    return [p["column"] for p in response.json()["problems"]]


# -- /predict with a run ---------------------------------------------------------------------------


def test_rows_sent_with_a_run_are_in_the_store_once_answered_with_what_was_predicted(
    client: TestClient, dataset: Dataset, run: str, registry: Registry, store: RunStore
) -> None:
    rows = run_rows(dataset, WORN).head(250)
    answers = stream(client, run, rows)

    assert [a["run"] for a in answers] == [
        {"id": run, "rows": 100, "run_rows": 100, "truncated": False},
        {"id": run, "rows": 100, "run_rows": 200, "truncated": False},
        {"id": run, "rows": 50, "run_rows": 250, "truncated": False},
    ]
    stored = store.rows(run)
    sent_equals_stored(rows, stored)
    answered = [p["probability_worn"] for a in answers for p in a["predictions"]]
    np.testing.assert_allclose(stored["probability_worn"], answered, rtol=0, atol=1e-12)
    assert set(stored["model_version"]) == {registry.compiled_version}

    record = client.get(f"/runs/{run}").json()
    assert record["state"] == "collecting"
    assert record["source"] == "predict"
    assert record["rows"] == 250
    assert record["model_versions"] == [registry.compiled_version]


def test_a_request_without_a_run_is_answered_as_before_and_stores_nothing(
    client: TestClient, dataset: Dataset, store: RunStore
) -> None:
    before = store.stats().rows
    response = client.post("/predict", json={"rows": records(run_rows(dataset, WORN).head(5))})
    assert response.status_code == 200
    assert "run" not in response.json()
    assert store.stats().rows == before


@pytest.mark.parametrize(
    "bad_id",
    [
        "job 1842",
        "mill-3/../job",
        "..",
        "x" * 129,
        "/mill-3",
        "mill-3//job",
        "mill-3/",
        "",
        "job#1",
    ],
)
def test_an_invalid_run_id_gets_a_422_naming_run_and_nothing_is_stored(
    client: TestClient, dataset: Dataset, bad_id: str, store: RunStore
) -> None:
    before = store.stats().rows
    body = {"rows": records(run_rows(dataset, WORN).head(3)), "run": bad_id}
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert problem_columns(response) == ["run"]
    assert store.stats().rows == before


def test_a_run_id_that_is_not_text_gets_a_422_naming_run(
    client: TestClient, dataset: Dataset
) -> None:
    body = {"rows": records(run_rows(dataset, WORN).head(3)), "run": 1842}
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert problem_columns(response) == ["run"]


def test_a_129_character_id_in_the_path_gets_a_422_naming_run(client: TestClient) -> None:
    for response in (
        client.get(f"/runs/{'x' * 129}"),
        client.get("/runs/job%201842"),
        client.delete(f"/runs/{'x' * 129}", headers=AUTH),
    ):
        assert response.status_code == 422, response.text
        assert problem_columns(response) == ["run"]


def test_ids_differing_only_in_case_or_slashes_are_different_runs(
    client: TestClient, dataset: Dataset
) -> None:
    stem = uuid.uuid4().hex[:8]
    ids = [f"Mill/{stem}", f"mill/{stem}", f"mill-{stem}", f"mill/{stem}/a"]
    rows = run_rows(dataset, WORN)
    for count, run in enumerate(ids, start=1):
        stream(client, run, rows.head(count))
    assert [client.get(f"/runs/{run}").json()["rows"] for run in ids] == [1, 2, 3, 4]


# -- labelling -------------------------------------------------------------------------------------


def test_a_labelled_run_of_real_rows_is_accepted_and_its_predictions_count_in_live_performance(
    client: TestClient, dataset: Dataset, run: str, registry: Registry
) -> None:
    rows = run_rows(dataset, WORN)
    answers = stream(client, run, rows)
    response = client.post(f"/runs/{run}/label", json=run_label(dataset, WORN), headers=AUTH)
    assert response.status_code == 200, response.text
    record = RunPublic.model_validate(response.json())
    assert record.state == "accepted", record.reasons
    assert record.reasons == []
    assert record.label is not None
    assert record.label.tool_condition == "worn"
    assert record.rows == len(rows)
    assert record.labelled_at is not None
    assert record.live is not None
    predicted_worn = [p["label"] == "worn" for a in answers for p in a["predictions"]]
    assert record.live.rows == len(rows)
    assert record.live.accuracy == pytest.approx(np.mean(predicted_worn))
    assert client.get(f"/runs/{run}").json() == response.json()

    drift = client.get("/drift").json()["runs_performance"]
    assert drift["runs"] >= 1
    assert drift["rows"] >= len(rows)


def test_a_second_label_of_an_accepted_run_is_a_409_and_so_are_more_rows(
    client: TestClient, dataset: Dataset, run: str
) -> None:
    stream(client, run, run_rows(dataset, UNWORN))
    label = run_label(dataset, UNWORN)
    first = client.post(f"/runs/{run}/label", json=label, headers=AUTH)
    assert first.json()["state"] == "accepted", first.json()["reasons"]

    again = client.post(
        f"/runs/{run}/label", json={**label, "tool_condition": "worn"}, headers=AUTH
    )
    assert again.status_code == 409
    assert problem_columns(again) == ["run"]
    more = client.post(
        "/predict", json={"rows": records(run_rows(dataset, UNWORN).head(2)), "run": run}
    )
    assert more.status_code == 409
    assert problem_columns(more) == ["run"]
    assert client.get(f"/runs/{run}").json()["label"]["tool_condition"] == "unworn"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tool_condition": "blunt"}, "tool_condition"),
        ({"tool_condition": None}, "tool_condition"),
        ({"feedrate": -6}, "feedrate"),
        ({"feedrate": "fast"}, "feedrate"),
        ({"clamp_pressure": 0}, "clamp_pressure"),
        ({"material": ""}, "material"),
    ],
)
def test_a_label_with_an_unknown_condition_or_bad_setting_gets_a_422_naming_it(
    client: TestClient, dataset: Dataset, run: str, change: dict[str, Any], field: str
) -> None:
    stream(client, run, run_rows(dataset, WORN).head(10))
    response = client.post(
        f"/runs/{run}/label", json={**run_label(dataset, WORN), **change}, headers=AUTH
    )
    assert response.status_code == 422, response.text
    assert problem_columns(response) == [field]
    assert client.get(f"/runs/{run}").json()["state"] == "collecting"


@pytest.mark.parametrize("missing", ["tool_condition", "feedrate", "clamp_pressure", "material"])
def test_a_label_missing_a_field_gets_a_422_naming_it(
    client: TestClient, dataset: Dataset, run: str, missing: str
) -> None:
    stream(client, run, run_rows(dataset, WORN).head(10))
    label = {k: v for k, v in run_label(dataset, WORN).items() if k != missing}
    response = client.post(f"/runs/{run}/label", json=label, headers=AUTH)
    assert response.status_code == 422
    assert problem_columns(response) == [missing]


def test_a_run_with_too_few_active_rows_is_rejected_with_the_reason_and_keeps_its_rows(
    client: TestClient, dataset: Dataset, run: str
) -> None:
    stream(client, run, run_rows(dataset, WORN).head(120))
    response = client.post(f"/runs/{run}/label", json=run_label(dataset, WORN), headers=AUTH)
    assert response.status_code == 200
    record = response.json()
    assert record["state"] == "rejected"
    assert record["reasons"], record
    assert record["rows"] == 120


def test_an_unknown_run_is_a_404(client: TestClient, dataset: Dataset, run: str) -> None:
    label = run_label(dataset, WORN)
    for response in (
        client.get(f"/runs/{run}"),
        client.post(f"/runs/{run}/label", json=label, headers=AUTH),
        client.delete(f"/runs/{run}", headers=AUTH),
    ):
        assert response.status_code == 404, response.text
        assert problem_columns(response) == ["run"]


def test_labelling_uploading_and_withdrawing_need_the_token(
    client: TestClient, dataset: Dataset, run: str
) -> None:
    stream(client, run, run_rows(dataset, WORN).head(10))
    label = run_label(dataset, WORN)
    upload = {"run": f"{run}-u", **label, "rows": records(run_rows(dataset, WORN).head(10))}
    wrong = {"Authorization": "Bearer not-the-token"}
    for headers in ({}, wrong):
        assert client.post(f"/runs/{run}/label", json=label, headers=headers).status_code == 401
        assert client.post("/runs", json=upload, headers=headers).status_code == 401
        assert client.delete(f"/runs/{run}", headers=headers).status_code == 401
    assert client.get(f"/runs/{run}").json()["state"] == "collecting"
    assert client.get(f"/runs/{run}-u").status_code == 404


# -- uploads ---------------------------------------------------------------------------------------


def test_an_uploaded_run_is_validated_and_stored_like_a_streamed_one(
    client: TestClient, dataset: Dataset, run: str, store: RunStore
) -> None:
    rows = run_rows(dataset, OTHER_WORN)
    body = {"run": run, **run_label(dataset, OTHER_WORN), "rows": records(rows)}
    response = client.post("/runs", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["state"] == "accepted", record["reasons"]
    assert record["source"] == "upload"
    assert record["rows"] == len(rows)
    assert record["model_versions"] == []
    stored = store.rows(run)
    sent_equals_stored(rows, stored)

    # The same id again: 409. The same rows under another id: a duplicate, rejected.
    assert client.post("/runs", json=body, headers=AUTH).status_code == 409
    twin = client.post("/runs", json={**body, "run": f"{run}-twin"}, headers=AUTH).json()
    assert twin["state"] == "rejected"
    assert twin["reasons"]


def test_an_upload_in_columns_and_data_is_the_same_run(
    client: TestClient, dataset: Dataset, run: str, store: RunStore
) -> None:
    rows = run_rows(dataset, UNWORN)
    body = {
        "run": run,
        **run_label(dataset, UNWORN),
        "columns": list(rows.columns),
        "data": rows.astype(object).to_numpy().tolist(),
    }
    response = client.post("/runs", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    sent_equals_stored(rows, store.rows(run))


def test_an_upload_with_bad_rows_gets_a_422_by_row_and_column_and_stores_nothing(
    client: TestClient, dataset: Dataset, run: str
) -> None:
    rows = records(run_rows(dataset, WORN).head(300))
    rows[7]["X1_ActualPosition"] = "far"
    del rows[12]["S1_OutputCurrent"]
    body = {"run": run, **run_label(dataset, WORN), "rows": rows}
    response = client.post("/runs", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    where = {(p["row"], p["column"]) for p in response.json()["problems"]}
    assert {(7, "X1_ActualPosition"), (12, "S1_OutputCurrent")} <= where
    assert client.get(f"/runs/{run}").status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [({"run": "job 1842"}, "run"), ({"tool_condition": "blunt"}, "tool_condition")],
)
def test_an_upload_with_a_bad_id_or_label_gets_a_422_naming_it(
    client: TestClient, dataset: Dataset, run: str, change: dict[str, Any], field: str
) -> None:
    body = {"run": run, **run_label(dataset, WORN), "rows": records(run_rows(dataset, WORN))}
    response = client.post("/runs", json={**body, **change}, headers=AUTH)
    assert response.status_code == 422
    assert problem_columns(response) == [field]


def test_an_upload_missing_a_setting_gets_a_422_naming_it(
    client: TestClient, dataset: Dataset, run: str
) -> None:
    body = {"run": run, **run_label(dataset, WORN), "rows": records(run_rows(dataset, WORN))}
    del body["material"]
    response = client.post("/runs", json=body, headers=AUTH)
    assert response.status_code == 422
    assert problem_columns(response) == ["material"]


# -- listing and withdrawing -----------------------------------------------------------------------


def test_runs_are_listed_newest_first_in_pages_and_filtered_by_state(
    client: TestClient, dataset: Dataset
) -> None:
    stem = uuid.uuid4().hex[:8]
    ids = [f"list-{stem}/{i}" for i in range(3)]
    for run in ids:
        stream(client, run, run_rows(dataset, WORN).head(2))

    first = client.get("/runs", params={"limit": 2}).json()
    assert first["limit"] == 2 and first["offset"] == 0
    assert [r["run"] for r in first["runs"]] == [ids[2], ids[1]]
    assert first["total"] >= 3
    everything = client.get("/runs", params={"limit": 200}).json()
    assert len(everything["runs"]) == everything["total"] == first["total"]
    second = client.get("/runs", params={"limit": 2, "offset": 2}).json()
    assert [r["run"] for r in second["runs"]] == [r["run"] for r in everything["runs"][2:4]]

    client.delete(f"/runs/{ids[1]}", headers=AUTH)

    withdrawn = client.get("/runs", params={"state": "withdrawn", "limit": 200}).json()
    assert ids[1] in [r["run"] for r in withdrawn["runs"]]
    assert {r["state"] for r in withdrawn["runs"]} == {"withdrawn"}
    assert client.get("/runs", params={"state": "lost"}).status_code == 422


def test_a_withdrawn_run_stays_listed_keeps_its_rows_and_takes_no_more(
    client: TestClient, dataset: Dataset, run: str
) -> None:
    rows = run_rows(dataset, UNWORN)
    stream(client, run, rows)
    client.post(f"/runs/{run}/label", json=run_label(dataset, UNWORN), headers=AUTH)
    response = client.delete(f"/runs/{run}", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["state"] == "withdrawn"
    assert response.json()["withdrawn_at"] is not None
    assert client.get(f"/runs/{run}").json()["rows"] == len(rows)
    more = client.post("/predict", json={"rows": records(rows.head(2)), "run": run})
    assert more.status_code == 409
    label = client.post(f"/runs/{run}/label", json=run_label(dataset, UNWORN), headers=AUTH)
    assert label.status_code == 409


# -- bounds ----------------------------------------------------------------------------------------


def test_a_run_past_its_row_limit_is_answered_and_marked_truncated(
    registry: Registry, dataset: Dataset, run: str, tmp_path: Path
) -> None:
    settings = run_settings(registry, tmp_path, run_max_rows=150)
    with started(settings) as client:
        answers = stream(client, run, run_rows(dataset, WORN).head(300))
        assert [len(a["predictions"]) for a in answers] == [100, 100, 100]
        assert [a["run"]["rows"] for a in answers] == [100, 50, 0]
        assert [a["run"]["truncated"] for a in answers] == [False, True, True]
        assert client.get(f"/runs/{run}").json()["truncated"] is True
        assert len(RunStore(settings).rows(run)) == 150
        exposition = client.get("/metrics").text
    assert "cncwear_run_truncated_appends_total 2.0" in exposition
    assert "cncwear_run_rows_appended_total 150.0" in exposition
    assert "cncwear_runs_truncated 1.0" in exposition


def test_a_run_left_unlabelled_past_its_ttl_is_dropped_and_counted(
    registry: Registry, dataset: Dataset, run: str, tmp_path: Path
) -> None:
    settings = run_settings(registry, tmp_path, run_ttl_seconds=60)
    with started(settings) as client:
        stream(client, run, run_rows(dataset, WORN).head(5))
        kept = f"{run}-recent"
        stream(client, kept, run_rows(dataset, WORN).head(5))
        # The run was last seen two days ago (as if nobody had labelled it since).
        engine = sa.create_engine(settings.data_store_uri())
        with engine.begin() as connection:
            connection.execute(
                runs_table.update()
                .where(runs_table.c.run == run)
                .values(last_seen=time.time() - 2 * 86400)
            )
        engine.dispose()
        # The API's periodic pass (every tenth of the TTL) drops it.
        wait_until(lambda: client.get(f"/runs/{run}").status_code == 404, "the expiry", 60)
        assert client.get(f"/runs/{kept}").status_code == 200
        time.sleep(5.1)  # past the metrics' cache
        exposition = client.get("/metrics").text
    assert "cncwear_runs_expired_total 1.0" in exposition


# -- what else shows the runs ----------------------------------------------------------------------


def test_prometheus_sees_the_store_by_state_rows_and_appends(
    client: TestClient, dataset: Dataset, run: str, store: RunStore
) -> None:
    stream(client, run, run_rows(dataset, WORN).head(30))
    time.sleep(5.1)  # past the metrics' cache
    exposition = client.get("/metrics").text
    stats = store.stats()
    assert "cncwear_run_store_up 1.0" in exposition
    assert (
        f'cncwear_runs{{state="collecting"}} {float(stats.runs[RunState.COLLECTING])}' in exposition
    )
    assert f"cncwear_run_store_rows {float(stats.rows)}" in exposition
    assert "cncwear_run_rows_appended_total" in exposition
    assert "cncwear_run_append_failures_total 0.0" in exposition


def test_the_champion_and_each_retrain_show_their_dataset_version(client: TestClient) -> None:
    model = client.get("/model").json()
    assert "data_version" in model
    retrains = client.get("/model/retrains").json()
    assert retrains
    assert all("data_version" in retrain for retrain in retrains)


def test_an_accepted_run_makes_a_dataset_version_and_its_withdrawal_one_without_it(
    client: TestClient, dataset: Dataset, run: str
) -> None:
    stream(client, run, run_rows(dataset, FRESH_WORN))
    record = client.post(f"/runs/{run}/label", json=run_label(dataset, FRESH_WORN), headers=AUTH)
    assert record.json()["state"] == "accepted", record.json()["reasons"]
    (made,) = record.json()["dataset_versions"]

    (current,) = [v for v in client.get("/data/versions").json() if v["current"]]
    assert current["id"] == made
    assert run in [r["run"] for r in current["parts"]["runs"]]
    assert current["parts"]["base"]["source"] == "bundled"
    assert current["parts"]["base"]["experiments"] == 18
    assert current["counts"]["base"] == {"unworn": 8, "worn": 10}
    assert current["counts"]["runs"]["worn"] >= 1
    assert current["model_versions"] == []

    client.delete(f"/runs/{run}", headers=AUTH)
    (after,) = [v for v in client.get("/data/versions").json() if v["current"]]
    assert after["id"] != made
    assert run not in [r["run"] for r in after["parts"]["runs"]]
    # A version never changes: the one made before still holds the run.
    before = client.get(f"/data/versions/{made}").json()
    assert before == {**current, "current": False}


def test_an_unknown_dataset_version_is_a_404_and_a_malformed_id_a_422(client: TestClient) -> None:
    assert client.get("/data/versions/0123456789abcdef").status_code == 404
    assert client.get("/data/versions/not-a-version").status_code == 422


def test_a_retrain_on_an_unknown_dataset_version_is_a_404(client: TestClient) -> None:
    response = client.post("/retrain", json={"data_version": "0123456789abcdef"}, headers=AUTH)
    assert response.status_code == 404, response.text


def test_while_the_store_is_down_rows_with_a_run_get_a_503_and_other_requests_are_served(
    registry: Registry, dataset: Dataset, run: str, tmp_path: Path
) -> None:
    """Nothing listens on port 9: the app starts all the same, and never answers as if it had
    kept rows it could not store."""
    settings = run_settings(registry, tmp_path).model_copy(
        update={"data_store_url": "postgresql+psycopg://postgres@127.0.0.1:9/cncwear"}
    )
    rows = records(run_rows(dataset, WORN).head(3))
    with started(settings) as client:
        refused = client.post("/predict", json={"rows": rows, "run": run})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"]
        assert client.post("/predict", json={"rows": rows}).status_code == 200
        assert client.get("/model").status_code == 200
        exposition = client.get("/metrics").text
    assert "cncwear_run_append_failures_total 1.0" in exposition
    assert "cncwear_run_store_up 0.0" in exposition


def test_an_accepted_run_queues_a_retrain_when_retrain_after_runs_is_one(
    registry: Registry, dataset: Dataset, run: str, tmp_path: Path, redis_url: str
) -> None:
    settings = run_settings(registry, tmp_path, retrain_after_runs=1, redis_url=redis_url)
    with started(settings) as client:
        stream(client, run, run_rows(dataset, WORN))
        label = client.post(f"/runs/{run}/label", json=run_label(dataset, WORN), headers=AUTH)
        assert label.json()["state"] == "accepted", label.json()["reasons"]
        jobs = client.get("/jobs").json()
    assert len(jobs) == 1
    assert jobs[0]["state"] == "queued"
    assert "run" in jobs[0]["request"]["reason"]


# -- drift of one run ------------------------------------------------------------------------------


def test_a_held_out_run_is_within_the_normal_band_and_the_same_run_with_a_frozen_sensor_is_not(
    client: TestClient, dataset: Dataset
) -> None:
    held = client.get("/model").json()["metrics"]["holdout_experiments"]
    experiment = int(held[0])
    normal, frozen = (f"mill-7/drift/{kind}-{uuid.uuid4().hex[:8]}" for kind in ("ok", "frozen"))
    rows = run_rows(dataset, experiment)
    stream(client, normal, rows)
    broken = rows.copy()
    broken["Y1_OutputCurrent"] = broken["Y1_OutputCurrent"].iloc[0]
    stream(client, frozen, broken)

    calm = client.get("/drift", params={"run": normal})
    assert calm.status_code == 200, calm.text
    verdict = calm.json()
    active = int(rows["Machining_Process"].str.startswith("Layer").sum())
    assert verdict["run"] == normal and verdict["rows"] == active and verdict["enough_rows"]
    assert verdict["calibrated"] and verdict["margin"] > 0
    assert not verdict["drift_detected"], verdict["drifted_features"]
    assert any(f["name"] == "toolpath" for f in verdict["features"])

    alarm = client.get("/drift", params={"run": frozen}).json()
    assert alarm["drift_detected"]
    stuck = {f["name"]: f["stuck"] for f in alarm["features"]}
    assert stuck["Y1_OutputCurrent"] and sum(stuck.values()) == 1

    kept = {r: client.get(f"/runs/{r}").json()["drift"] for r in (normal, frozen)}
    assert kept[normal]["drifted"] is False and kept[normal]["rows"] == active
    assert kept[frozen]["drifted"] is True
    assert "Y1_OutputCurrent" in kept[frozen]["drifted_features"]
    latest = client.get("/drift").json()["runs"]
    assert [r["run"] for r in latest[:2]] == [frozen, normal]


def test_drifted_runs_in_a_row_queue_a_retrain_and_one_unusual_run_does_not(
    registry: Registry, dataset: Dataset, tmp_path: Path, redis_url: str
) -> None:
    settings = run_settings(
        registry, tmp_path, retrain_on_drift=True, drift_runs_window=3, drift_runs_trigger=2
    )
    rows = run_rows(dataset, UNWORN)
    rows["Y1_OutputCurrent"] = rows["Y1_OutputCurrent"].iloc[0]
    with started(settings) as client:
        for number in (1, 2):
            run = f"mill-9/frozen-{number}"
            stream(client, run, rows)
            response = client.post(
                f"/runs/{run}/label", json=run_label(dataset, UNWORN), headers=AUTH
            )
            assert response.status_code == 200, response.text
            assert response.json()["drift"]["drifted"] is True  # judged when labelled
            triggers = client.get("/drift").json()["triggers"]["recent"]
            assert len(triggers) == number - 1, triggers
            exported = client.get("/metrics").text.splitlines()
            assert f"cncwear_drift_runs_drifted {float(number)}" in exported
    trigger = triggers[0]
    assert trigger["kind"] == "drift" and trigger["outcome"] in {"queued", "joined"}
    assert "2 of the last 2 runs" in trigger["reason"]
    assert "Y1_OutputCurrent" in trigger["reason"]


def test_drift_of_an_unknown_run_is_a_404_and_of_a_malformed_id_a_422_naming_run(
    client: TestClient, run: str
) -> None:
    missing = client.get("/drift", params={"run": run})
    assert missing.status_code == 404, missing.text
    bad = client.get("/drift", params={"run": "../etc/passwd"})
    assert bad.status_code == 422, bad.text
    assert "run" in bad.text
