"""A retrain trains on a dataset version (the base data plus accepted labelled runs) and records it:
the same rows give the same model whether they come from the store or from a folder, and the
MLflow run and the registered version say which version and which runs a model learnt from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from cncwear.core.choices import Budget, TrainOn
from cncwear.core.errors import DataVersionNotFoundError, NotEnoughRunsError
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.ids import RunState
from cncwear.data.runs.records import DatasetVersion
from cncwear.data.runs.store import RunStore
from cncwear.data.runs.versions import export_folder
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.training.lineage import VERSION_ARTIFACT
from cncwear.training.retrain import RetrainReport, retrain
from tests.helpers import TEST_REDIS_URL

from .runs_helpers import LEFT_OUT, all_but, base_folder, upload_experiment

UNWORN_RUN, WORN_RUN = "mill-a/2026-12-01/job-17", "mill-a/2026-12-01/job-18"


def make_settings(home: Path, data_dir: Path, **overrides: object) -> Settings:
    return Settings(
        home=home,
        data_dir=data_dir,
        budget=Budget.FAST,
        n_jobs=1,
        redis_url=TEST_REDIS_URL,
        **overrides,
    )


def client_for(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri(), registry_uri=settings.tracking_uri())


@dataclass(frozen=True)
class TrainedOnVersion:
    settings: Settings
    version: DatasetVersion
    report: RetrainReport
    base_only: DatasetVersion
    """The version made before the runs were uploaded."""


@pytest.fixture(scope="module")
def trained_on_version(tmp_path_factory: pytest.TempPathFactory) -> TrainedOnVersion:
    """A decision tree trained on the latest dataset version: 16 bundled experiments as the base,
    experiments 17 (unworn) and 18 (worn) uploaded as accepted runs."""
    root = tmp_path_factory.mktemp("versions")
    settings = make_settings(root / "home", base_folder(root / "base", all_but(*LEFT_OUT)))
    base_only = RunStore(settings).current_version(BaseData.load(settings))
    for run, number in ((UNWORN_RUN, LEFT_OUT[0]), (WORN_RUN, LEFT_OUT[1])):
        record = upload_experiment(settings, run, number)
        assert record.state is RunState.ACCEPTED, record.reasons
    version = RunStore(settings).current_version(BaseData.load(settings))
    report = retrain(settings, candidates=["decision_tree"], reason="on the runs")
    return TrainedOnVersion(settings, version, report, base_only)


def test_a_retrain_trains_on_the_latest_dataset_version_with_its_runs(
    trained_on_version: TrainedOnVersion,
) -> None:
    report, version = trained_on_version.report, trained_on_version.version
    assert report.data_version == version.id
    assert sorted(report.data_runs) == sorted([UNWORN_RUN, WORN_RUN])
    assert sorted(r.run for r in version.runs) == sorted([UNWORN_RUN, WORN_RUN])
    experiments = report.split.train_experiments + report.split.holdout_experiments
    assert len(experiments) == 18  # 16 base experiments and one group per run


def test_training_on_a_version_and_on_its_rows_in_a_folder_gives_the_same_model(
    trained_on_version: TrainedOnVersion, tmp_path: Path
) -> None:
    settings, version = trained_on_version.settings, trained_on_version.version
    folder = export_folder(
        RunStore(settings), version, BaseData.load(settings), tmp_path / "exported"
    )
    # A fresh store with no runs: the folder alone is the whole dataset version.
    from_folder = retrain(
        make_settings(tmp_path / "home", folder), candidates=["decision_tree"], reason="folder"
    )
    on_version = trained_on_version.report
    assert from_folder.split == on_version.split
    assert from_folder.candidates[0].params == on_version.candidates[0].params
    fitted, refitted = on_version.candidates[0].pipeline, from_folder.candidates[0].pipeline
    assert fitted is not None and refitted is not None
    rows = load_dataset(folder).active().rows[list(fitted.feature_names_in_)]
    difference = np.abs(fitted.predict_proba(rows) - refitted.predict_proba(rows)).max()
    assert difference <= 1e-9


def test_the_retrain_run_logs_the_version_as_a_dataset_input_and_lists_its_runs(
    trained_on_version: TrainedOnVersion,
) -> None:
    settings, version = trained_on_version.settings, trained_on_version.version
    run = client_for(settings).get_run(trained_on_version.report.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest) == (version.id, version.id)
    assert dataset.source_type == "cncwear_data_version"
    source = json.loads(dataset.source)
    assert sorted(source["runs"]) == sorted([UNWORN_RUN, WORN_RUN])
    assert (source["data_version"], source["train_on"]) == (version.id, TrainOn.BASE_AND_RUNS)
    assert {t.key: t.value for t in dataset_input.tags}["mlflow.data.context"] == "training"
    assert json.loads(dataset.profile)["num_rows"] > 0
    assert run.data.tags[Tag.DATA_VERSION] == version.id
    logged = ModelStore(settings).run_json(run.info.run_id, VERSION_ARTIFACT)
    assert logged["id"] == version.id
    assert sorted(r["run"] for r in logged["parts"]["runs"]) == sorted([UNWORN_RUN, WORN_RUN])


def test_the_registered_version_is_tagged_with_the_dataset_version(
    trained_on_version: TrainedOnVersion,
) -> None:
    settings, report = trained_on_version.settings, trained_on_version.report
    registered = client_for(settings).get_model_version(settings.model_name, report.version)
    assert registered.tags[Tag.DATA_VERSION] == trained_on_version.version.id
    store = ModelStore(settings)
    assert store.versions_trained_on(trained_on_version.version.id) == [report.version]


def test_training_on_runs_alone_with_one_label_fails_clearly_and_registers_nothing(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path / "home", base_folder(tmp_path / "base", all_but(*LEFT_OUT)), train_on="runs"
    )
    assert upload_experiment(settings, WORN_RUN, LEFT_OUT[1]).state is RunState.ACCEPTED
    with pytest.raises(NotEnoughRunsError, match="unworn"):
        retrain(settings, candidates=["decision_tree"], reason="runs only")
    client = client_for(settings)
    assert client.search_model_versions(f"name = '{settings.model_name}'") == []
    experiments = client.search_experiments()
    assert client.search_runs([e.experiment_id for e in experiments]) == []


def test_a_retrain_trains_on_the_version_it_names(trained_on_version: TrainedOnVersion) -> None:
    older = trained_on_version.base_only
    report = retrain(
        trained_on_version.settings,
        data_version=older.id,
        candidates=["baseline"],
        reason="the older version",
    )
    assert (report.data_version, report.data_runs) == (older.id, [])
    assert len(report.split.train_experiments + report.split.holdout_experiments) == 16
    run = client_for(trained_on_version.settings).get_run(report.run_id)
    assert run.inputs.dataset_inputs[0].dataset.digest == older.id


def test_an_unknown_version_is_refused_before_anything_is_logged(
    trained_on_version: TrainedOnVersion,
) -> None:
    settings = trained_on_version.settings
    client = client_for(settings)
    before = len(client.search_runs([ModelStore(settings).experiment_id()]))
    with pytest.raises(DataVersionNotFoundError, match="0123456789abcdef"):
        retrain(settings, data_version="0123456789abcdef", candidates=["baseline"])
    assert len(client.search_runs([ModelStore(settings).experiment_id()])) == before
