"""Domain errors as the API answers them: one table of status, headers and body, one handler.

The answers are pinned here byte for byte, whatever route raises the error (the route tests check
that the routes do raise them)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from cncwear.core.errors import (
    CncwearError,
    JobNotFoundError,
    ModelLoadError,
    NoChallengerError,
    NoChampionError,
    NoReferenceError,
    Problem,
    QueueUnavailableError,
    SchemaError,
    TrainingError,
    UnknownExplainMethodError,
)
from cncwear_api.api.errors import add_exception_handlers


def answer(error: CncwearError) -> tuple[int, str | None, bytes]:
    app = FastAPI()
    add_exception_handlers(app)

    @app.get("/raise")
    async def raise_it() -> None:
        raise error

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/raise")
    return response.status_code, response.headers.get("retry-after"), response.content


class ChampionGoneError(NoChampionError):
    """Not listed itself: answered as its base class."""


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoChampionError("no champion"), (503, "5", b'{"detail":"no champion","request_id":null}')),
        (ChampionGoneError("gone"), (503, "5", b'{"detail":"gone","request_id":null}')),
        (ModelLoadError("broken"), (503, "5", b'{"detail":"broken","request_id":null}')),
        (
            QueueUnavailableError("Redis is unavailable (ConnectionError)"),
            (
                503,
                "5",
                b'{"detail":"the retrain queue is unavailable: Redis is unavailable '
                b'(ConnectionError); predictions are not affected","request_id":null}',
            ),
        ),
        (JobNotFoundError("no job 7"), (404, None, b'{"detail":"no job 7","request_id":null}')),
        (NoChallengerError("none"), (404, None, b'{"detail":"none","request_id":null}')),
        (NoReferenceError("no sample"), (409, None, b'{"detail":"no sample","request_id":null}')),
        (
            SchemaError([Problem(column="X1_OutputCurrent", problem="not a number", row=1)]),
            (
                422,
                None,
                b'{"detail":"1 problem(s) in the rows","problems":[{"row":1,'
                b'"column":"X1_OutputCurrent","problem":"not a number"}],"total":1,'
                b'"request_id":null}',
            ),
        ),
        (
            UnknownExplainMethodError("magic", ["shap", "lime"]),
            (
                422,
                None,
                b'{"detail":"1 problem(s) in the request body","problems":[{"row":null,'
                b'"column":"method","problem":"unknown explanation method; valid methods: '
                b'shap, lime"}],"total":1,"valid_methods":["shap","lime"],"request_id":null}',
            ),
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
)
def test_each_domain_error_a_client_can_act_on_gets_its_status_headers_and_body(
    error: CncwearError, expected: tuple[int, str | None, bytes]
) -> None:
    assert answer(error) == expected


def test_any_other_domain_error_is_a_500_that_does_not_say_what(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status, retry_after, body = answer(TrainingError("secret detail of a failed retrain"))
    assert (status, retry_after) == (500, None)
    assert body == b'{"detail":"internal error","request_id":null}'
    assert "secret detail of a failed retrain" in caplog.text
