"""The one settings object of cncwear.

Every process (CLI, API, trainer) reads its configuration from environment variables prefixed
``CNCWEAR_``; services extend :class:`Settings` with their own fields so there is a single source of
truth for the shared ones (where data lives, which registry, which model name).
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cncwear.core.choices import AutoMLEngineName, Budget, TrainOn
from cncwear.core.schedule import parse_schedule

BUNDLED_DATA_DIR = Path(__file__).parents[1] / "data" / "datasets" / "cnc_mill_tool_wear"


class PromotionLock(StrEnum):
    """What serialises promotions: a lock file under ``home`` (one machine) or a Redis lock (every
    machine sharing the registry). ``auto``: Redis when the registry is shared (see
    :meth:`Settings.registry_is_shared`), else the file."""

    AUTO = "auto"
    FILE = "file"
    REDIS = "redis"


class PromotionPolicy(StrEnum):
    """What a retrain whose winner passes the offline gate does with it: ``offline`` makes it the
    champion; ``shadow`` makes it the challenger, which takes over only when labelled runs show it
    is better (``docs/promotion.md``)."""

    OFFLINE = "offline"
    SHADOW = "shadow"


class ShadowQueue(StrEnum):
    """What a new winner does while a challenger is in shadow: ``replace`` it (the replaced one
    loses the alias), or ``keep`` it (the new winner is registered and left without an alias)."""

    REPLACE = "replace"
    KEEP = "keep"


LOCAL_TRACKING_SCHEMES = frozenset({"", "file", "sqlite"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CNCWEAR_", extra="ignore")

    home: Path = Path("var")
    """Data directory: the MLflow SQLite store, its artifacts and local state live below it."""

    data_dir: Path = BUNDLED_DATA_DIR
    """Training data in the bundled format: ``train.csv`` plus ``experiment_NN.csv[.xz|.gz]``."""

    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CNCWEAR_MLFLOW_TRACKING_URI"),
    )
    """Any MLflow tracking URI; unset means a SQLite file under ``home``."""

    mlflow_artifact_location: str | None = None
    """Artifact location of the MLflow experiment when cncwear creates it (any URI MLflow accepts:
    ``s3://bucket/prefix``, ``mlflow-artifacts:/cncwear``, a folder). Unset: ``<home>/artifacts``
    for the embedded store, the tracking server's own default otherwise. An experiment that
    already exists keeps its location."""

    mlflow_experiment: str = "cncwear"
    """MLflow experiment that groups the retrain runs."""

    model_name: str = "cncwear"
    """Registered model name in the MLflow registry."""

    champion_alias: str = "champion"

    challenger_alias: str = "challenger"
    """Alias of the version in shadow under ``promotion_policy=shadow``."""

    budget: Budget = Budget.FAST
    """Search budget of a retrain when none is given on the command line."""

    automl_engine: AutoMLEngineName = AutoMLEngineName.FLAML
    """AutoML engine of the AutoML candidate: ``flaml`` (in process), ``auto-sklearn`` (in its
    Python 3.9 sidecar), or ``auto``: auto-sklearn when its sidecar is available, else flaml.
    FLAML by default: on the same budget it found the better model with less memory
    (``docs/automl.md``, "Choosing")."""

    autosklearn_python: Path | None = None
    """Interpreter of the auto-sklearn sidecar (Python 3.9 with auto-sklearn 0.15.0). Unset:
    ``.venv-autosklearn/bin/python`` of the project that holds the installed cncwear (the nearest
    folder above cncwear's own files that has one, where ``scripts/setup-autosklearn.sh`` builds
    it), whatever the working directory; failing that, the working directory's or its nearest
    parent's."""

    autosklearn_metalearning: bool = True
    """Start auto-sklearn's search from configurations that did well on similar data sets (its
    meta-learning); off, it starts from its default configuration and random ones."""

    autosklearn_memory_limit_mb: int = Field(default=3072, ge=256)
    """Memory limit of each auto-sklearn evaluation (MB); an evaluation over it is abandoned."""

    autosklearn_timeout_grace_seconds: float = Field(default=180.0, ge=0.0)
    """How long past its time budget the sidecar may run (start-up, tidying up) before it is
    stopped and the AutoML candidate fails."""

    seed: int = 42
    """Seeds the holdout split, the searches and the models, so a retrain is repeatable."""

    holdout_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    """Share of experiments of each class held out to compare candidates and decide promotion."""

    promotion_metric: str = "accuracy"
    """Holdout metric (row level) on which a challenger must beat the champion."""

    promotion_margin: float = Field(default=0.0, ge=0.0)
    """How much better than the champion a challenger must be to be promoted."""

    use_identifying_columns: bool = False
    """Feed the columns that identify an experiment (feedrate, clamp pressure, program and sequence
    numbers) to the model. Off by default: they let a model recognise experiments instead of wear,
    and grouped accuracy drops when they are used."""

    n_jobs: int = 2
    """Parallel fits during searches (processes); each fit itself uses one core."""

    leak_warning_margin: float = Field(default=0.05, ge=0.0)
    """Warn when the leaky row-split accuracy exceeds the grouped one by more than this."""

    promotion_policy: PromotionPolicy = PromotionPolicy.OFFLINE
    """``offline``: a retrain that passes the holdout gate promotes its winner to champion.
    ``shadow``: the winner becomes the challenger, and is promoted or rejected on labelled runs
    (``docs/promotion.md``)."""

    shadow_min_runs: int = Field(default=20, ge=1)
    """Labelled runs, including runs of both labels, a challenger needs before it can be
    promoted."""

    shadow_alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    """Significance level of the run-level McNemar test, for a promotion as for a rejection."""

    shadow_max_age_seconds: float = Field(default=14 * 24 * 3600, gt=0.0)
    """A challenger in shadow this long without a significant win is rejected."""

    shadow_queue: ShadowQueue = ShadowQueue.REPLACE
    """A newer winner while a challenger is in shadow: ``replace`` the challenger, or ``keep`` it
    (the newer one stays registered without an alias)."""

    promotion_lock: PromotionLock = PromotionLock.AUTO
    """How concurrent retrains take turns at the champion alias: ``file`` (a lock file under
    ``home``: processes of one machine), ``redis`` (a lock in Redis: workers on several machines),
    ``auto`` (Redis when the registry is shared, else the file)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis on which a retrain announces a new champion to the prediction servers (a hint: the
    servers also poll the registry, so they keep working when Redis is down)."""

    retrain_time_limit: int = Field(default=3 * 3600, ge=10)
    """Hard time limit of one retrain, in seconds (a soft limit one minute earlier fails the job
    cleanly)."""

    retrain_visibility_timeout: int = Field(default=4 * 3600, ge=20)
    """Seconds after which Redis hands an unacknowledged retrain to another worker. Must exceed
    the retrain time limit, or a long retrain would run twice."""

    retrain_schedule: str = ""
    """When to retrain by itself: five cron fields (minute hour day-of-month month day-of-week),
    e.g. ``"0 3 * * 0"`` for Sundays at 03:00 (the trainer's time zone: UTC unless Celery's is
    set). Empty: no scheduled retrains. Fired by ``cncwear-trainer beat``."""

    new_data_check_seconds: float = Field(default=0.0, ge=0.0)
    """How often ``cncwear-trainer beat`` checks whether the latest dataset version (``data_dir``
    plus the accepted labelled runs) is new to the champion, and queues a retrain ("new data")
    when it is. 0: never (``cncwear retrain --if-new-data`` still checks on demand)."""

    job_retention_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    """How long job records stay readable in Redis."""

    extra_data_roots: list[Path] = Field(default_factory=list)
    """Folders (besides the bundled data, CNCWEAR_DATA_DIR and CNCWEAR_HOME/data) under which a
    retrain request may name its training data."""

    data_store_url: str | None = None
    """Where labelled runs, their rows and the dataset versions are kept: any SQLAlchemy URL, e.g.
    ``postgresql+psycopg://cncwear@db/cncwear`` shared by every replica and worker. Unset: a SQLite
    file under ``home`` (``runs.db``), for one machine."""

    run_append_fsync: bool = False
    """Wait for the database's flush to disk before ``/predict`` answers a batch with a run
    (PostgreSQL's ``synchronous_commit``, SQLite's ``synchronous=FULL``). Off, an answered batch
    survives the API process killed any time after the answer, but a crash of the database
    server or a power cut may lose the last fraction of a second of rows; the flush costs about
    4 ms a request on this machine's disk (``docs/data.md``). On PostgreSQL labels and dataset
    versions are flushed either way; SQLite's choice holds for every write of the process."""

    run_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    """A run still collecting rows this long after its last row, without a label, is dropped (and
    counted): the store stays bounded when mills stream runs nobody labels."""

    run_max_rows: int = Field(default=1_000_000, ge=1)
    """Most rows one run keeps; past it ``/predict`` still answers and the run is marked
    truncated."""

    run_min_rows: int = Field(default=200, ge=1)
    """Fewest active-cutting rows (``Layer N Up/Down``) a run needs to be accepted for training."""

    run_range_margin: float = Field(default=1.0, ge=0.0)
    """A run is rejected when every active value of a column lies outside the base data's range of
    that column widened by this many times its width on each side (a unit mix-up: mm sent as
    µm)."""

    train_on: TrainOn = TrainOn.BASE_AND_RUNS
    """What a retrain learns from: ``base+runs`` (the base data and the accepted runs) or ``runs``
    (the accepted runs alone; refused until there are enough of both labels)."""

    retrain_after_runs: int = Field(default=1, ge=0)
    """Queue a retrain once this many accepted runs are missing from the champion's dataset
    version. 0: accepted runs never queue one by themselves."""

    explain_lime_samples: int = Field(default=5000, ge=100)
    """Perturbed rows LIME scores around the explained row to fit its local model."""

    explain_lime_features: int = Field(default=5, ge=1)
    """Features in a LIME explanation (the local model's largest weights)."""

    explain_anchor_threshold: float = Field(default=0.95, gt=0.5, le=1.0)
    """Precision an anchor rule must reach: the share of rows it covers that the model labels like
    the explained row."""

    explain_anchor_max_seconds: float = Field(default=2.5, gt=0.0)
    """Hard cap on one anchor search; when reached, the best rule found so far is returned, marked
    as partial."""

    explain_anchor_max_samples: int = Field(default=100_000, ge=1000)
    """Hard cap on the perturbed rows one anchor search may score (same partial answer)."""

    explain_anchor_binning: Literal["model", "quantile"] = "model"
    """How anchors cut each feature into bins: ``model``, on the thresholds the model's own trees
    split on (quartiles for a model without splits); ``quantile``, on quartiles of the training
    reference, as anchor-exp does by default (kept to compare against)."""

    explain_anchor_thresholds: int = Field(default=16, ge=1, le=64)
    """Most split thresholds kept per feature for the anchor bins, the ones the model uses most:
    each one is a candidate condition, and the search slows with their number."""

    explain_anchor_nearest: int = Field(default=1, ge=1)
    """Candidate conditions per feature and side of the row's value: the bin edges nearest it
    (tight conditions are the precise ones; the others mostly cost the search samples)."""

    explain_anchor_features: int = Field(default=6, ge=1)
    """Features an anchor may put conditions on: the row's top ones by absolute SHAP value."""

    explain_anchor_wider_features: int = Field(default=12, ge=0)
    """When the anchor search on the top ``CNCWEAR_EXPLAIN_ANCHOR_FEATURES`` ends below the
    precision threshold, it searches again on the top this many, in the time and samples left
    under the caps, and answers with the better rule (``widened`` in the answer). 0, or a number
    not above ``CNCWEAR_EXPLAIN_ANCHOR_FEATURES``: never."""

    explain_anchor_beam_size: int = Field(default=4, ge=1, le=32)
    """Rules the anchor search keeps at each length (anchor-exp's ``beam_size``)."""

    explain_anchor_batch_size: int = Field(default=100, ge=10)
    """Perturbed rows the anchor search draws per candidate rule and round (``batch_size``)."""

    explain_lime_min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    """LIME answers whose local model fits the perturbed rows with an R2 below this are flagged
    ``low_fidelity``: their weights say little about the model."""

    explain_background_rows: int = Field(default=100, ge=10)
    """Background rows (from the model's training reference) of the model-agnostic SHAP explainer
    used when the model is not a tree ensemble."""

    explain_global_rows: int = Field(default=100, ge=10)
    """Training-reference rows over which global feature importance (mean absolute SHAP) is taken;
    partial dependence and the surrogate tree use the whole reference sample."""

    explain_surrogate_depth: int = Field(default=3, ge=1, le=8)
    """Depth of the global surrogate decision tree (deeper: more faithful, harder to read)."""

    @field_validator("retrain_schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    def triggers_enabled(self) -> bool:
        """Whether beat has anything to fire: a schedule or a new-data check interval."""
        return bool(self.retrain_schedule.strip()) or self.new_data_check_seconds > 0

    @model_validator(mode="after")
    def _limits_fit_the_visibility_timeout(self) -> Settings:
        if self.retrain_visibility_timeout <= self.retrain_time_limit:
            raise ValueError(
                "CNCWEAR_RETRAIN_VISIBILITY_TIMEOUT must exceed CNCWEAR_RETRAIN_TIME_LIMIT, or "
                "Redis would hand a running retrain to a second worker"
            )
        return self

    @model_validator(mode="after")
    def _two_aliases(self) -> Settings:
        if self.challenger_alias == self.champion_alias:
            raise ValueError(
                "CNCWEAR_CHALLENGER_ALIAS must differ from CNCWEAR_CHAMPION_ALIAS: one version "
                "cannot be in shadow of itself"
            )
        return self

    def retrain_soft_time_limit(self) -> int:
        """When a retrain is asked to stop cleanly, before the hard limit kills it."""
        return self.retrain_time_limit - min(60, self.retrain_time_limit // 10)

    def data_roots(self) -> list[Path]:
        roots = [BUNDLED_DATA_DIR, self.data_dir, self.home / "data", *self.extra_data_roots]
        return [root.resolve() for root in roots]

    def data_store_uri(self) -> str:
        """The labelled runs' store in force: the explicit URL, else SQLite under ``home``."""
        if self.data_store_url:
            return self.data_store_url
        return f"sqlite:///{self.home.resolve() / 'runs.db'}"

    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force: the explicit one, else the embedded SQLite store."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home.resolve() / 'mlflow.db'}"

    def artifact_location(self) -> str | None:
        """Where new MLflow experiments keep artifacts; None leaves it to the tracking server."""
        if self.mlflow_artifact_location:
            return self.mlflow_artifact_location
        if self.mlflow_tracking_uri:
            return None
        return (self.home.resolve() / "artifacts").as_uri()

    def registry_is_shared(self) -> bool:
        """True when the registry is a server or a database that processes on other machines reach
        too (``http(s)://``, ``postgresql://``, ...), False for the embedded SQLite store or a
        local folder. A shared registry needs shared coordination: a Redis promotion lock and one
        API token given to every replica."""
        return urlsplit(self.tracking_uri()).scheme.lower() not in LOCAL_TRACKING_SCHEMES

    def uses_redis_promotion_lock(self) -> bool:
        if self.promotion_lock is PromotionLock.AUTO:
            return self.registry_is_shared()
        return self.promotion_lock is PromotionLock.REDIS


@lru_cache
def get_settings() -> Settings:
    return Settings()
