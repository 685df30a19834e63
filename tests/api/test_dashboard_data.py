"""What the dashboard plots, served by the API: the champion's held-out evaluation (confusion
matrix, ROC and precision-recall curves), its training distributions, real rows to explain, the
recent retrains with their candidates, and the page itself."""

from __future__ import annotations

import re

import httpx
import numpy as np
from pydantic import SecretStr

from cncwear.core.schema import ACTIVE_PROCESSES, LABELS, PROCESS_COLUMN
from cncwear.data.dataset import Dataset
from cncwear.training.evaluation import CURVE_POINTS
from cncwear_api.schemas.model import (
    ExampleRows,
    ModelEvaluation,
    ModelPublic,
    RetrainPublic,
    TrainingDistributions,
)

from .conftest import Registry, RunningServer, serve


def _card(client: httpx.Client) -> ModelPublic:
    return ModelPublic.model_validate(client.get("/model").json())


def test_evaluation_counts_every_held_out_row_in_the_confusion_matrix(
    server: RunningServer, dataset: Dataset
) -> None:
    with server.client() as client:
        card = _card(client)
        evaluation = ModelEvaluation.model_validate(client.get("/model/evaluation").json())
    assert evaluation.model.version == card.version
    assert evaluation.holdout_experiments == card.metrics.holdout_experiments
    held_out = dataset.active().subset(card.metrics.holdout_experiments)
    assert evaluation.confusion_matrix is not None
    counts = np.array(evaluation.confusion_matrix.counts)
    assert counts.sum() == len(held_out.rows)
    assert counts.sum(axis=1).tolist() == [int((held_out.labels == c).sum()) for c in (0, 1)]
    assert np.trace(counts) / counts.sum() == evaluation.metrics["accuracy"]
    assert evaluation.metrics == card.metrics.holdout
    assert evaluation.leaky_row_split_accuracy == card.leaky_row_split.accuracy
    assert set(evaluation.per_experiment_accuracy) == {
        str(e) for e in card.metrics.holdout_experiments
    }


def test_evaluation_draws_roc_and_precision_recall_curves_of_the_champion(
    server: RunningServer,
) -> None:
    with server.client() as client:
        evaluation = ModelEvaluation.model_validate(client.get("/model/evaluation").json())
    roc, pr = evaluation.roc, evaluation.precision_recall
    assert roc is not None and pr is not None
    assert 2 < len(roc.fpr) <= CURVE_POINTS and len(roc.fpr) == len(roc.tpr) == len(roc.thresholds)
    assert (roc.fpr[0], roc.tpr[0], roc.fpr[-1], roc.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert roc.auc == evaluation.metrics["roc_auc"]
    assert abs(float(np.trapezoid(roc.tpr, roc.fpr)) - roc.auc) < 0.01
    assert len(pr.recall) == len(pr.precision) == len(pr.thresholds) <= CURVE_POINTS
    assert pr.recall[0] == 1.0 and pr.recall[-1] == 0.0
    assert 0.0 < pr.average_precision <= 1.0


def test_distributions_histogram_each_feature_the_model_sees(server: RunningServer) -> None:
    with server.client() as client:
        card = _card(client)
        body = TrainingDistributions.model_validate(client.get("/model/distributions").json())
    assert body.model.version == card.version
    assert 1000 <= body.sample_rows <= body.rows
    assert [f.feature for f in body.features] == card.selected_features
    for feature in body.features:
        assert len(feature.histogram.edges) == len(feature.histogram.counts) + 1
        assert sum(feature.histogram.counts) == body.sample_rows
        assert feature.histogram.edges == sorted(feature.histogram.edges)
    assert sum(body.class_balance.values()) == 1.0
    assert len(body.holdout_probability_worn.counts) == 20


def test_examples_are_real_rows_of_held_out_experiments_ready_to_predict(
    server: RunningServer, dataset: Dataset
) -> None:
    with server.client() as client:
        card = _card(client)
        body = ExampleRows.model_validate(client.get("/model/examples?per_experiment=4").json())
        rows = [example.row for example in body.examples]
        predicted = client.post("/predict", json={"rows": rows})
    assert body.model.version == card.version
    assert len(body.examples) == 4 * len(card.metrics.holdout_experiments)
    assert {e.experiment for e in body.examples} == set(card.metrics.holdout_experiments)
    truth = dataset.experiment_labels()
    names = {number: name for name, number in LABELS.items()}
    for example in body.examples:
        assert example.true_label == names[int(truth[example.experiment])]
        assert list(example.row) == card.input_columns
        assert example.row[PROCESS_COLUMN] in ACTIVE_PROCESSES
    assert predicted.status_code == 200, predicted.text
    assert len(predicted.json()["predictions"]) == len(rows)


def test_examples_refuse_an_out_of_range_count_naming_the_parameter(server: RunningServer) -> None:
    with server.client() as client:
        response = client.get("/model/examples?per_experiment=0")
    assert response.status_code == 422
    assert "per_experiment" in response.text


def test_retrains_list_the_registry_s_retrains_newest_first_with_candidates_and_decision(
    server: RunningServer, registry: Registry
) -> None:
    with server.client() as client:
        card = _card(client)
        retrains = [RetrainPublic.model_validate(r) for r in client.get("/model/retrains").json()]
        latest_only = client.get("/model/retrains?limit=1").json()
    forest, baseline = retrains[0], retrains[-1]
    assert len(latest_only) == 1 and latest_only[0]["run_id"] == forest.run_id
    assert forest.started_at > baseline.started_at
    assert forest.run_id == card.retrain_run_id
    assert (forest.winner, forest.registered_version) == ("random_forest", card.version)
    assert forest.decision == "promoted" and forest.decision_reason
    assert baseline.registered_version == registry.fallback_version
    [candidate] = forest.candidates
    assert candidate.name == "random_forest" and candidate.error is None
    assert candidate.run_id == card.run_id
    assert candidate.metrics["holdout_accuracy"] == card.metrics.holdout["accuracy"]
    assert candidate.metrics["leaky_row_split_accuracy"] == card.leaky_row_split.accuracy


def test_the_dashboard_page_and_every_asset_it_names_are_served_from_this_server(
    server: RunningServer,
) -> None:
    with server.client() as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assets = re.findall(r'(?:src|href)="(/[^"]*)"', page.text)
        assert "/dashboard/vendor/chart.umd.min.js" in assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
        modules = client.get("/dashboard/app.js").text
        for imported in re.findall(r'from "\./([^"]+)"', modules):
            assert client.get(f"/dashboard/{imported}").status_code == 200, imported
        assert client.get("/dashboard/vendor/chart.js-LICENSE.md").status_code == 200
        assert client.get("/dashboard/missing.js").status_code == 404
    assert not re.search(r"https?://", page.text)


def test_the_page_is_open_when_reads_are_protected_but_its_data_is_not(
    registry: Registry,
) -> None:
    settings = registry.settings(api_token=SecretStr("reader-token-5678"), protect_reads=True)
    with serve(settings) as running, running.client() as client:
        running.wait_ready()
        assert client.get("/").status_code == 200
        assert client.get("/dashboard/app.js").status_code == 200
        for path in ("/model/evaluation", "/model/distributions", "/model/examples"):
            assert client.get(path).status_code == 401, path
        headers = {"Authorization": "Bearer reader-token-5678"}
        assert client.get("/model/retrains", headers=headers).status_code == 200
