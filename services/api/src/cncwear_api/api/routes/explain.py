"""``POST /explain`` (why the champion said what it said about one row) and ``GET /explain/global``
(how it behaves overall). The work runs off the event loop, a bounded number at a time
(``cncwear_api.explaining``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from cncwear.core.errors import Problem as RowProblem
from cncwear.core.errors import SchemaError
from cncwear.core.schema import MAX_PROBLEMS_LISTED
from cncwear.explain import ExplainMethod, Explanation, GlobalView
from cncwear.serving.batch import Batch, Rows, to_batch
from cncwear_api.api.deps import CurrentModel
from cncwear_api.api.errors import InvalidRequestError, problems_from_validation
from cncwear_api.api.json_body import parse_json
from cncwear_api.api.routes.predict import FIELDS_PER_COLUMN
from cncwear_api.schemas.common import ModelRef, body_schema
from cncwear_api.schemas.errors import ErrorResponse, Problem, ProblemsResponse
from cncwear_api.schemas.explain import (
    EXPLAIN_REQUEST_EXAMPLES,
    AnchorExplanationPublic,
    ExplainRequest,
    ExplainResponse,
    ExplanationPublic,
    GlobalViewPublic,
    LimeExplanationPublic,
    ShapExplanationPublic,
)
from cncwear_api.serving.explaining import ExplainRunner
from cncwear_api.serving.holder import ServedModel

router = APIRouter(tags=["explain"])

Responses = dict[int | str, dict[str, Any]]
NOT_READY: Responses = {
    503: {"model": ErrorResponse, "description": "No champion loaded, or too busy"}
}
NO_REFERENCE: Responses = {
    409: {
        "model": ErrorResponse,
        "description": "The champion was registered without the training sample explainers need",
    }
}
PUBLIC: dict[ExplainMethod, type[ExplanationPublic]] = {
    ExplainMethod.SHAP: ShapExplanationPublic,
    ExplainMethod.LIME: LimeExplanationPublic,
    ExplainMethod.ANCHOR: AnchorExplanationPublic,
}


@router.post(
    "/explain",
    response_model=ExplainResponse,
    summary="Why the champion labels one raw sensor row as it does",
    description=(
        "`shap`: each engineered feature's contribution, from the base value to the model's "
        "output (exact Tree SHAP for tree ensembles), each feature with its raw columns, and the "
        "additivity error. `lime`: the weights of a local linear model of the predicted class "
        "around the row, and its fit, flagged `low_fidelity` below "
        "`CNCWEAR_EXPLAIN_LIME_MIN_SCORE`. `anchor`: a rule on the features, cut at the model's "
        "own split thresholds (a decision tree: its path), under which the model gives the same "
        "label, its precision against the threshold and its coverage; the search is capped "
        "(`CNCWEAR_EXPLAIN_ANCHOR_MAX_SECONDS`, `..._MAX_SAMPLES`) and a capped answer is marked "
        "`partial`. The row is checked like a row of `/predict`. Explanations run a few at "
        "a time (`CNCWEAR_EXPLAIN_CONCURRENCY`) beside predictions; when the waiting places are "
        "taken too, the answer is 503 with `Retry-After`."
    ),
    responses={
        409: NO_REFERENCE[409],
        413: {"model": ErrorResponse, "description": "Body over the size limit"},
        422: {
            "model": ProblemsResponse,
            "description": "Bad row (every problem by column) or unknown method (the valid ones)",
        },
        **NOT_READY,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": body_schema(ExplainRequest),
                    "examples": EXPLAIN_REQUEST_EXAMPLES,
                }
            },
        }
    },
)
async def explain(request: Request, served: CurrentModel) -> Any:
    body = await request.body()  # its size limited by the request middleware
    payload = _parse(body, FIELDS_PER_COLUMN * len(served.input_columns))
    method = ExplainMethod.parse(payload.method)
    batch = _one_row(payload, served)
    runner: ExplainRunner = request.state.explain
    answer = await runner.explain(served, batch, method)
    return _public(answer, served, request.state.request_id)


@router.get(
    "/explain/global",
    response_model=GlobalViewPublic,
    summary="How the champion behaves over its training data",
    description=(
        "Feature importance (mean absolute SHAP over a sample of the training reference), a "
        "global surrogate decision tree with its fidelity to the champion and its rules as text, "
        "and partial dependence with ICE curves for the most important features. Computed once "
        "per model version (seconds), then answered from memory."
    ),
    responses={**NO_REFERENCE, **NOT_READY},
)
async def global_view(request: Request, served: CurrentModel) -> GlobalViewPublic:
    runner: ExplainRunner = request.state.explain
    view = await runner.global_view(served)
    return _global_public(view, served, request.state.request_id)


def _parse(body: bytes, max_fields: int) -> ExplainRequest:
    """JSON (NaN and Infinity let through, to be named by column; a key given twice refused), the
    row's width, the shape."""
    parsed = parse_json(body)
    row = parsed.get("row") if isinstance(parsed, dict) else None
    if isinstance(row, dict) and len(row) > max_fields:
        raise InvalidRequestError([Problem(column="row", problem=f"more than {max_fields} fields")])
    try:
        return ExplainRequest.model_validate(parsed)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        problems = problems_from_validation(errors)
        raise InvalidRequestError(problems[:MAX_PROBLEMS_LISTED], total=len(problems)) from None


def _one_row(payload: ExplainRequest, served: ServedModel) -> Batch:
    """The row checked exactly as ``/predict`` checks a row; problems name the column (there is
    one row, so no row number)."""
    try:
        return to_batch(Rows(rows=[payload.row]), served.input_columns)
    except SchemaError as error:
        problems = [RowProblem(column=p.column, problem=p.problem) for p in error.problems]
        raise SchemaError(problems, total=error.total) from None


def _public(answer: Explanation, served: ServedModel, request_id: str) -> Any:
    fields = answer.as_dict()
    version = fields.pop("model_version")
    fields.update(
        model=ModelRef(name=served.name, version=version),
        method=answer.method.value,
        request_id=request_id,
    )
    return PUBLIC[answer.method].model_validate(fields)


def _global_public(view: GlobalView, served: ServedModel, request_id: str) -> GlobalViewPublic:
    fields = view.as_dict()
    version = fields.pop("model_version")
    fields.update(model=ModelRef(name=served.name, version=version), request_id=request_id)
    return GlobalViewPublic.model_validate(fields)
