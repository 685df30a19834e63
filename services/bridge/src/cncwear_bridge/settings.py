"""Settings of the MQTT bridge: the shared cncwear settings plus the bridge's own."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from cncwear.core.settings import Settings

MQTT_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
"""URL schemes of a broker, and whether each means TLS."""


class BridgeSettings(Settings):
    mqtt_url: str | None = None
    """The broker, ``mqtt://host:1883`` (``mqtts://host:8883`` for TLS); credentials may be in the
    URL (``mqtt://user:password@host``) or in the settings below. Unset: no bridge runs
    (``scripts/run.sh`` starts it only when this is set)."""

    mqtt_username: str | None = None
    """User name at the broker (when the URL has none)."""

    mqtt_password: SecretStr | None = None
    """Password at the broker (when the URL has none)."""

    mqtt_ca_file: Path | None = None
    """CA bundle that signed the broker's certificate (TLS); unset: the system's."""

    mqtt_topics: list[str] = Field(default_factory=lambda: ["cncwear/+/rows"])
    """Topic filters the bridge reads rows or observations from, a JSON list. The bridge also
    always reads ``cncwear/+/job`` and ``cncwear/+/label``. Shared subscriptions
    (``$share/cncwear/cncwear/+/rows``) spread machines over several replicas."""

    mqtt_mapping: Path | None = None
    """YAML file mapping MTConnect data items to the schema's columns (``docs/bridge.md``); needed
    to read ``MTConnect/Devices/{uuid}/Observations/{dataItemId}`` topics."""

    mqtt_client_id: str = "cncwear-bridge"
    """Client id at the broker: stable per replica, since the broker keeps the replica's session
    (its subscriptions and the messages not yet acknowledged) under it."""

    mqtt_session_expiry_seconds: int = Field(default=7 * 24 * 3600, ge=0)
    """How long the broker keeps the session of a disconnected bridge (and queues its messages)."""

    mqtt_keepalive_seconds: int = Field(default=30, ge=5)
    """MQTT keep-alive: a dead broker connection is noticed within about 1.5 times this."""

    bridge_api_url: str = "http://127.0.0.1:8000"
    """The cncwear API that scores the bridged rows."""

    api_token: SecretStr | None = None
    """Sent as the bearer token of the bridge's requests to the API (the CLI reads the same
    variable)."""

    bridge_batch_rows: int = Field(default=50, ge=1)
    """Rows of one machine scored together, at most."""

    bridge_batch_ms: int = Field(default=500, ge=1)
    """How long a machine's first waiting row waits for more before its batch is scored (ms)."""

    bridge_per_row: bool = False
    """Also publish each row's result on ``cncwear/{machine}/predictions``."""

    bridge_max_pending: int = Field(default=1000, ge=1, le=65535)
    """Messages the bridge holds unacknowledged at most (it asks the broker for no more, as the
    MQTT 5 receive maximum): beyond it the broker keeps them, so a slow or absent API stops the
    bridge consuming instead of growing its memory or dropping messages."""

    bridge_api_timeout_seconds: float = Field(default=10.0, gt=0)
    """Timeout of one request to the API; a request that times out is retried."""

    bridge_retry_max_seconds: float = Field(default=5.0, gt=0)
    """Longest wait between two attempts while the API is unavailable (backing off from 0.1 s)."""

    bridge_metrics_port: int = Field(default=9103, ge=0, le=65535)
    """Port of the bridge's Prometheus endpoint (``/metrics``); 0 serves none."""

    bridge_metrics_host: str = "127.0.0.1"
    """Interface the bridge's metrics endpoint listens on (``0.0.0.0`` in a container)."""

    @field_validator("mqtt_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in MQTT_SCHEMES:
            raise ValueError(f"the broker URL's scheme must be one of {sorted(MQTT_SCHEMES)}")
        return value


def broker_for_logs(url: str) -> str:
    """The broker's URL with any password in it replaced: logs are read by more people than the
    secret is meant for."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.username}:***@{host}{port}").geturl()


@lru_cache
def get_settings() -> BridgeSettings:
    return BridgeSettings()
