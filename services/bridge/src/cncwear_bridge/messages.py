"""The payloads the bridge reads, parsed into what it scores: rows (one, a list, or an envelope
naming the job and the time), job boundaries, and labels.

Reserved keys of a row object or envelope: ``job`` (the run the rows belong to) and ``timestamp``
(when the row was read; the verdict's time of the last row). Everything else is the raw row, as
``/predict`` takes it: the API validates it, and its 422 problems are passed on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cncwear.core.errors import InvalidRunIdError
from cncwear.data.runs.ids import check_run_id
from cncwear_bridge.errors import Reason, RejectedError

JOB_KEY = "job"
TIME_KEY = "timestamp"
Row = dict[str, Any]


@dataclass(frozen=True)
class RowsMessage:
    rows: list[Row]
    job: str | None
    """The run named by the message itself; None: the machine's current job, if any."""
    timestamp: str | None


@dataclass(frozen=True)
class JobMessage:
    event: str
    """``start`` or ``end``."""
    job: str | None


@dataclass(frozen=True)
class LabelMessage:
    run: str
    fields: dict[str, Any]
    """What ``POST /runs/{run}/label`` takes (tool_condition, feedrate, clamp_pressure,
    material); the API checks them."""
    token: str | None
    """Passed on as the bearer token of the label request: the API is the one that checks it."""


def decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError) as error:
        raise RejectedError(Reason.NOT_JSON, f"the payload is not JSON: {error}") from None


def _job(value: object) -> str:
    try:
        return check_run_id(value)
    except InvalidRunIdError as error:
        raise RejectedError(Reason.BAD_JOB, f"job: {error}") from None


def _timestamp(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise RejectedError(Reason.BAD_SHAPE, "timestamp: must be text (ISO 8601) or a number")


def parse_rows(payload: bytes) -> RowsMessage:
    body = decode(payload)
    job: str | None = None
    timestamp: str | None = None
    if isinstance(body, dict) and "rows" in body:
        unknown = sorted(set(body) - {"rows", JOB_KEY, TIME_KEY})
        if unknown:
            raise RejectedError(Reason.BAD_SHAPE, f"unexpected keys in the envelope: {unknown}")
        job = None if body.get(JOB_KEY) is None else _job(body[JOB_KEY])
        timestamp = _timestamp(body.get(TIME_KEY))
        rows = body["rows"]
    elif isinstance(body, dict):
        rows = [body]
    else:
        rows = body
    if not isinstance(rows, list) or not rows:
        raise RejectedError(
            Reason.BAD_SHAPE, "a rows message is a row object, a non-empty list of them, "
            'or {"rows": [...], "job": ..., "timestamp": ...}'
        )  # fmt: skip
    cleaned: list[Row] = []
    for index, given in enumerate(rows):
        if not isinstance(given, dict):
            raise RejectedError(Reason.BAD_SHAPE, f"row {index}: a row is a JSON object")
        row = dict(given)
        if JOB_KEY in row:
            job = _job(row.pop(JOB_KEY))
        if TIME_KEY in row:
            timestamp = _timestamp(row.pop(TIME_KEY))
        cleaned.append(row)
    return RowsMessage(rows=cleaned, job=job, timestamp=timestamp)


def parse_job(payload: bytes) -> JobMessage:
    body = decode(payload)
    if not isinstance(body, dict) or body.get("event") not in {"start", "end"}:
        raise RejectedError(
            Reason.BAD_JOB, 'a job message is {"event": "start", "job": ...} or {"event": "end"}'
        )
    event = str(body["event"])
    if event == "start":
        return JobMessage(event, _job(body.get(JOB_KEY)))
    return JobMessage(event, None if body.get(JOB_KEY) is None else _job(body[JOB_KEY]))


def parse_label(payload: bytes) -> LabelMessage:
    body = decode(payload)
    if not isinstance(body, dict) or "run" not in body:
        raise RejectedError(
            Reason.BAD_LABEL,
            'a label message is {"run": ..., "tool_condition": ..., "feedrate": ..., '
            '"clamp_pressure": ..., "material": ..., "token": ...}',
        )
    fields = dict(body)
    try:
        run = check_run_id(fields.pop("run"))
    except InvalidRunIdError as error:
        raise RejectedError(Reason.BAD_LABEL, f"run: {error}") from None
    token = fields.pop("token", None)
    if token is not None and not isinstance(token, str):
        raise RejectedError(Reason.BAD_LABEL, "token: must be text")
    return LabelMessage(run=run, fields=fields, token=token)
