"""The one MLflow access layer: tracking runs, logging models, the registry and the champion alias.

Everything else in cncwear talks to MLflow through :class:`ModelStore`, so the tracking URI, the
serialisation format and the tag names (:mod:`cncwear.registry.tags`) are decided in one place.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data.pandas_dataset
import mlflow.sklearn
import numpy as np
import pandas as pd
import redis
import skops.io
from filelock import FileLock
from mlflow.data.dataset_source import DatasetSource
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from pydantic import BaseModel, ConfigDict
from sklearn.pipeline import Pipeline

from cncwear.core.errors import ModelLoadError, NoChampionError, PromotionLockError
from cncwear.core.schema import LABELS, PROCESS_COLUMN, SENSOR_NUMERIC_COLUMNS, input_columns
from cncwear.core.settings import Settings
from cncwear.registry.tags import Tag

logger = logging.getLogger(__name__)

PROFILE_FILE = "reference_profile.json"
MODEL_ARTIFACT = "model"
PROMOTION_LOCK_WAIT_SECONDS = 600
PROMOTION_LOCK_LEASE_SECONDS = 900
"""A Redis promotion lock expires after this, so a worker that dies holding it blocks no one for
long; a promotion (one champion re-scored on the holdout) takes well under a minute."""


class CandidateSummary(BaseModel):
    """One candidate of a retrain, as its run recorded it."""

    model_config = ConfigDict(frozen=True)

    name: str
    run_id: str
    metrics: dict[str, float]
    """Logged metrics: ``holdout_*`` (held-out experiments), ``cv_grouped_accuracy``,
    ``leaky_row_split_accuracy`` (leaky: for comparison only), ``fit_seconds``."""
    error: str | None


class RetrainSummary(BaseModel):
    """One retrain, as its parent run recorded it: what it compared and what it decided. (Both
    summaries are pydantic models because the API serves them as they are: ``GET
    /model/retrains``.)"""

    model_config = ConfigDict(frozen=True)

    run_id: str
    started_at: datetime
    status: str
    """MLflow's run status: RUNNING, FINISHED or FAILED."""
    reason: str | None
    budget: str | None
    job_id: str | None
    winner: str | None
    registered_version: str | None
    decision: str | None
    """A :class:`~cncwear.registry.tags.PromotionOutcome` (retrains logged before it say ``kept
    champion`` for ``not promoted``); None while running or when it failed."""
    decision_reason: str | None
    candidates: Sequence[CandidateSummary]
    shadow_state: str | None = None
    """Where its version is as a challenger (a :class:`~cncwear.registry.tags.ShadowState`:
    awaiting live evidence, promoted, rejected, replaced); None when it never was one."""
    shadow_reason: str | None = None
    shadow_decided_by: str | None = None
    """``automatic`` (the shadow decision, a newer retrain) or ``manual`` (an operator)."""


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version, loaded: the pipeline and what was logged with it."""

    name: str
    version: str
    run_id: str
    pipeline: Pipeline
    profile: dict[str, Any]
    tags: dict[str, str]


class ModelStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tracking_uri = settings.tracking_uri()
        if not settings.mlflow_tracking_uri:
            settings.home.mkdir(parents=True, exist_ok=True)
        with _environment_kept("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            # MLflow's fluent API (runs, log_model) reads a process-wide URI. It also exports it
            # to the environment, where it would override the next Settings() built in this
            # process: keep the environment as the user set it.
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # -- tracking -------------------------------------------------------------------------------

    def experiment_id(self) -> str:
        name = self.settings.mlflow_experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(
                self.client.create_experiment(
                    name, artifact_location=self.settings.artifact_location()
                )
            )
        except MlflowException:  # created meanwhile by a concurrent retrain
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    @contextmanager
    def retrain_run(self, *, tags: dict[str, str]) -> Iterator[str]:
        """The parent run of one retrain; yields its id."""
        with mlflow.start_run(
            experiment_id=self.experiment_id(), tags={Tag.RUN_KIND: "retrain", **tags}
        ) as run:
            yield run.info.run_id

    @contextmanager
    def candidate_run(self, name: str) -> Iterator[str]:
        """A child run of the active retrain run, one per candidate."""
        with mlflow.start_run(
            experiment_id=self.experiment_id(),
            run_name=name,
            nested=True,
            tags={Tag.RUN_KIND: "candidate", Tag.CANDIDATE: name},
        ) as run:
            yield run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        mlflow.log_params({k: _param(v) for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow.set_tags(tags)

    def log_json(self, payload: Any, path: str) -> None:
        mlflow.log_dict(payload, path)

    def log_dataset_input(
        self,
        rows: pd.DataFrame,
        *,
        name: str,
        digest: str,
        source: dict[str, Any],
        targets: str | None = None,
        context: str = "training",
    ) -> None:
        """Log the rows the active run trains on as an MLflow dataset input: MLflow's own lineage,
        shown with the run and searchable. ``digest`` identifies the rows' content (a dataset
        version's id); ``source`` says where they come from (the version and its parts)."""
        dataset = mlflow.data.pandas_dataset.from_pandas(
            rows, source=DataVersionSource(source), name=name, digest=digest, targets=targets
        )
        mlflow.log_input(dataset, context=context)

    def log_model(
        self, pipeline: Pipeline, *, input_example: pd.DataFrame, profile: dict[str, Any]
    ) -> str:
        """Log a fitted pipeline as an MLflow model with signature, input example and its reference
        profile; returns the model URI to register."""
        probabilities = pipeline.predict_proba(input_example)
        signature = infer_signature(input_example, probabilities)
        with tempfile.TemporaryDirectory() as folder:
            profile_path = Path(folder) / PROFILE_FILE
            profile_path.write_text(json.dumps(profile))
            info = mlflow.sklearn.log_model(
                pipeline,
                name=MODEL_ARTIFACT,
                signature=signature,
                input_example=input_example,
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=trusted_types(pipeline),
                pyfunc_predict_fn="predict_proba",
                pip_requirements=_requirements(),
                extra_files=[str(profile_path)],
            )
        return str(info.model_uri)

    def recent_retrains(self, limit: int = 5) -> list[RetrainSummary]:
        """The latest retrains of the experiment, newest first, each with its candidates."""
        experiment = self.client.get_experiment_by_name(self.settings.mlflow_experiment)
        if experiment is None:
            return []
        parents = self.client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{Tag.RUN_KIND}` = 'retrain'",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
        return [self._retrain_summary(experiment.experiment_id, parent) for parent in parents]

    def _retrain_summary(self, experiment_id: str, parent: Run) -> RetrainSummary:
        children = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{Tag.PARENT_RUN_ID}` = '{parent.info.run_id}'",
            order_by=["attributes.start_time ASC"],
        )
        tags = parent.data.tags
        return RetrainSummary(
            run_id=parent.info.run_id,
            started_at=datetime.fromtimestamp(int(parent.info.start_time) / 1000, tz=UTC),
            status=str(parent.info.status),
            reason=tags.get(Tag.RETRAIN_REASON),
            budget=tags.get(Tag.BUDGET),
            job_id=tags.get(Tag.JOB_ID),
            winner=tags.get(Tag.WINNER),
            registered_version=tags.get(Tag.REGISTERED_VERSION),
            decision=tags.get(Tag.DECISION),
            decision_reason=tags.get(Tag.REASON),
            shadow_state=tags.get(Tag.SHADOW_STATE),
            shadow_reason=tags.get(Tag.SHADOW_REASON),
            shadow_decided_by=tags.get(Tag.SHADOW_DECIDED_BY),
            candidates=[
                CandidateSummary(
                    name=child.data.tags.get(Tag.CANDIDATE, child.info.run_name or "?"),
                    run_id=child.info.run_id,
                    metrics=dict(child.data.metrics),
                    error=child.data.tags.get(Tag.ERROR),
                )
                for child in children
            ],
        )

    def run(self, run_id: str) -> Run:
        """A run as tracked: its metrics, parameters, tags and times."""
        return self.client.get_run(run_id)

    def run_json(self, run_id: str, path: str) -> Any:
        """A JSON artifact logged with :meth:`log_json` in a run."""
        with tempfile.TemporaryDirectory(prefix="cncwear-artifact-") as folder:
            local = self.client.download_artifacts(run_id, path, dst_path=folder)
            return json.loads(Path(local).read_text())

    # -- registry -------------------------------------------------------------------------------

    def register(self, model_uri: str, *, tags: dict[str, str]) -> ModelVersion:
        registered = mlflow.register_model(model_uri, self.settings.model_name, tags=tags)
        return self.client.get_model_version(self.settings.model_name, registered.version)

    def versions_for_job(self, job_id: str) -> list[ModelVersion]:
        """Versions already registered by a job, so a redelivered job does not register twice."""
        found = self.client.search_model_versions(
            f"name = '{self.settings.model_name}' and tags.`{Tag.JOB_ID}` = '{job_id}'"
        )
        return list(found)

    def versions_trained_on(self, data_version: str) -> list[str]:
        """The model versions trained on a dataset version, oldest first."""
        found = self.client.search_model_versions(
            f"name = '{self.settings.model_name}' and tags.`{Tag.DATA_VERSION}` = '{data_version}'"
        )
        return sorted((str(v.version) for v in found), key=int)

    def champion_version(self) -> ModelVersion | None:
        return self.alias_version(self.settings.champion_alias)

    def challenger_version(self) -> ModelVersion | None:
        """The version in shadow (``CNCWEAR_CHALLENGER_ALIAS``), if any."""
        return self.alias_version(self.settings.challenger_alias)

    def alias_version(self, alias: str) -> ModelVersion | None:
        try:
            registered = self.client.get_registered_model(self.settings.model_name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        version = registered.aliases.get(alias)
        if version is None:
            return None
        return self.client.get_model_version(self.settings.model_name, str(version))

    def set_champion(self, version: str) -> None:
        self.client.set_registered_model_alias(
            self.settings.model_name, self.settings.champion_alias, version
        )

    def set_challenger(self, version: str) -> None:
        self.client.set_registered_model_alias(
            self.settings.model_name, self.settings.challenger_alias, version
        )

    def remove_challenger(self) -> None:
        self.client.delete_registered_model_alias(
            self.settings.model_name, self.settings.challenger_alias
        )

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Tag a run that need not be active (a retrain finished earlier)."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.settings.model_name, version, key, value)

    @contextmanager
    def promotion_lock(self) -> Iterator[None]:
        """Serialises read-compare-set of the champion alias between concurrent retrains, so that a
        slower retrain cannot overwrite a better champion promoted meanwhile (no lost update).
        Workers on several machines sharing one registry take a lock in Redis; processes of one
        machine may use a lock file under ``home``."""
        if self.settings.uses_redis_promotion_lock():
            with _redis_lock(self.settings):
                yield
            return
        self.settings.home.mkdir(parents=True, exist_ok=True)
        with FileLock(self.settings.home / "promotion.lock", timeout=PROMOTION_LOCK_WAIT_SECONDS):
            yield

    # -- loading --------------------------------------------------------------------------------

    def load_champion(self) -> LoadedModel:
        champion = self.champion_version()
        if champion is None:
            raise NoChampionError(
                f"no model holds the alias {self.settings.champion_alias!r} of "
                f"{self.settings.model_name!r} yet: run a retrain first"
            )
        return self.load_version(champion)

    def load_version(self, model_version: ModelVersion) -> LoadedModel:
        uri = f"models:/{self.settings.model_name}/{model_version.version}"
        try:
            with tempfile.TemporaryDirectory(prefix="cncwear-model-") as folder:
                local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=folder))
                pipeline = mlflow.sklearn.load_model(str(local))
                profile = json.loads((local / "extra_files" / PROFILE_FILE).read_text())
        except Exception as error:  # any failure here means the version is unusable
            raise ModelLoadError(
                f"version {model_version.version} cannot be loaded: {error}"
            ) from error
        if not isinstance(pipeline, Pipeline) or not hasattr(pipeline, "predict_proba"):
            raise ModelLoadError(f"version {model_version.version} is not a cncwear pipeline")
        problem = incompatibility(pipeline)
        if problem is not None:
            raise ModelLoadError(f"version {model_version.version} is incompatible: {problem}")
        return LoadedModel(
            name=self.settings.model_name,
            version=str(model_version.version),
            run_id=str(model_version.run_id),
            pipeline=pipeline,
            profile=profile,
            tags=dict(model_version.tags),
        )

    # -- artifacts of a version -----------------------------------------------------------------

    def version_tags(self, version: str) -> dict[str, str]:
        model_version = self.client.get_model_version(self.settings.model_name, version)
        return dict(model_version.tags)

    def version_run_id(self, version: str) -> str:
        """The run that logged a version (its artifacts are the run's)."""
        return str(self.client.get_model_version(self.settings.model_name, version).run_id)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        """Store the files of ``folder`` under ``artifact_path`` among a run's artifacts."""
        self.client.log_artifacts(run_id, str(folder), artifact_path)

    def download_artifacts(self, run_id: str, path: str, dst: Path) -> Path:
        """Download ``path`` of a run's artifacts into ``dst``; returns where it landed."""
        return Path(self.client.download_artifacts(run_id, path, dst_path=str(dst)))

    def load_pipeline(self, version: str) -> Any:
        """A version's model as MLflow's scikit-learn flavour loads it (no profile, no checks)."""
        return mlflow.sklearn.load_model(f"models:/{self.settings.model_name}/{version}")


class DataVersionSource(DatasetSource):
    """The source of a dataset input: a cncwear dataset version (the base data plus labelled runs,
    in the runs' store). MLflow records its description; it is not loaded back through MLflow."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.description = description

    @staticmethod
    def _get_source_type() -> str:
        return "cncwear_data_version"

    def load(self, **_: Any) -> Any:
        raise NotImplementedError("read a dataset version with cncwear.data.runs, not MLflow")

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> DataVersionSource:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return dict(self.description)

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> DataVersionSource:
        return cls(dict(source_dict))


def incompatibility(pipeline: Pipeline) -> str | None:
    """Why a loaded pipeline cannot serve cncwear's rows, or None. A version registered by hand
    (another model, another schema) loads fine and would then answer every request wrongly: it is
    refused at load instead."""
    columns = getattr(pipeline, "feature_names_in_", None)
    if columns is None:
        return "it does not name its input columns (fitted on an array, not on raw rows)"
    known = set(input_columns(use_identifying_columns=True))
    unknown = [str(c) for c in columns if c not in known]
    if unknown:
        return f"it takes columns the raw-row schema does not have: {unknown[:5]}"
    if PROCESS_COLUMN not in set(columns) and not set(SENSOR_NUMERIC_COLUMNS) & set(columns):
        return "it takes none of the sensor readings"
    classes = [int(c) if isinstance(c, int | np.integer) else c for c in pipeline.classes_]
    if classes != sorted(LABELS.values()):
        return f"its classes are {classes[:5]}, not {sorted(LABELS.values())} (unworn, worn)"
    return None


@contextmanager
def _redis_lock(settings: Settings) -> Iterator[None]:
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    lock = client.lock(
        f"cncwear:promotion-lock:{settings.model_name}",
        timeout=PROMOTION_LOCK_LEASE_SECONDS,
        blocking_timeout=PROMOTION_LOCK_WAIT_SECONDS,
    )
    try:
        if not lock.acquire():
            raise PromotionLockError(
                f"the promotion lock of {settings.model_name!r} in Redis stayed taken for "
                f"{PROMOTION_LOCK_WAIT_SECONDS} s"
            )
        try:
            yield
        finally:
            lock.release()
    finally:
        client.close()


@contextmanager
def _environment_kept(*names: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def trusted_types(pipeline: Pipeline) -> list[str]:
    """The exact types skops must trust to load this pipeline: MLflow 3 refuses unknown ones."""
    return list(skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)))


def _requirements() -> list[str]:
    names = ("scikit-learn", "numpy", "pandas", "scipy", "skops")
    return [f"{name}=={package_version(name)}" for name in names]


def _param(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text[:6000]
