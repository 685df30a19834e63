"""How each protocol answers an error: the API decides what went wrong and its status once
(:mod:`cncwear_api.api.errors`); this gives the body the protocol's clients expect."""

from __future__ import annotations

from typing import Any

from cncwear_api.protocols import Protocol

MLFLOW_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
    413: "RESOURCE_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}
"""MLflow's error codes (``mlflow.protos.databricks_pb2``) for the statuses the API answers."""


def message(body: dict[str, Any]) -> str:
    """The detail and every listed problem in one line: ``row 3, X1_OutputPower: must be a
    finite number``, as ``/predict`` names them."""
    problems = body.get("problems") or []
    named = [
        (f"row {p['row']}, " if p.get("row") is not None else "") + f"{p['column']}: {p['problem']}"
        for p in problems
    ]
    text = str(body.get("detail", "error"))
    if named:
        text = f"{text}: {'; '.join(named)}"
        total = body.get("total")
        if isinstance(total, int) and total > len(named):
            text += f" (and {total - len(named)} more)"
    return text


def protocol_error(protocol: Protocol, status: int, body: dict[str, Any]) -> tuple[int, Any]:
    """The status and body of an error answer in ``protocol``'s shape; ``body`` is the API's own
    (``detail``, maybe ``problems``). Bad input is 400 in both standard protocols (422 in
    cncwear's own)."""
    if protocol == "cncwear":
        return status, body
    status = 400 if status == 422 else status
    if protocol == "v2":
        return status, {"error": message(body)}
    code = MLFLOW_ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    return status, {"error_code": code, "message": message(body)}
