"""The standard inference protocols the API speaks besides its own ``/predict``: the Open
Inference Protocol v2 (``/v2/...``, :mod:`.oip`) and MLflow's scoring protocol (``/invocations``,
``/ping``, ``/version``, :mod:`.mlflow_scoring`). Each only translates: bodies are decoded into the
raw rows ``/predict`` takes, and scored, validated, monitored and counted the same way."""

from __future__ import annotations

from typing import Literal

Protocol = Literal["cncwear", "v2", "mlflow"]

MLFLOW_PATHS = frozenset({"/invocations", "/ping", "/version"})


def protocol_of(path: str) -> Protocol:
    """The protocol a request path belongs to (its errors are answered in that protocol's shape,
    and it labels the HTTP metrics)."""
    if path == "/v2" or path.startswith("/v2/"):
        return "v2"
    if path in MLFLOW_PATHS:
        return "mlflow"
    return "cncwear"
