"""HTTP errors: the service's own and cncwear's domain errors, turned into JSON in one place.

Bad input is a 4xx naming each problem by row and column; the offending values are never echoed
back (nor logged)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.exceptions import HTTPException

from cncwear.core.errors import (
    CncwearError,
    DataVersionNotFoundError,
    InvalidRunIdError,
    JobNotFoundError,
    ModelLoadError,
    NoChallengerError,
    NoChampionError,
    NoReferenceError,
    QueueUnavailableError,
    RunClosedError,
    RunNotFoundError,
    SchemaError,
    UnknownExplainMethodError,
)
from cncwear_api.api.responses import FastJSONResponse
from cncwear_api.protocols import protocol_of
from cncwear_api.protocols.errors import protocol_error
from cncwear_api.schemas.errors import Problem

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


class ApiError(Exception):
    """An error with its HTTP status and a message for the client."""

    status_code = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class PayloadTooLargeError(ApiError):
    status_code = 413


class BodyTooLargeError(HTTPException):
    """A request body over ``max_body_bytes``, raised while it is received. An HTTP exception
    (not an :class:`ApiError`) because FastAPI lets only those out of its own body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")


class NotJsonError(HTTPException):
    """A request body not declared as JSON: the API reads JSON only."""

    def __init__(self) -> None:
        super().__init__(415, "the request body must be JSON (Content-Type: application/json)")


BODY_PARSE_ERROR = "There was an error parsing the body"
"""FastAPI's 400 for a JSON body it cannot decode (not UTF-8, say); answered as the 422 of any
other body that is not JSON."""


class ModelNotReadyError(ApiError):
    status_code = 503

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER_SECONDS})


class ExplainerBusyError(ApiError):
    """Every explanation slot and waiting place is taken."""

    status_code = 503

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER_SECONDS})


class UnauthorizedError(ApiError):
    status_code = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class NotFoundError(ApiError):
    status_code = 404


class ConflictError(ApiError):
    status_code = 409


class ServiceOffError(ApiError):
    """A feature switched off by setting."""

    status_code = 503


class RunStoreUnavailableError(ApiError):
    """The labelled runs' store could not take a request's rows: the request is not answered as
    if they were kept."""

    status_code = 503

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER_SECONDS})


class InvalidRequestError(ApiError):
    """A body that is not JSON or not shaped like the request schema."""

    status_code = 422

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.total = total if total is not None else len(problems)
        super().__init__(f"{self.total} problem(s) in the request body")
        self.problems = problems


def problems_from_validation(
    errors: Sequence[ErrorDetails], columns: Sequence[str] | None = None
) -> list[Problem]:
    """Pydantic errors as problems, by row (and column) where they are about one; the input itself
    is left out. A cell is named once, though a union of types reports one error per type."""
    problems: dict[tuple[int | None, str], str] = {}
    for error in errors:
        loc = [part for part in error["loc"] if part != "body"]
        row: int | None = None
        if len(loc) >= 3 and loc[0] in {"rows", "data"} and isinstance(loc[1], int):
            row, cell = loc[1], loc[2]
            if isinstance(cell, int):
                column = columns[cell] if columns and cell < len(columns) else f"#{cell}"
            else:
                column = str(cell)
            problem = "must be a number, text or null"
        elif len(loc) == 2 and loc[0] in {"rows", "data"} and isinstance(loc[1], int):
            row, column = loc[1], "*"
            kind = "an object of column: value" if loc[0] == "rows" else "a list of values"
            problem = f"must be {kind}"
        elif error["type"] == "json_invalid":
            reason = error["msg"].removeprefix("Invalid JSON: ")
            column, problem = "*", f"body is not valid JSON: {reason}"
        else:
            column = ".".join(str(part) for part in loc) or "*"
            problem = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                problem = "unknown field of the request body"
        problems.setdefault((row, column), problem)
    return [Problem(row=row, column=column, problem=p) for (row, column), p in problems.items()]


def _detail(error: CncwearError) -> dict[str, Any]:
    return {"detail": str(error)}


@dataclass(frozen=True)
class DomainAnswer:
    """How the API answers one kind of domain error."""

    status: int
    headers: dict[str, str] | None = None
    body: Callable[[Any], dict[str, Any]] = _detail
    """The JSON body, without the request id (every answer gets it)."""


RETRY_LATER = {"Retry-After": RETRY_AFTER_SECONDS}


def _schema_problems(error: SchemaError) -> dict[str, Any]:
    problems = [{"row": p.row, "column": p.column, "problem": p.problem} for p in error.problems]
    return {
        "detail": f"{error.total} problem(s) in the rows",
        "problems": problems,
        "total": error.total,
    }


def _queue_unavailable(error: QueueUnavailableError) -> dict[str, Any]:
    return {"detail": f"the retrain queue is unavailable: {error}; predictions are not affected"}


def _unknown_method(error: UnknownExplainMethodError) -> dict[str, Any]:
    problem = f"unknown explanation method; valid methods: {', '.join(error.valid)}"
    return {
        "detail": "1 problem(s) in the request body",
        "problems": [{"row": None, "column": "method", "problem": problem}],
        "total": 1,
        "valid_methods": error.valid,
    }


def _about_run(error: CncwearError) -> dict[str, Any]:
    """A problem with the request's run, named as the field ``run``."""
    return {
        "detail": str(error),
        "problems": [{"row": None, "column": "run", "problem": str(error)}],
        "total": 1,
    }


DOMAIN_ANSWERS: dict[type[CncwearError], DomainAnswer] = {
    SchemaError: DomainAnswer(422, body=_schema_problems),
    UnknownExplainMethodError: DomainAnswer(422, body=_unknown_method),
    InvalidRunIdError: DomainAnswer(422, body=_about_run),
    RunClosedError: DomainAnswer(409, body=_about_run),
    RunNotFoundError: DomainAnswer(404, body=_about_run),
    DataVersionNotFoundError: DomainAnswer(404),
    JobNotFoundError: DomainAnswer(404),
    NoChallengerError: DomainAnswer(404),
    NoReferenceError: DomainAnswer(409),
    NoChampionError: DomainAnswer(503, RETRY_LATER),
    ModelLoadError: DomainAnswer(503, RETRY_LATER),
    QueueUnavailableError: DomainAnswer(503, RETRY_LATER, _queue_unavailable),
}
"""Domain errors a client can act on. Any other :class:`CncwearError` is a bug of ours: a 500
that says no more than "internal error" (the log says what)."""


def domain_answer(error: CncwearError) -> DomainAnswer | None:
    """The answer to ``error``: that of its class or of its nearest listed base class."""
    for cls in type(error).__mro__:
        answer = DOMAIN_ANSWERS.get(cls)
        if answer is not None:
            return answer
    return None


def _request_id(request: Request) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return None if value is None else str(value)


def _json(
    request: Request, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> FastJSONResponse:
    """The error answer; on the routes of a standard protocol, in that protocol's shape."""
    protocol = protocol_of(request.url.path)
    if protocol != "cncwear":
        status, content = protocol_error(protocol, status, body)
        return FastJSONResponse(content, status, headers=headers)
    return FastJSONResponse({**body, "request_id": _request_id(request)}, status, headers=headers)


def add_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> FastJSONResponse:
        body: dict[str, Any] = {"detail": error.detail}
        if isinstance(error, InvalidRequestError):
            body["problems"] = [p.model_dump() for p in error.problems]
            body["total"] = error.total
        return _json(request, error.status_code, body, error.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> FastJSONResponse:
        if error.status_code == 400 and error.detail == BODY_PARSE_ERROR:
            problem = Problem(column="*", problem="body is not valid JSON (or not UTF-8 text)")
            return await api_error(request, InvalidRequestError([problem]))
        headers = dict(error.headers) if error.headers else None
        return _json(request, error.status_code, {"detail": error.detail}, headers)

    @app.exception_handler(CncwearError)
    async def domain_error(request: Request, error: CncwearError) -> FastJSONResponse:
        answer = domain_answer(error)
        if answer is None:
            logger.error("unexpected domain error: %s", error)
            return _json(request, 500, {"detail": "internal error"})
        return _json(request, answer.status, answer.body(error), answer.headers)

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def validation_error(
        request: Request, error: RequestValidationError | ValidationError
    ) -> FastJSONResponse:
        problems = problems_from_validation(list(error.errors()))  # type: ignore[arg-type]
        return _json(
            request,
            422,
            {
                "detail": f"{len(problems)} problem(s) in the request",
                "problems": [p.model_dump() for p in problems],
                "total": len(problems),
            },
        )
