"""Settings of the prediction service: the shared cncwear settings plus the server's own."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr

from cncwear.core.settings import Settings


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class ApiSettings(Settings):
    host: str = "127.0.0.1"
    """Interface the server listens on."""

    port: int = Field(default=8000, ge=0, le=65535)

    api_token: SecretStr | None = None
    """Bearer token required by the mutating endpoints (``CNCWEAR_API_TOKEN``). Unset: one is
    generated at first start and kept in ``token_file``, readable only by its owner."""

    token_file: Path | None = None
    """Where the generated token is kept; default ``<home>/api-token``."""

    protect_reads: bool = False
    """Require the token on the read-only endpoints too (``/predict``, ``/model``, ``/metrics``).
    ``/health`` and ``/ready`` stay open for probes."""

    poll_interval_seconds: float = Field(default=30.0, gt=0.0)
    """How often the registry is checked for a new champion; an announcement on Redis triggers a
    check at once."""

    max_batch_rows: int = Field(default=10_000, ge=1)
    """Most rows one ``/predict`` request may carry (larger: 413)."""

    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    """Largest request body accepted (larger: 413). 10,000 rows as records take about 12 MB."""

    explain_concurrency: int = Field(default=1, ge=1, le=16)
    """Explanations (``/explain``, ``/explain/global``) computed at once, each in a thread of its
    own. They are CPU-bound (milliseconds for SHAP, seconds for anchors): kept below the number of
    cores, ``/predict`` keeps a core and its latency."""

    explain_max_waiting: int = Field(default=4, ge=0)
    """Explanations that may wait for a free slot; beyond that a request is refused at once with
    503 and ``Retry-After`` instead of piling up."""

    log_format: LogFormat = LogFormat.TEXT
    """``text`` for people, ``json`` for log collectors: one object per line."""

    log_level: str = "INFO"
    """Level of the server's logs: a ``logging`` level name (``DEBUG``, ``INFO``, ``WARNING``)."""

    monitoring: bool = True
    """Watch live traffic for drift and take ground-truth feedback. Off: ``/predict`` skips the
    (microseconds of) bookkeeping, ``/drift`` and ``/feedback`` answer 503."""

    drift_window_rows: int = Field(default=2000, ge=10)
    """Most recent served rows the drift statistics look at (per replica)."""

    drift_min_rows: int = Field(default=500, ge=1)
    """Rows the window must hold before drift is judged."""

    drift_share_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    """Share of drifted features from which the traffic counts as drifted (Evidently's
    default), for models logged without a drift null; with one, any check beyond its band."""

    drift_null_quantile: float = Field(default=1.0, ge=0.5, le=1.0)
    """Upper quantile of the between-runs null that bounds a check's normal band (1.0: the most
    unusual normal training run)."""

    drift_null_margin: float | None = Field(default=None, gt=0.0)
    """Factor on that quantile beyond which a check counts as drifted. Unset: each model's own,
    the smallest under which none of its training runs is drifted against the others."""

    drift_run_min_rows: int = Field(default=100, ge=1)
    """Active-cutting rows a run needs before ``GET /drift?run=`` judges it."""

    drift_runs_window: int = Field(default=5, ge=1)
    """The latest judged runs the run-drift trigger looks at."""

    drift_runs_trigger: int = Field(default=2, ge=1)
    """Drifted runs among them that queue a retrain (with ``retrain_on_drift``)."""

    drift_ks_alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    """KS test level (used when the reference holds at most 1,000 rows)."""

    drift_wasserstein_threshold: float = Field(default=0.1, gt=0.0)
    """Normed Wasserstein distance above which a feature has drifted (reference over 1,000
    rows)."""

    drift_check_interval_seconds: float = Field(default=30.0, gt=0.0)
    """How often drift and live performance are computed, exported and checked for triggers."""

    shadow_queue_rows: int = Field(default=20_000, ge=1)
    """Rows waiting for the challenger in shadow to score them, at most (per replica): a batch
    that would go past it is dropped for the challenger, and counted, never delayed."""

    shadow_check_interval_seconds: float = Field(default=60.0, gt=0.0)
    """How often each replica takes the shadow decision without a new label (the max-age rule),
    and refreshes the shadow metrics."""

    feedback_window_rows: int = Field(default=2000, ge=1)
    """Most recent labelled rows live accuracy, precision and recall are computed over."""

    feedback_min_rows: int = Field(default=200, ge=1)
    """Labelled rows needed before live performance is reported and judged."""

    feedback_memory_rows: int = Field(default=100_000, ge=0)
    """Predicted rows kept by request id for feedback sent later (per replica; oldest first
    out)."""

    retrain_on_drift: bool = False
    """Queue a retrain when the traffic stays drifted for ``trigger_sustain_seconds``."""

    retrain_on_accuracy_drop: bool = False
    """Queue a retrain when live accuracy stays ``accuracy_drop_threshold`` below the holdout
    accuracy for ``trigger_sustain_seconds``."""

    accuracy_drop_threshold: float = Field(default=0.1, gt=0.0, le=1.0)
    """How far live accuracy may fall below the holdout figure before it counts as dropped."""

    trigger_sustain_seconds: float = Field(default=600.0, ge=0.0)
    """How long a trigger condition must hold, at every check, before a retrain is queued (and
    again before another one is)."""

    def token_path(self) -> Path:
        return self.token_file if self.token_file is not None else self.home / "api-token"


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
