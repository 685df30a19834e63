"""One retrain: take a dataset version (the latest unless one is named), hold out whole experiments
and runs, fit the candidates, log them to MLflow, register the best and promote it when it beats
the champion on the same grouped holdout."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from cncwear.core.choices import DEFAULT_CANDIDATES, Budget, CandidateName
from cncwear.core.errors import TrainingError
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.data.features import feature_importances, selected_features
from cncwear.data.profile import build_profile
from cncwear.registry.events import publish_promotion
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.compiled.artifact import registered_pipeline
from cncwear.serving.compiled.attach import attach_compiled_form
from cncwear.training.automl.engines import get_engine
from cncwear.training.budget import BUDGETS
from cncwear.training.candidates import (
    AutoMLCandidate,
    BaselineCandidate,
    Candidate,
    FitContext,
    FittedCandidate,
    decision_tree,
    random_forest,
)
from cncwear.training.evaluation import (
    Evaluation,
    HoldoutSplit,
    evaluate,
    holdout_split,
    leaky_row_split_accuracy,
)
from cncwear.training.lineage import TrainingData, log_lineage, training_data
from cncwear.training.promotion import PromotionDecision, decide_promotion

logger = logging.getLogger(__name__)


Progress = Callable[[str, float], None]
"""Called with a stage name and the percent of the retrain done."""


@dataclass
class CandidateReport:
    name: str
    params: dict[str, Any] = field(default_factory=dict)
    cv_accuracy: float | None = None
    holdout: Evaluation | None = None
    leaky_accuracy: float | None = None
    fit_seconds: float = 0.0
    selected_features: list[str] = field(default_factory=list)
    importances: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    model_uri: str | None = None
    error: str | None = None
    pipeline: Pipeline | None = field(default=None, repr=False)
    """The fitted pipeline, as logged (kept for callers such as benchmarks and tests)."""

    def score(self, metric: str) -> float:
        if self.holdout is None:
            return float("-inf")
        return self.holdout.metrics().get(metric, float("-inf"))


@dataclass
class RetrainReport:
    run_id: str
    data_hash: str
    data_version: str
    """The dataset version trained on (``cncwear.data.runs``)."""
    data_runs: list[str]
    """The labelled runs of that version."""
    split: HoldoutSplit
    budget: Budget
    candidates: list[CandidateReport]
    winner: str
    version: str
    decision: PromotionDecision
    warnings: list[str]
    seconds: float


def make_candidate(name: str, settings: Settings) -> Candidate:
    if name == "decision_tree":
        return decision_tree()
    if name == "random_forest":
        return random_forest()
    if name == "automl":
        return AutoMLCandidate(engine=get_engine(settings.automl_engine, settings))
    if name == "baseline":
        return BaselineCandidate()
    known = ", ".join(c.value for c in CandidateName)
    raise TrainingError(f"unknown candidate {name!r}; known: {known}")


def retrain(
    settings: Settings,
    *,
    data_version: str | None = None,
    budget: Budget | None = None,
    candidates: Sequence[str] = tuple(DEFAULT_CANDIDATES),
    data_dir: Path | None = None,
    reason: str = "on demand",
    job_id: str | None = None,
    progress: Progress | None = None,
) -> RetrainReport:
    """Train on ``data_version`` (default: the latest dataset version, made now if the accepted
    runs or the base changed); ``data_dir`` is the base data's folder (default
    ``CNCWEAR_DATA_DIR``). Errors about the data (``NotEnoughRunsError``, an unknown version) are
    raised before anything is logged or registered."""
    started = time.perf_counter()
    report_progress = progress or (lambda stage, percent: None)
    budget = budget or settings.budget
    chosen = [make_candidate(name, settings) for name in candidates]  # fail fast on unknown names
    store = ModelStore(settings)

    report_progress("loading data", 0.0)
    data = training_data(settings, data_version=data_version, data_dir=data_dir)
    dataset = data.dataset
    split = holdout_split(dataset, settings.holdout_fraction, settings.seed)
    train, holdout = (
        dataset.subset(split.train_experiments),
        dataset.subset(split.holdout_experiments),
    )
    context = FitContext.from_settings(settings, BUDGETS[budget])
    run_tags: dict[str, str] = {
        Tag.DATA_HASH: dataset.content_hash,
        Tag.DATA_VERSION: data.version.id,
        Tag.RETRAIN_REASON: reason,
        Tag.BUDGET: budget.value,
    }
    if job_id:
        run_tags[Tag.JOB_ID] = job_id

    with store.retrain_run(tags=run_tags) as run_id:
        store.log_params(
            {
                "budget": budget.value,
                "seed": settings.seed,
                "train_experiments": split.train_experiments,
                "holdout_experiments": split.holdout_experiments,
                "use_identifying_columns": settings.use_identifying_columns,
                "automl_engine": settings.automl_engine.value,
            }
        )
        log_lineage(store, data)
        reports = []
        for index, candidate in enumerate(chosen):
            share = 85.0 / len(chosen)
            report_progress(f"training {candidate.name}", 5.0 + index * share)
            reports.append(
                _train_candidate(
                    candidate,
                    train=train,
                    holdout=holdout,
                    dataset=dataset,
                    context=context,
                    store=store,
                )
            )
        fitted = [r for r in reports if r.error is None]
        if not fitted:
            errors = "; ".join(f"{r.name}: {r.error}" for r in reports)
            raise TrainingError(f"no candidate could be trained: {errors}")

        winner = choose_winner(fitted, settings.promotion_metric)
        report_progress("registering", 90.0)
        version = _register(store, winner, data, run_id, job_id)
        attach_compiled_form(store, version, registered_pipeline(store, version), holdout.rows)
        report_progress("deciding promotion", 95.0)
        decision = decide_promotion(
            store, settings, version, winner.score(settings.promotion_metric), holdout
        )
        if decision.promoted:
            publish_promotion(settings, version, previous=decision.previous_champion)
        warnings = _leak_warnings(reports, settings.leak_warning_margin)
        store.set_tags(
            {
                Tag.WINNER: winner.name,
                Tag.REGISTERED_VERSION: version,
                Tag.DECISION: decision.outcome,
                Tag.REASON: decision.reason,
            }
        )
        store.log_json(
            {"decision": decision.__dict__, "warnings": warnings}, "promotion_decision.json"
        )
    report_progress("done", 100.0)
    return RetrainReport(
        run_id=run_id,
        data_hash=dataset.content_hash,
        data_version=data.version.id,
        data_runs=data.runs,
        split=split,
        budget=budget,
        candidates=reports,
        winner=winner.name,
        version=version,
        decision=decision,
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )


def choose_winner(reports: Sequence[CandidateReport], metric: str) -> CandidateReport:
    """The best candidate on the held-out experiments; a tie goes to the better grouped CV score,
    which is measured inside the training experiments."""
    return max(reports, key=lambda r: (r.score(metric), r.cv_accuracy or -1.0))


def _train_candidate(
    candidate: Candidate,
    *,
    train: Dataset,
    holdout: Dataset,
    dataset: Dataset,
    context: FitContext,
    store: ModelStore,
) -> CandidateReport:
    """Fit, evaluate and log one candidate. A failing candidate is reported, not fatal: the retrain
    still decides on the others."""
    report = CandidateReport(name=candidate.name)
    with store.candidate_run(candidate.name) as run_id:
        report.run_id = run_id
        try:
            fitted = candidate.fit(train, context)
        except Exception as error:
            logger.exception("candidate %s failed", candidate.name)
            report.error = f"{type(error).__name__}: {error}"
            store.set_tags({Tag.ERROR: report.error[:5000]})
            return report
        _fill_report(
            report, fitted=fitted, train=train, holdout=holdout, dataset=dataset, context=context
        )
        store.log_params(fitted.params)
        store.log_metrics(_metrics_to_log(report))
        store.log_json(_evaluation_payload(report), "evaluation.json")
        report.model_uri = store.log_model(
            fitted.pipeline,
            input_example=train.rows[list(fitted.pipeline.feature_names_in_)].head(5),
            profile=candidate_profile(fitted.pipeline, train, holdout, seed=context.seed),
        )
    return report


def candidate_profile(
    pipeline: Pipeline, train: Dataset, holdout: Dataset, *, seed: int
) -> dict[str, Any]:
    """The reference profile logged with a candidate: its training rows and runs, and its
    predictions on the held-out runs."""
    columns = list(pipeline.feature_names_in_)
    return build_profile(
        pipeline,
        train.rows[columns],
        train.labels,
        _probability_worn(pipeline, holdout),
        holdout_x=holdout.rows[columns],
        train_groups=train.groups,
        holdout_groups=holdout.groups,
        seed=seed,
    )


def _fill_report(
    report: CandidateReport,
    *,
    fitted: FittedCandidate,
    train: Dataset,
    holdout: Dataset,
    dataset: Dataset,
    context: FitContext,
) -> None:
    report.pipeline = fitted.pipeline
    report.params = fitted.params
    report.cv_accuracy = fitted.cv_accuracy
    report.fit_seconds = fitted.fit_seconds
    report.details = fitted.details
    report.selected_features = selected_features(fitted.pipeline)
    report.importances = feature_importances(fitted.pipeline)
    report.holdout = evaluate(fitted.pipeline, holdout)
    report.leaky_accuracy = leaky_row_split_accuracy(
        fitted.pipeline, dataset, seed=context.seed, n_jobs=context.n_jobs
    )


def _metrics_to_log(report: CandidateReport) -> dict[str, float]:
    assert report.holdout is not None
    metrics = {f"holdout_{k}": v for k, v in report.holdout.metrics().items()}
    metrics["fit_seconds"] = report.fit_seconds
    if report.cv_accuracy is not None:
        metrics["cv_grouped_accuracy"] = report.cv_accuracy
    if report.leaky_accuracy is not None:
        metrics["leaky_row_split_accuracy"] = report.leaky_accuracy
    return metrics


def _evaluation_payload(report: CandidateReport) -> dict[str, Any]:
    assert report.holdout is not None
    return {
        "holdout": report.holdout.as_dict(),
        "cv_grouped_accuracy": report.cv_accuracy,
        "leaky_row_split_accuracy": report.leaky_accuracy,
        "selected_features": report.selected_features,
        "importances": report.importances,
        "details": report.details,
    }


def _probability_worn(pipeline: Pipeline, dataset: Dataset) -> np.ndarray:
    return np.asarray(pipeline.predict_proba(dataset.rows[list(pipeline.feature_names_in_)])[:, 1])


def _register(
    store: ModelStore, winner: CandidateReport, data: TrainingData, run_id: str, job_id: str | None
) -> str:
    """Register the winner, once per job: a redelivered job reuses the version it registered."""
    if job_id:
        existing = store.versions_for_job(job_id)
        if existing:
            return str(existing[0].version)
    assert winner.model_uri is not None and winner.holdout is not None
    tags = {
        Tag.CANDIDATE: winner.name,
        Tag.DATA_HASH: data.dataset.content_hash,
        Tag.DATA_VERSION: data.version.id,
        Tag.RETRAIN_RUN_ID: run_id,
        **{Tag.holdout(k): f"{v:.6f}" for k, v in winner.holdout.metrics().items()},
    }
    if job_id:
        tags[Tag.JOB_ID] = job_id
    return str(store.register(winner.model_uri, tags=tags).version)


def _leak_warnings(reports: list[CandidateReport], margin: float) -> list[str]:
    warnings = []
    for report in reports:
        if report.holdout is None or report.leaky_accuracy is None:
            continue
        gap = report.leaky_accuracy - report.holdout.accuracy
        if gap > margin:
            warnings.append(
                f"{report.name}: the leaky random row split says {report.leaky_accuracy:.3f} but "
                f"held-out experiments say {report.holdout.accuracy:.3f} (gap {gap:.3f} > "
                f"{margin:.3f}); trust the grouped figure"
            )
    return warnings
