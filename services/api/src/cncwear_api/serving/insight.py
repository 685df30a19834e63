"""What the dashboard plots, built from what was logged with the model: the evaluation on held-out
experiments (confusion matrix, ROC and precision-recall curves), the training distributions of the
reference profile, real rows of held-out experiments, and the recent retrains of the registry.

Evaluation and distributions are built once when a version is loaded; a failure to read them is
logged and leaves them empty, never fails the load (they are information, not the model)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cncwear.core.errors import NoChallengerError
from cncwear.core.schema import LABEL_COLUMN, LABELS
from cncwear.data.dataset import load_dataset
from cncwear.data.profile import feature_histograms
from cncwear.registry.store import LoadedModel, ModelStore
from cncwear.registry.tags import Tag
from cncwear_api.schemas.common import ModelRef
from cncwear_api.schemas.model import (
    ChallengerPublic,
    ConfusionMatrix,
    ExampleRow,
    FeatureDistribution,
    Histogram,
    ModelEvaluation,
    ModelPublic,
    PrecisionRecallCurve,
    RetrainPublic,
    RocCurve,
    TrainingDistributions,
)

logger = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"
"""Logged in each candidate's run by ``cncwear.training``."""
LABEL_NAMES = {number: name for name, number in LABELS.items()}


def model_evaluation(store: ModelStore, loaded: LoadedModel, card: ModelPublic) -> ModelEvaluation:
    """The held-out evaluation logged with the version's run."""
    holdout: dict[str, Any] = {}
    try:
        holdout = store.run_json(loaded.run_id, EVALUATION_FILE)["holdout"]
    except Exception as error:
        logger.warning("evaluation of version %s unavailable: %s", loaded.version, error)
    curves = holdout.get("curves")
    matrix = holdout.get("confusion_matrix")
    return ModelEvaluation(
        model=ModelRef(name=loaded.name, version=loaded.version),
        holdout_experiments=card.metrics.holdout_experiments,
        metrics=card.metrics.holdout,
        leaky_row_split_accuracy=card.leaky_row_split.accuracy,
        confusion_matrix=None if matrix is None else ConfusionMatrix(counts=matrix),
        roc=None
        if curves is None
        else RocCurve(
            fpr=curves["roc_fpr"],
            tpr=curves["roc_tpr"],
            thresholds=curves["roc_thresholds"],
            auc=holdout.get("roc_auc"),
        ),
        precision_recall=None
        if curves is None
        else PrecisionRecallCurve(
            recall=curves["pr_recall"],
            precision=curves["pr_precision"],
            thresholds=curves["pr_thresholds"],
            average_precision=curves["average_precision"],
        ),
        per_experiment_accuracy={
            str(k): float(v) for k, v in holdout.get("per_experiment", {}).items()
        },
    )


def training_distributions(loaded: LoadedModel) -> TrainingDistributions:
    """Histograms of the engineered features the model sees, from its reference profile."""
    profile = loaded.profile
    histograms = feature_histograms(profile)
    features = [
        FeatureDistribution(
            feature=feature,
            mean=profile["features"][feature]["mean"],
            std=profile["features"][feature]["std"],
            histogram=Histogram(edges=edges, counts=counts),
        )
        for feature, (edges, counts) in histograms.items()
    ]
    probability = profile.get("holdout_probability_worn", {"bin_edges": [], "counts": []})
    sample = profile.get("sample", {})
    return TrainingDistributions(
        model=ModelRef(name=loaded.name, version=loaded.version),
        rows=int(profile.get("rows", 0)),
        sample_rows=len(next(iter(sample.values()), [])),
        class_balance=profile.get("class_balance", {}),
        features=features,
        holdout_probability_worn=Histogram(
            edges=probability["bin_edges"], counts=probability["counts"]
        ),
    )


@lru_cache(maxsize=4)
def example_rows(
    data_dir: Path, experiments: tuple[int, ...], columns: tuple[str, ...], per_experiment: int
) -> tuple[ExampleRow, ...]:
    """Rows spread evenly through each held-out experiment (the same ones on every call), read
    from the data folder once per set of experiments. Blocking: call it from a worker thread."""
    dataset = load_dataset(data_dir).active()
    if experiments:  # else (a version without its holdout recorded): rows of every experiment
        dataset = dataset.subset(list(experiments))
    examples: list[ExampleRow] = []
    for experiment in dataset.experiments:
        rows = dataset.rows[dataset.groups == experiment]
        picks = np.unique(np.linspace(0, len(rows) - 1, per_experiment).round().astype(int))
        chosen = rows.iloc[picks]
        for label, values in zip(
            chosen[LABEL_COLUMN].tolist(), chosen[list(columns)].to_dict("records"), strict=True
        ):
            examples.append(
                ExampleRow(
                    experiment=int(experiment),
                    true_label=LABEL_NAMES[int(label)],  # type: ignore[arg-type]
                    row={str(k): _plain(v) for k, v in values.items()},
                )
            )
    return tuple(examples)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def recent_retrains(store: ModelStore, limit: int) -> list[RetrainPublic]:
    """The latest retrains in the registry's experiment with their candidates and the dataset
    version each trained on, newest first. Blocking (registry reads): call it from a worker
    thread."""
    return [
        RetrainPublic.model_validate(
            {**summary.model_dump(), "data_version": _data_version(store, summary.run_id)}
        )
        for summary in store.recent_retrains(limit)
    ]


def _data_version(store: ModelStore, run_id: str) -> str | None:
    """The retrain run's dataset version tag (one more registry read per retrain)."""
    try:
        return store.run(run_id).data.tags.get(Tag.DATA_VERSION)
    except Exception as error:  # information: a registry hiccup leaves it unknown
        logger.warning("dataset version of retrain %s unavailable: %s", run_id, error)
        return None


def challenger(store: ModelStore) -> ChallengerPublic:
    """The version holding the challenger alias, from the registry. Raises
    :class:`NoChallengerError` when none does. Blocking (registry reads)."""
    settings = store.settings
    found = store.challenger_version()
    if found is None:
        raise NoChallengerError(
            f"no version of {settings.model_name!r} holds the alias "
            f"{settings.challenger_alias!r}: nothing is in shadow"
        )
    champion = store.champion_version()
    tags = dict(found.tags)
    since_text = tags.get(Tag.CHALLENGER_SINCE)
    since = None if since_text is None else float(since_text)
    return ChallengerPublic(
        name=settings.model_name,
        version=str(found.version),
        alias=settings.challenger_alias,
        champion_version=None if champion is None else str(champion.version),
        since=None if since is None else datetime.fromtimestamp(since, tz=UTC),
        age_seconds=None if since is None else max(0.0, time.time() - since),
        max_age_seconds=settings.shadow_max_age_seconds,
        state=tags.get(Tag.SHADOW_STATE),
        reason=tags.get(Tag.SHADOW_REASON),
        candidate=tags.get(Tag.CANDIDATE),
        holdout={
            key.removeprefix(Tag.HOLDOUT_PREFIX): float(value)
            for key, value in tags.items()
            if key.startswith(Tag.HOLDOUT_PREFIX)
        },
    )
