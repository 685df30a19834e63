"""Schema-driven fuzzing of a real server (see tests/reliability/fuzzing.py): a fixed seed and
FUZZ_EXAMPLES cases per operation, mode and token state; bench/fuzz.py runs many more."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import schemathesis
from schemathesis import GenerationMode

from tests.api.conftest import Registry
from tests.helpers import TEST_REDIS_URL

from .conftest import AUTH, TOKEN, RunningServer, serve
from .fuzzing import app_schema, fuzz, plan, refused_without_token

FUZZ_EXAMPLES = 60
"""Generated cases per operation, mode and token state (about 25 s in all, on 2 busy cores)."""

PLAN = plan(app_schema())


def _id(run: tuple[schemathesis.APIOperation, GenerationMode, bool]) -> str:
    operation, mode, token = run
    return f"{operation.label} {mode.value}{'' if token else ' no-token'}"


@pytest.fixture(scope="module")
def fuzzed_server(registry: Registry) -> Iterator[RunningServer]:
    """The session's champion behind a real server, with the retrain queue on the test Redis
    database (a fuzzed /retrain queues real jobs there; no worker runs them)."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    settings = registry.settings(api_token=TOKEN, redis_url=TEST_REDIS_URL)
    with serve(settings) as running:
        running.wait_ready(registry.compiled_version)
        yield running
    client.flushdb()
    client.close()


@pytest.mark.parametrize("run", PLAN, ids=[_id(run) for run in PLAN])
def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    run: tuple[schemathesis.APIOperation, GenerationMode, bool], fuzzed_server: RunningServer
) -> None:
    operation, mode, token = run
    outcome = fuzz(
        operation,
        fuzzed_server.url,
        mode=mode,
        headers=AUTH if token else {},
        examples=FUZZ_EXAMPLES,
        extra_check=None if token else refused_without_token,
    )
    assert outcome.requests >= 1
    with fuzzed_server.client() as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200


def test_every_documented_operation_is_fuzzed() -> None:
    labels = {operation.label for operation, _, _ in PLAN}
    assert {
        "POST /predict", "POST /explain", "GET /explain/global", "GET /model", "POST /retrain",
        "GET /jobs/{job_id}", "GET /drift", "POST /feedback", "GET /v2", "GET /v2/health/ready",
        "GET /v2/models/{name}", "GET /v2/models/{name}/versions/{version}",
        "GET /v2/models/{name}/ready", "POST /v2/models/{name}/infer",
        "POST /v2/models/{name}/versions/{version}/infer", "POST /invocations", "GET /ping",
    } <= labels  # fmt: skip
    protected = {operation.label for operation, _, token in PLAN if not token}
    assert {"POST /retrain", "POST /model/refresh", "POST /feedback"} <= protected
