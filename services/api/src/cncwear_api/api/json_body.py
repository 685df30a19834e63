"""Parsing JSON request bodies, the same way on every route. (Their size is limited once, for every
route, by the request middleware, as they are received.)

One parser for all bodies: jiter, fast on large batches, which lets ``NaN`` and ``Infinity``
through (so that they are named by row and column later, not refused as bad JSON) and refuses a key
given twice in one object (which of the two values was meant?). Python's ``json``, which FastAPI
uses for the bodies it parses itself, keeps the last one silently.
"""

from __future__ import annotations

from typing import Any

import jiter
from fastapi import Request

from cncwear_api.api.errors import InvalidRequestError
from cncwear_api.schemas.errors import Problem


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
