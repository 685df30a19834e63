"""Settings of the prediction service: the shared cncwear settings plus the server's own."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr

from cncwear.settings import Settings


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

    def token_path(self) -> Path:
        return self.token_file if self.token_file is not None else self.home / "api-token"


@lru_cache
def get_settings() -> ApiSettings:
    return ApiSettings()
