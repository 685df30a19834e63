"""The choices a retrain offers: how much it searches, which candidates it compares, which engine
the AutoML candidate runs. Settings, job requests, the command line and the API all name them."""

from __future__ import annotations

from enum import StrEnum


class Budget(StrEnum):
    """How much search a retrain may spend: ``fast`` for tests and CI, ``full`` for production."""

    FAST = "fast"
    FULL = "full"


class CandidateName(StrEnum):
    """The candidates a retrain can compare; all but ``baseline`` run by default."""

    DECISION_TREE = "decision_tree"
    RANDOM_FOREST = "random_forest"
    AUTOML = "automl"
    BASELINE = "baseline"


DEFAULT_CANDIDATES = (
    CandidateName.DECISION_TREE,
    CandidateName.RANDOM_FOREST,
    CandidateName.AUTOML,
)


class AutoMLEngineName(StrEnum):
    """The AutoML candidate's engine. ``auto``: auto-sklearn when its sidecar is installed, else
    FLAML (with one warning)."""

    AUTO = "auto"
    FLAML = "flaml"
    AUTO_SKLEARN = "auto-sklearn"


class TrainOn(StrEnum):
    """What a retrain learns from: the base data (bundled or ``CNCWEAR_DATA_DIR``) plus the accepted
    labelled runs, or the labelled runs alone (a shop that wants a model of its own mills only)."""

    BASE_AND_RUNS = "base+runs"
    RUNS = "runs"
