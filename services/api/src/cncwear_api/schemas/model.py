"""``/model`` and its views: the champion's card, evaluation, distributions, examples, retrains."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cncwear.core.settings import PromotionPolicy
from cncwear.registry.store import CandidateSummary, RetrainSummary
from cncwear_api.schemas.common import JsonScalar, Label, ModelRef


class GroupedMetrics(BaseModel):
    """Measured on whole experiments the model never saw: the figures to trust."""

    description: str = (
        "held-out experiments: whole experiments kept out of training, rows scored one by one"
    )
    holdout: dict[str, float]
    """Row-level metrics on the held-out experiments (accuracy, precision, recall, f1, mcc,
    roc_auc, and experiment_accuracy: the share of held-out experiments whose majority vote is
    right)."""
    cv_grouped_accuracy: float | None
    """Cross-validated accuracy with folds of whole training experiments."""
    holdout_experiments: list[int]


class LeakyFigure(BaseModel):
    """The random row split's accuracy, shown only to compare: it leaks."""

    accuracy: float | None
    warning: str = (
        "LEAKY: a random 80/20 split of rows, where near-duplicate neighbouring rows of one "
        "experiment land on both sides; it overstates accuracy and is never used to select or "
        "promote a model"
    )


class Serving(BaseModel):
    runtime: Literal["onnxruntime", "scikit-learn"]
    converter: str | None
    parity_max_abs_diff: float | None
    """Largest difference in wear probability from scikit-learn, measured on the held-out rows
    when the version was registered."""
    parity_tolerance: float | None
    parity_rows: int | None
    load_check_max_abs_diff: float | None
    """The same difference measured again by this server when it loaded the model."""
    fallback_reason: str | None
    """Why scikit-learn serves this version, when it does."""


class ChallengerLoad(BaseModel):
    """This replica's challenger beside the champion (``CNCWEAR_PROMOTION_POLICY=shadow``)."""

    version: str | None
    """The version loaded here; None when none is (none in shadow, or its load failed)."""
    load_error: str | None
    """Why this replica could not load the version in shadow (the champion's answers are not
    affected)."""
    load_failures: int
    """Failed challenger loads on this replica since it started."""


class ModelPublic(BaseModel):
    name: str
    version: str
    run_id: str
    retrain_run_id: str | None
    candidate: str | None
    estimator: str
    engine: str
    """What searched the configuration: ``scikit-learn`` (randomized search) or an AutoML
    engine."""
    trained_at: datetime | None
    registered_at: datetime | None
    loaded_at: datetime
    data_hash: str | None
    data_version: str | None
    """The dataset version (``GET /data/versions``) the version was trained on; None for versions
    trained on a data folder before dataset versions existed."""
    promotion_reason: str | None
    promotion_policy: PromotionPolicy
    """The policy this server runs under (``CNCWEAR_PROMOTION_POLICY``); under ``shadow`` it loads
    the challenger beside the champion and decides on labelled runs (``GET /model/challenger``)."""
    input_columns: list[str]
    selected_features: list[str]
    metrics: GroupedMetrics
    leaky_row_split: LeakyFigure
    serving: Serving
    challenger: ChallengerLoad | None = None
    """Under the shadow policy, the challenger this replica has loaded or could not load
    (``GET /model/challenger`` has the rest); None under ``offline``."""


class ConfusionMatrix(BaseModel):
    """Rows are the true label, columns the predicted one, in the order of ``labels``."""

    labels: list[Label] = ["unworn", "worn"]
    counts: list[list[int]]


class RocCurve(BaseModel):
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]
    """Wear probability from which a row is called worn, at each point."""
    auc: float | None


class PrecisionRecallCurve(BaseModel):
    recall: list[float]
    precision: list[float]
    thresholds: list[float]
    average_precision: float


class ModelEvaluation(BaseModel):
    """The champion on its held-out experiments, as scored when it was trained."""

    model: ModelRef
    description: str = (
        "held-out experiments: whole experiments kept out of training; the label threshold is 0.5"
    )
    holdout_experiments: list[int]
    metrics: dict[str, float]
    leaky_row_split_accuracy: float | None
    confusion_matrix: ConfusionMatrix | None
    """None for a version trained before it was recorded."""
    roc: RocCurve | None
    precision_recall: PrecisionRecallCurve | None
    per_experiment_accuracy: dict[str, float]
    """Row accuracy of each held-out experiment (keys: experiment numbers)."""


class Histogram(BaseModel):
    edges: list[float]
    """``len(counts) + 1`` bin edges."""
    counts: list[int]


class FeatureDistribution(BaseModel):
    feature: str
    """An engineered feature, as the model's estimator sees it."""
    mean: float
    std: float
    histogram: Histogram


class TrainingDistributions(BaseModel):
    """The training data as the model saw it, from the reference profile logged with the model:
    what drift monitoring compares live traffic against."""

    model: ModelRef
    rows: int
    """Training rows the profile describes."""
    sample_rows: int
    """Rows of the profile's sample behind the histograms."""
    class_balance: dict[str, float]
    features: list[FeatureDistribution]
    holdout_probability_worn: Histogram
    """Predicted wear probability on the held-out experiments."""


class ExampleRow(BaseModel):
    experiment: int
    true_label: Label
    row: dict[str, JsonScalar]
    """Raw sensor row, ready for ``/predict`` and ``/explain``."""


class ExampleRows(BaseModel):
    """Real rows of the champion's held-out experiments, to try the model and its explanations."""

    model: ModelRef
    examples: list[ExampleRow]


# The registry's summaries of retrains, served as they are; subclassed only to keep their names
# (and so their schemas) in the API document. No docstring: it would become their description.


class CandidatePublic(CandidateSummary):
    pass


class RetrainPublic(RetrainSummary):
    candidates: list[CandidatePublic]
    data_version: str | None = None
    """The dataset version the retrain trained on (its run's ``cncwear.data_version`` tag)."""


class ShadowEvidencePublic(BaseModel):
    """The last shadow decision this replica took about the challenger, and its evidence: the
    labelled runs both models scored (``docs/promotion.md``)."""

    decided_at: datetime
    outcome: str
    """``promote``, ``reject`` or ``inconclusive``."""
    reason: str
    runs: int
    runs_by_label: dict[str, int]
    challenger_wins: int
    """Runs the challenger got right and the champion wrong."""
    champion_wins: int
    p_value: float
    """Exact McNemar test on those discordant runs."""
    needs: list[str]
    """What the next decision needs to promote, when inconclusive."""
    champion_accuracy: float | None
    """Row accuracy over the rows of those runs it scored."""
    challenger_accuracy: float | None
    agreement: float | None
    """Share of the rows both scored given the same label."""


class ChallengerPublic(BaseModel):
    """The version in shadow (``CNCWEAR_PROMOTION_POLICY=shadow``), as the registry records it."""

    name: str
    version: str
    alias: str
    champion_version: str | None
    since: datetime | None
    """When it got the challenger alias; None for an alias set by hand outside cncwear."""
    age_seconds: float | None
    max_age_seconds: float
    """Past this without a significant win, it is rejected."""
    state: str | None
    """``challenger: awaiting live evidence`` while in shadow."""
    reason: str | None
    candidate: str | None
    holdout: dict[str, float]
    """Its row-level metrics on its retrain's held-out experiments."""
    loaded: bool | None = None
    """Whether this replica has it loaded beside the champion; None when it loads no challenger
    (``CNCWEAR_PROMOTION_POLICY=offline``)."""
    load_error: str | None = None
    """Why this replica could not load it (the champion's answers are not affected)."""
    load_failures: int = 0
    """Failed challenger loads on this replica since it started."""
    evidence: ShadowEvidencePublic | None = None
    """The last shadow decision on this replica about this version; None before the first."""


class ChallengerDecisionCreate(BaseModel):
    """Why an operator promotes or rejects the challenger: recorded on the version and its
    retrain run."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "calls every run worn on mill 3"}]},
    )

    reason: str = Field(min_length=1, max_length=500)


class ChallengerDecisionPublic(BaseModel):
    """A manual decision about the challenger, as recorded."""

    decision: Literal["promoted", "rejected"]
    version: str
    """The challenger decided about."""
    previous_champion: str | None
    reason: str
    decided_by: Literal["manual", "automatic"]
    serving_version: str | None
    """The version this replica serves once the decision is taken (the others follow at the
    promotion announcement or their next poll)."""
