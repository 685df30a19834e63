"""MLflow's scoring protocol, checked against MLflow's own scoring server as the oracle: the same
bodies sent to ``mlflow models serve`` of the session's champion and to a real cncwear server get
the same status and the same answer (the probabilities to the last bit), for every JSON input
format, for CSV and for the errors (415 on another content type, 400 with MLflow's error shape).
MLflow's own scoring client (``ScoringServerClient``) talks to both."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

from tests.deploy.conftest import start
from tests.helpers import free_port

from .conftest import Registry, RunningServer, records

BIN = Path(sys.executable).parent
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def oracle(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow models serve`` of the champion, in this environment; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.settings().tracking_uri(),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{registry.model_name}@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("mlflow-serve") / "serve.log"
    process = start(command, env, log, "mlflow models serve")
    try:
        try:
            ScoringServerClient("127.0.0.1", port).wait_server_ready(300, process.popen)
        except RuntimeError:
            pytest.fail(f"mlflow models serve did not start:\n{process.output()[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()  # its whole process group: the scoring server's workers too


@pytest.fixture(scope="module")
def both(oracle: str, server: RunningServer) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with httpx.Client(base_url=oracle, timeout=60) as theirs, server.client() as ours:
        yield theirs, ours


@pytest.fixture(scope="module")
def rows(real_rows: pd.DataFrame) -> pd.DataFrame:
    return real_rows.head(25)


def post_both(
    both: tuple[httpx.Client, httpx.Client], body: bytes | str, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    theirs, ours = both
    return (
        theirs.post("/invocations", content=body, headers=headers),
        ours.post("/invocations", content=body, headers=headers),
    )


def split(frame: pd.DataFrame) -> dict[str, Any]:
    return {"columns": list(frame.columns), "data": frame.astype(object).to_numpy().tolist()}


def bodies(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        "dataframe_split": {"dataframe_split": split(frame)},
        "dataframe_split with index": {"dataframe_split": frame.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": records(frame)},
        "instances as records": {"instances": records(frame)},
        "inputs as columns": {"inputs": {c: frame[c].tolist() for c in frame.columns}},
        "with params": {"dataframe_split": split(frame), "params": {}},
    }


FORMATS = list(bodies(pd.DataFrame({"a": [1]})))


@pytest.mark.parametrize("form", FORMATS)
def test_each_json_input_format_gets_mlflows_own_answer(
    both: tuple[httpx.Client, httpx.Client], rows: pd.DataFrame, form: str
) -> None:
    theirs, ours = post_both(both, json.dumps(bodies(rows)[form]), JSON)
    assert theirs.status_code == 200, theirs.text
    assert ours.status_code == 200, ours.text
    assert ours.json() == theirs.json()
    assert len(ours.json()["predictions"]) == len(rows)


def test_csv_gets_mlflows_own_answer(
    both: tuple[httpx.Client, httpx.Client], rows: pd.DataFrame
) -> None:
    theirs, ours = post_both(both, rows.to_csv(index=False), {"content-type": "text/csv"})
    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    assert ours.json() == theirs.json()


def test_mlflows_scoring_client_gets_the_same_predictions_from_both(
    oracle: str, server: RunningServer, rows: pd.DataFrame
) -> None:
    answers = []
    for url in (oracle, server.url):
        host, port = url.removeprefix("http://").split(":")
        client = ScoringServerClient(host, int(port))
        client.ping()
        assert client.get_version()
        answers.append(client.invoke(rows).get_predictions())
    pd.testing.assert_frame_equal(answers[1], answers[0], check_exact=True)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json; charset=latin-1"])
def test_another_content_type_is_refused_with_415_as_mlflow_does(
    both: tuple[httpx.Client, httpx.Client], rows: pd.DataFrame, content_type: str
) -> None:
    body = json.dumps({"dataframe_split": split(rows)})
    theirs, ours = post_both(both, body, {"content-type": content_type})
    assert theirs.status_code == ours.status_code == 415
    assert ours.headers["content-type"].startswith("text/plain")
    assert theirs.headers["content-type"].startswith("text/plain")


BAD_BODIES = {
    "not JSON": b"{not json",
    "a list": b"[1, 2]",
    "no input format": json.dumps({"rows": []}).encode(),
    "two input formats": json.dumps({"dataframe_records": [], "instances": []}).encode(),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_malformed_body_is_400_in_mlflows_error_shape(
    both: tuple[httpx.Client, httpx.Client], case: str
) -> None:
    theirs, ours = post_both(both, BAD_BODIES[case], JSON)
    assert theirs.status_code == ours.status_code == 400, (theirs.text, ours.text)
    assert ours.json()["error_code"] == theirs.json()["error_code"] == "BAD_REQUEST"
    assert isinstance(ours.json()["message"], str)


def test_a_bad_cell_is_400_in_mlflows_shape_naming_its_row_and_column(
    both: tuple[httpx.Client, httpx.Client], rows: pd.DataFrame
) -> None:
    bad = records(rows.head(3))
    bad[2]["X1_OutputPower"] = "lots"
    theirs, ours = post_both(both, json.dumps({"dataframe_records": bad}), JSON)
    assert theirs.status_code == ours.status_code == 400, (theirs.text, ours.text)
    assert ours.json()["error_code"] == theirs.json()["error_code"] == "BAD_REQUEST"
    assert "row 2, X1_OutputPower:" in ours.json()["message"]
