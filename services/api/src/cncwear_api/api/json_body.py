"""Parsing JSON request bodies, the same way on every route. (Their size is limited once, for every
route, by the request middleware, as they are received.)

One parser for all bodies: jiter, fast on large batches, which lets ``NaN`` and ``Infinity``
through (so that they are named by row and column later, not refused as bad JSON) and refuses a key
given twice in one object (which of the two values was meant?). Python's ``json``, which FastAPI
uses for the bodies it parses itself, keeps the last one silently.
"""

from __future__ import annotations

from typing import Any, TypeVar

import jiter
from fastapi import Request
from pydantic import BaseModel, ValidationError

from cncwear.core.schema import MAX_PROBLEMS_LISTED
from cncwear_api.api.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    problems_from_validation,
)
from cncwear_api.schemas.errors import Problem

RowsBody = TypeVar("RowsBody", bound=BaseModel)


def parse_json(body: bytes) -> Any:
    """The parsed body, or 422 saying why it is not valid JSON (a duplicated key by its name)."""
    try:
        return jiter.from_json(body, allow_inf_nan=True, catch_duplicate_keys=True)
    except ValueError as error:
        problem = Problem(column="*", problem=f"body is not valid JSON: {error}")
        raise InvalidRequestError([problem]) from None


async def refuse_duplicate_keys(request: Request) -> None:
    """A route dependency for bodies FastAPI parses into a model itself: refuses, as the routes
    that parse their own body do, a key given twice. FastAPI has read the body by then (it keeps
    it), so this parses it a second time, with jiter: a few milliseconds for the largest
    ``/feedback`` batch, nothing next to scoring it; ``/predict`` parses once, with this parser."""
    body = await request.body()
    if body:
        parse_json(body)


def parse_rows_body(body: bytes, model: type[RowsBody], max_rows: int, max_fields: int) -> RowsBody:
    """A body of raw rows (``rows``, or ``columns`` + ``data``), as ``/predict`` and ``POST /runs``
    take it: JSON, then the sizes, then the shape of the request. Cells are checked later, against
    the schema (``cncwear.serving.batch.to_batch``): the work done on a bad body stays bounded by
    the limits."""
    parsed = parse_json(body)
    columns = None
    if isinstance(parsed, dict):
        _check_sizes(parsed, max_rows, max_fields)
        given = parsed.get("columns")
        if isinstance(given, list) and all(isinstance(c, str) for c in given):
            columns = given
    try:
        return model.model_validate(parsed)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        problems = problems_from_validation(errors, columns)
        raise InvalidRequestError(problems[:MAX_PROBLEMS_LISTED], total=len(problems)) from None


def _check_sizes(parsed: dict[str, Any], max_rows: int, max_fields: int) -> None:
    for key in ("rows", "data"):
        records = parsed.get(key)
        if isinstance(records, list) and len(records) > max_rows:
            raise PayloadTooLargeError(
                f"the batch has {len(records)} rows, more than the limit of {max_rows}: split it"
            )
    columns = parsed.get("columns")
    if isinstance(columns, list) and len(columns) > max_fields:
        problem = Problem(column="columns", problem=f"more than {max_fields} columns")
        raise InvalidRequestError([problem])
    wide = [
        Problem(row=i, column="*", problem=f"more than {max_fields} fields")
        for key in ("rows", "data")
        if isinstance(parsed.get(key), list)
        for i, record in enumerate(parsed[key])
        if isinstance(record, dict | list) and len(record) > max_fields
    ]
    if wide:
        raise InvalidRequestError(wide[:MAX_PROBLEMS_LISTED], total=len(wide))
