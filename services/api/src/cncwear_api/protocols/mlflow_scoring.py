"""MLflow's scoring protocol codec (``mlflow/pyfunc/scoring_server``): an ``/invocations`` body,
JSON (exactly one of ``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``;
``params`` accepted) or CSV, decoded into the raw rows ``/predict`` takes; the answer is what the
version's pyfunc gives, ``{"predictions": [[p_unworn, p_worn], ...]}`` (its ``predict_proba``).

Content types are checked as MLflow's server checks them: another media type, another charset
than UTF-8, or another content-type parameter is 415 with a plain-text message."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from cncwear.core.schema import PROCESS_COLUMN
from cncwear.serving.batch import Rows
from cncwear_api.api.errors import InvalidRequestError, PayloadTooLargeError
from cncwear_api.api.json_body import parse_json
from cncwear_api.schemas.errors import Problem

JSON = "application/json"
CSV = "text/csv"
CONTENT_TYPES = (CSV, JSON)
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS = "params"


class UnsupportedContentType(Exception):  # noqa: N818 (MLflow's name for the answer)
    """A body MLflow's server refuses with 415 and this plain-text message."""


def media_type(content_type: str) -> str:
    """The media type of a Content-Type header, 415 for what MLflow's server refuses."""
    parts = [part.strip() for part in content_type.split(";")]
    parameters = dict(part.partition("=")[::2] for part in parts[1:])
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        raise UnsupportedContentType("The scoring server only supports UTF-8")
    unknown = set(parameters) - {"charset"}
    if unknown:
        raise UnsupportedContentType(f"Unrecognized content type parameters: {', '.join(unknown)}")
    if parts[0] not in CONTENT_TYPES:
        raise UnsupportedContentType(
            "This predictor only supports the following content types: "
            f"{', '.join(CONTENT_TYPES)}. Got {content_type!r}."
        )
    return parts[0]


def decode(body: bytes, media: str, max_rows: int) -> Rows:
    """The body's rows, or 400 (MLflow's error shape) naming what is wrong."""
    rows = _csv(body) if media == CSV else _json(body)
    count = len(rows.rows) if rows.rows is not None else len(rows.data or [])
    if count > max_rows:
        raise PayloadTooLargeError(
            f"the batch has {count} rows, more than the limit of {max_rows}: split it"
        )
    return rows


def _refuse(field: str, problem: str) -> InvalidRequestError:
    return InvalidRequestError([Problem(column=field, problem=problem)])


def _csv(body: bytes) -> Rows:
    try:
        text = body.decode("utf-8")
        frame = pd.read_csv(io.StringIO(text), dtype={PROCESS_COLUMN: object})
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        raise _refuse("*", f"body is not a CSV table: {error}") from None
    return Rows.of_frame(frame)


def _json(body: bytes) -> Rows:
    parsed = parse_json(body)
    if not isinstance(parsed, dict):
        raise _refuse("*", f"the body must be a JSON object with one of the keys {list(FORMATS)}")
    given = [key for key in FORMATS if key in parsed]
    if len(given) != 1:
        raise _refuse(
            "*",
            f"the body must have exactly one of the keys {list(FORMATS)}; it has {given or 'none'}",
        )
    key = given[0]
    value = parsed[key]
    if key == "dataframe_split":
        return _split(value)
    if key == "dataframe_records" or isinstance(value, list):
        return _records(key, value)
    if isinstance(value, dict):
        return _columns(key, value)
    raise _refuse(key, "must be a list of records or an object of column: values")


def _split(value: Any) -> Rows:
    if not isinstance(value, dict):
        raise _refuse("dataframe_split", "must be an object with 'columns' and 'data'")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _refuse("dataframe_split.columns", "must be a list of column names")
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise _refuse("dataframe_split.data", "must be a list of rows (lists of values)")
    return Rows(columns=columns, data=data)


def _records(key: str, value: Any) -> Rows:
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise _refuse(key, "must be a list of records (objects of column: value)")
    return Rows(rows=value)


def _columns(key: str, value: dict[str, Any]) -> Rows:
    """``{"column": [values], ...}``, the columnar form of ``instances`` and ``inputs``."""
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) > 1:
        raise _refuse(key, "must map each column to a list of values, all of one length")
    columns = list(value)
    return Rows(columns=columns, data=[list(row) for row in zip(*value.values(), strict=True)])
