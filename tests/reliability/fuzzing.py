"""Fuzzing the API from its own OpenAPI schema with schemathesis: shared by the CI test
(tests/reliability/test_fuzz.py, a fixed seed and few examples) and bench/fuzz.py (many more).

Every operation the app documents is fuzzed, so routes added later are covered without a change
here. Each is sent data that matches its schema (positive) and data that does not (negative);
the token-protected ones with the token, and also without it. The checks: never a server error,
and every answer (status, content type, headers, body) is one the schema documents; data that
breaks the schema is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cncwear_api.core.settings import ApiSettings
from cncwear_api.main import create_app

SEED = 20261128
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CHECKS: dict[GenerationMode, list[Any]] = {
    GenerationMode.POSITIVE: CONFORMANCE,
    GenerationMode.NEGATIVE: [*CONFORMANCE, negative_data_rejection],
}


def app_schema(settings: ApiSettings | None = None) -> schemathesis.BaseSchema:
    """The schema the app itself publishes at /openapi.json (built without starting it)."""
    app = create_app(settings if settings is not None else ApiSettings(api_token="unused"))
    return schemathesis.openapi.from_dict(app.openapi())


def operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def is_protected(operation: schemathesis.APIOperation) -> bool:
    """Whether the operation declares the bearer token (FastAPI writes ``security`` for it)."""
    return bool(operation.definition.raw.get("security"))


def takes_input(operation: schemathesis.APIOperation) -> bool:
    raw = operation.definition.raw
    return bool(raw.get("parameters") or raw.get("requestBody"))


@dataclass
class Outcome:
    """What one fuzzing run of one operation saw."""

    label: str
    mode: str
    token: bool
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def fuzz(
    operation: schemathesis.APIOperation,
    base_url: str,
    *,
    mode: GenerationMode,
    headers: dict[str, str],
    examples: int,
    seed: int = SEED,
    extra_check: Callable[[requests.Response], None] | None = None,
) -> Outcome:
    """Send ``examples`` generated cases of ``mode`` to the running server; raises on the first
    failed check (after hypothesis shrank it to a minimal case)."""
    outcome = Outcome(operation.label, mode.value, bool(headers))
    session = requests.Session()

    @hypothesis.settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @hypothesis.seed(seed)
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=session, headers=headers, timeout=60)
        outcome.statuses[response.status_code] = outcome.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS[mode], headers=headers)
        if extra_check is not None:
            extra_check(response)

    try:
        run()
    finally:
        session.close()
    return outcome


def refused_without_token(response: requests.Response) -> None:
    assert response.status_code == 401, (
        f"{response.request.method} {response.request.path_url} answered "
        f"{response.status_code} without the token"
    )


def plan(
    schema: schemathesis.BaseSchema,
) -> Sequence[tuple[schemathesis.APIOperation, GenerationMode, bool]]:
    """Every operation with the token: valid data, and invalid data where it takes any input; the
    protected ones also without the token."""
    runs: list[tuple[schemathesis.APIOperation, GenerationMode, bool]] = []
    for operation in operations(schema):
        runs.append((operation, GenerationMode.POSITIVE, True))
        if takes_input(operation):
            runs.append((operation, GenerationMode.NEGATIVE, True))
        if is_protected(operation):
            runs.append((operation, GenerationMode.POSITIVE, False))
    return runs
