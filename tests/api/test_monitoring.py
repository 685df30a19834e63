"""Live monitoring on a real server: drift of the traffic against the served version's held-out
experiments, ground truth giving live accuracy, and the triggers that queue a retrain.

The drift scenario serves the champion's own held-out experiments (whole runs the model never saw,
the rows its holdout figures were measured on), shuffled as the traffic of several mills at once,
in a window of 1,000 rows: no alarm. Then the same kind of rows with a realistic shift: the output
currents of every axis read 10% higher (another drive, harder stock) and the work offset moved by
5 mm on X, Y and Z (a fixture placed elsewhere). The alarm is raised within one window: after 1,000
shifted rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from cncwear.core.schema import input_columns
from cncwear.data.dataset import Dataset
from tests.helpers import TEST_REDIS_URL

from .conftest import Registry, RunningServer, scrape, serve, wait_until

WINDOW = 1000
BATCH = 50
CURRENTS = ("X1_OutputCurrent", "Y1_OutputCurrent", "Z1_OutputCurrent", "S1_OutputCurrent")
POSITIONS = ("X1", "Y1", "Z1")


@pytest.fixture
def redis_url(redis_available: None) -> Iterator[str]:
    """A Redis database of its own for the retrain queue, emptied before and after."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


def holdout_rows(server: RunningServer, dataset: Dataset, seed: int = 0) -> pd.DataFrame:
    """Rows of the champion's held-out experiments, shuffled: several mills' traffic mixed."""
    with server.client() as client:
        held = client.get("/model").json()["metrics"]["holdout_experiments"]
    assert held, "the champion names its held-out experiments"
    rows = dataset.active().rows
    rows = rows[rows["experiment"].isin(held)]
    return rows.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def shifted(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows.copy()
    for column in CURRENTS:
        out[column] = out[column] * 1.10
    for axis in POSITIONS:
        for kind in ("Actual", "Command"):
            out[f"{axis}_{kind}Position"] = out[f"{axis}_{kind}Position"] + 5.0
    return out


def send(server: RunningServer, rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Serve ``rows`` as /predict requests of ``BATCH`` rows (columnar form); the answers."""
    columns = input_columns(use_identifying_columns=False)
    answers = []
    with server.client() as client:
        for start in range(0, len(rows), BATCH):
            chunk = rows.iloc[start : start + BATCH][columns]
            body = {"columns": columns, "data": chunk.to_numpy(dtype=object).tolist()}
            response = client.post("/predict", json=body)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    return answers


def drift(server: RunningServer) -> dict[str, Any]:
    return server.get_json("/drift")


def token(server: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.settings.token_path().read_text().strip()}"}


def live_histograms(server: RunningServer) -> dict[str, dict[str, list[float]]]:
    """``/drift/distributions``: the window's histograms, on the training histograms' edges."""
    with server.client() as client:
        live = client.get("/drift/distributions").json()
        training = client.get("/model/distributions").json()
    edges = {f["feature"]: f["histogram"]["edges"] for f in training["features"]}
    assert live["window_rows"] == WINDOW
    for feature in live["features"]:
        assert feature["histogram"]["edges"] == edges[feature["feature"]]
        assert sum(feature["histogram"]["counts"]) == WINDOW
    return {f["feature"]: f["histogram"] for f in live["features"]}


def mean_bin(histogram: dict[str, list[float]]) -> float:
    counts = np.asarray(histogram["counts"], dtype=float)
    return float((counts * np.arange(len(counts))).sum() / counts.sum())


def test_held_out_traffic_raises_no_alarm_and_shifted_traffic_queues_a_retrain(
    registry: Registry, dataset: Dataset, redis_url: str
) -> None:
    settings = registry.settings(
        redis_url=redis_url,
        drift_window_rows=WINDOW,
        drift_min_rows=WINDOW // 2,
        drift_check_interval_seconds=0.2,
        retrain_on_drift=True,
        trigger_sustain_seconds=0.5,
    )
    with serve(settings) as server:
        server.wait_ready(registry.compiled_version)
        rows = holdout_rows(server, dataset)
        assert len(rows) >= 2 * WINDOW

        send(server, rows.iloc[:WINDOW])
        calm_histograms = live_histograms(server)
        calm = drift(server)
        assert calm["window_rows"] == WINDOW and calm["enough_rows"]
        assert calm["reference"]["calibrated"], "a model trained now carries its drift null"
        assert "training runs" in calm["reference"]["what"]
        assert not calm["drift_detected"], calm["drifted_features"]
        assert calm["prediction"] is not None and not calm["prediction"]["drifted"]
        assert all(f["calibrated"] and f["band"] for f in calm["features"])
        assert {f["test"] for f in calm["features"]} == {"wasserstein", "toolpath"}
        assert calm["triggers"]["recent"] == []

        features = [f["name"] for f in calm["features"]]
        moved = [f for f in features if f in CURRENTS]
        assert moved, f"the scenario shifts none of the watched {features}"

        send(server, shifted(rows.iloc[WINDOW : 2 * WINDOW]))
        shifted_histograms = live_histograms(server)
        for feature in moved:  # the live histograms move up with the shifted readings
            if feature in shifted_histograms:
                assert mean_bin(shifted_histograms[feature]) > mean_bin(calm_histograms[feature])
        alarm = drift(server)
        assert alarm["drift_detected"], alarm["features"]
        assert "toolpath" in alarm["drifted_features"]  # the positions moved 5 mm
        assert "X1_OutputCurrent" in alarm["drifted_features"]

        def triggered() -> bool:
            return bool(drift(server)["triggers"]["recent"])

        wait_until(triggered, "the drift trigger to queue a retrain")
        trigger = drift(server)["triggers"]["recent"][0]
        assert trigger["kind"] == "drift" and trigger["outcome"] == "queued"
        with server.client() as client:
            job = client.get(f"/jobs/{trigger['job_id']}").json()
        assert job["state"] == "queued"
        assert job["request"]["reason"].startswith("drift: ")
        assert "X1_OutputCurrent" in job["request"]["reason"]

        metrics = scrape(server)
        assert (
            metrics["cncwear_retrain_triggers_total[('outcome', 'queued'), ('reason', 'drift')]"]
            == 1
        )
        assert metrics["cncwear_drift_detected[]"] == 1
        assert metrics["cncwear_drift_feature_drifted[('feature', 'X1_OutputCurrent')]"] == 1


def test_ground_truth_by_request_id_gives_live_accuracy_and_a_drop_queues_a_retrain(
    registry: Registry, dataset: Dataset, redis_url: str
) -> None:
    settings = registry.settings(
        redis_url=redis_url,
        feedback_min_rows=100,
        drift_check_interval_seconds=0.2,
        retrain_on_accuracy_drop=True,
        trigger_sustain_seconds=0.0,
    )
    with serve(settings) as server:
        server.wait_ready(registry.compiled_version)
        rows = holdout_rows(server, dataset).iloc[:400]
        answers = send(server, rows)
        truth = rows["label"].to_numpy() == 1
        predicted = np.array([p["label"] == "worn" for a in answers for p in a["predictions"]])

        with server.client(headers=token(server)) as client:
            first = answers[0]
            labels = ["worn" if t else "unworn" for t in truth[:BATCH]]
            assert (
                server.client()
                .post("/feedback", json={"request_id": first["request_id"], "labels": labels})
                .status_code
                == 401
            )
            too_few = client.post(
                "/feedback", json={"request_id": first["request_id"], "labels": labels[:3]}
            )
            assert (
                too_few.status_code == 422 and too_few.json()["problems"][0]["column"] == "labels"
            )
            for i, answer in enumerate(answers[:4]):
                labels = ["worn" if t else "unworn" for t in truth[i * BATCH : (i + 1) * BATCH]]
                response = client.post(
                    "/feedback", json={"request_id": answer["request_id"], "labels": labels}
                )
                assert response.status_code == 200, response.text
            again = client.post(
                "/feedback", json={"request_id": first["request_id"], "label": "worn"}
            )
            assert again.status_code == 404
            unknown = client.post("/feedback", json={"request_id": "never-seen", "label": "worn"})
            assert unknown.status_code == 404 and "never-seen" in unknown.json()["detail"]

        live = drift(server)["performance"]
        expected = float(np.mean(predicted[: 4 * BATCH] == truth[: 4 * BATCH]))
        assert live["labelled_rows"] == 4 * BATCH and live["enough_rows"]
        assert live["metrics"]["accuracy"] == pytest.approx(expected)
        assert live["difference"]["accuracy"] == pytest.approx(
            expected - live["holdout"]["accuracy"]
        )
        assert drift(server)["triggers"]["recent"] == []

        # Ground truth the model keeps getting wrong: labelled rows, every label flipped.
        columns = input_columns(use_identifying_columns=False)
        wrong = rows.iloc[4 * BATCH :]
        flipped = ["unworn" if p else "worn" for p in predicted[4 * BATCH :]]
        with server.client(headers=token(server)) as client:
            body = {
                "columns": columns,
                "data": wrong[columns].to_numpy(dtype=object).tolist(),
                "labels": flipped,
            }
            response = client.post("/feedback", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["source"] == "rows"
        assert response.json()["performance"]["metrics"]["accuracy"] == pytest.approx(expected / 2)

        def triggered() -> bool:
            return bool(drift(server)["triggers"]["recent"])

        wait_until(triggered, "the accuracy trigger to queue a retrain")
        trigger = drift(server)["triggers"]["recent"][0]
        assert trigger["kind"] == "accuracy" and trigger["job_id"]
        assert trigger["reason"].startswith("accuracy: live ")
        metrics = scrape(server)
        assert metrics["cncwear_live_performance[('metric', 'accuracy')]"] == pytest.approx(
            expected / 2
        )
        assert metrics["cncwear_feedback_rows_total[('source', 'rows')]"] == 200


def test_schema_refusals_are_counted_and_monitoring_can_be_switched_off(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    with serve(registry.settings(monitoring=False)) as server:
        server.wait_ready(registry.compiled_version)
        columns = input_columns(use_identifying_columns=False)
        with server.client() as client:
            good = {
                "columns": columns,
                "data": real_rows[columns].head(3).to_numpy(dtype=object).tolist(),
            }
            assert client.post("/predict", json=good).status_code == 200
            skewed = {
                "columns": columns[1:],
                "data": real_rows[columns[1:]].head(3).to_numpy(dtype=object).tolist(),
            }
            refused = client.post("/predict", json=skewed)
            assert refused.status_code == 422
            assert client.get("/drift").status_code == 503
            assert "CNCWEAR_MONITORING" in client.get("/drift").json()["detail"]
        metrics = scrape(server)
        assert metrics["cncwear_schema_refusals_total[]"] == 1
        assert metrics["cncwear_seconds_since_promotion[]"] > 0
