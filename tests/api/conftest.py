"""Real servers on a real registry.

One MLflow store (SQLite + local artifacts) is trained once per session with two champions in
turn: a baseline (which has no compiled form: served by scikit-learn) and a random forest (served by
onnxruntime). Scenarios that move the champion alias get a registered model of their own, made of
copies of those versions, so they cannot disturb each other. Servers are real uvicorn servers on a
free loopback port, in a thread of the test process (the API's imports take long to start a process
for each test); one test also starts the ``cncwear-api`` console script as a process.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import redis
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from cncwear.core.choices import Budget
from cncwear.core.schema import input_columns
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.training.retrain import retrain
from cncwear_api.core.settings import ApiSettings
from cncwear_api.main import create_app

WAIT_SECONDS = 120.0
"""Upper bound for things that happen in the background (a model load, a swap); tests wait until
the thing happens, this only keeps a broken build from hanging."""


@dataclass(frozen=True)
class Registry:
    """The session's trained store."""

    home: Path
    model_name: str
    fallback_version: str
    """Baseline: not convertible, served by scikit-learn."""
    compiled_version: str
    """Random forest: served by onnxruntime; the champion of ``model_name``."""

    def settings(self, **changes: Any) -> ApiSettings:
        base: dict[str, Any] = {
            "home": self.home,
            "model_name": self.model_name,
            "mlflow_tracking_uri": None,
            "poll_interval_seconds": 3600.0,
            "api_token": None,
        }
        return ApiSettings(**{**base, **changes})

    def store(self, model_name: str | None = None) -> ModelStore:
        return ModelStore(self.settings(model_name=model_name or self.model_name))

    def new_model(self, *versions: str, champion: str | None = None) -> tuple[str, list[str]]:
        """A registered model of its own, holding copies of the given versions (tags included);
        ``champion``, one of ``versions``, gets the alias. Returns its name and new versions."""
        name = f"scenario-{uuid.uuid4().hex[:8]}"
        client = self.store().client
        client.create_registered_model(name)
        copies = []
        for version in versions:
            source = client.get_model_version(self.model_name, version)
            copy = client.copy_model_version(f"models:/{self.model_name}/{version}", name)
            for key, value in source.tags.items():
                client.set_model_version_tag(name, copy.version, key, value)
            copies.append(str(copy.version))
            if version == champion:
                client.set_registered_model_alias(name, "champion", str(copy.version))
        return name, copies


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory, _isolated_environment: None) -> Registry:
    if not _TRAINED:
        _TRAINED.append(_train_registry(tmp_path_factory))
    return _TRAINED[0]


_TRAINED: list[Registry] = []


def _train_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Trained once per test session, also when another package's conftest imports the
    ``registry`` fixture (tests/reliability does): pytest would otherwise train it once per
    package."""
    home = tmp_path_factory.mktemp("api") / "home"
    settings = Settings(home=home, model_name=f"api-{uuid.uuid4().hex[:8]}", n_jobs=2)
    baseline = retrain(settings, budget=Budget.FAST, candidates=["baseline"])
    forest = retrain(settings, budget=Budget.FAST, candidates=["random_forest"])
    assert forest.decision.promoted, forest.decision.reason
    tags = ModelStore(settings).client.get_model_version(settings.model_name, forest.version).tags
    assert tags[Tag.COMPILED_FORMAT] == "onnx", tags.get(Tag.COMPILED_REASON)
    return Registry(home, settings.model_name, baseline.version, forest.version)


@pytest.fixture(scope="session")
def real_rows(dataset: Dataset) -> pd.DataFrame:
    """300 real rows of active cutting, from every experiment, in the model's raw columns."""
    rows = dataset.rows.groupby("experiment").sample(n=17, random_state=7)
    return rows[input_columns(use_identifying_columns=False)].head(300).reset_index(drop=True)


@pytest.fixture(scope="session")
def redis_available() -> None:
    client = redis.Redis.from_url(Settings().redis_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"these tests need the Redis at {Settings().redis_url}: {error}")
    finally:
        client.close()


@dataclass
class RunningServer:
    url: str
    settings: ApiSettings

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kwargs)

    def get_json(self, path: str) -> dict[str, Any]:
        """The JSON body of ``GET path``, which must answer 200."""
        with self.client() as client:
            response = client.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_ready(self, version: str | None = None) -> dict[str, Any]:
        """Wait until the server serves a champion (``version`` if given); returns /ready."""
        with self.client() as client:
            body: dict[str, Any] = {}

            def serving() -> bool:
                nonlocal body
                response = client.get("/ready")
                body = response.json()
                if response.status_code != 200:
                    return False
                return version is None or body["model"]["version"] == version

            wait_until(serving, f"{self.url} to serve version {version or 'any'}")
            return body


@contextmanager
def serve(settings: ApiSettings) -> Iterator[RunningServer]:
    """A real uvicorn server of ``create_app(settings)`` on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "the server to start")
        yield RunningServer(url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(registry: Registry) -> Iterator[RunningServer]:
    """A server of the session's champion (the random forest, through onnxruntime), with small
    limits so that oversized requests are cheap to send."""
    settings = registry.settings(max_batch_rows=1000, max_body_bytes=2 * 1024 * 1024)
    with serve(settings) as running:
        running.wait_ready(registry.compiled_version)
        yield running


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [dict(zip(frame.columns, row, strict=True)) for row in frame.itertuples(index=False)]


def v2_inputs(rows: list[dict[str, Any]], numbers: str = "FP64") -> list[dict[str, Any]]:
    """Records as Open Inference Protocol v2 inputs, one per column (MLServer's pandas codec):
    ``numbers`` (``FP64``, ``FP32``) for numeric columns, ``BYTES`` for text."""
    return [
        {
            "name": column,
            "shape": [len(rows)],
            "datatype": "BYTES" if isinstance(value, str) else numbers,
            "data": [row[column] for row in rows],
        }
        for column, value in rows[0].items()
    ]


def scrape(server: RunningServer) -> dict[str, float]:
    """The server's /metrics, one value per series, keyed by name and sorted labels."""
    return scrape_url(server.url)


def scrape_url(url: str) -> dict[str, float]:
    """:func:`scrape` of a server known by its URL only (a ``cncwear-api`` process)."""
    text = httpx.get(f"{url}/metrics", timeout=60.0).text
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
