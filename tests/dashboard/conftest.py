"""The dashboard in a real browser against a real API.

One champion (a random forest, fast budget) is trained once for these tests into a store of their
own; a real uvicorn server serves it (``tests.api.conftest.serve``), a real ``cncwear-trainer``
worker process runs the retrains the page asks for, on the Redis database of
``CNCWEAR_TEST_REDIS_URL``. The browser is Debian's ``chromium``, driven by Playwright (never
Playwright's own downloaded browsers), headless and kept off the network.

Screenshots go to ``var/test-artifacts/dashboard/`` (or ``CNCWEAR_TEST_ARTIFACTS``/dashboard).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, sync_playwright
from pydantic import SecretStr

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from cncwear.training.retrain import retrain
from cncwear_api.core.settings import ApiSettings
from tests.api.conftest import (  # noqa: F401  (the session's registry, shared with tests/api)
    RunningServer,
    registry,
    serve,
)
from tests.helpers import TEST_REDIS_URL
from tests.trainer.conftest import WORKER, wait_for, worker_environment

CHROMIUM = Path(os.environ.get("CNCWEAR_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-test-token-0123456789"
ARTIFACTS = (
    Path(os.environ.get("CNCWEAR_TEST_ARTIFACTS", Path(__file__).parents[2] / "var/test-artifacts"))
    / "dashboard"
)
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def dashboard_settings(
    tmp_path_factory: pytest.TempPathFactory, _isolated_environment: None
) -> ApiSettings:
    """A store of its own with a trained champion, and the API's settings for it."""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    name = f"dashboard-{uuid.uuid4().hex[:8]}"
    trained = retrain(
        Settings(home=home, model_name=name, n_jobs=2, redis_url=TEST_REDIS_URL),
        budget=Budget.FAST,
        candidates=["random_forest"],
        reason="dashboard tests",
    )
    assert trained.decision.promoted, trained.decision.reason
    return ApiSettings(
        home=home,
        model_name=name,
        mlflow_tracking_uri=None,
        redis_url=TEST_REDIS_URL,
        api_token=SecretStr(TOKEN),
        poll_interval_seconds=3600.0,
        budget=Budget.FAST,
        n_jobs=1,
        # The Runs view's tests label runs: an accepted run must not queue a retrain that the
        # worker of the retrain tests would then train, in the middle of other tests.
        retrain_after_runs=0,
    )


@pytest.fixture(scope="package")
def redis_db() -> Iterator[str]:
    """The Redis database of these tests, emptied before and after. Package scope, like the API,
    the worker and the browser: they stop when the dashboard tests end, so that the worker takes
    no job of later tests and Playwright's event loop is gone before tests that run their own."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as error:
        pytest.fail(f"these tests need the Redis at {TEST_REDIS_URL}: {error}")
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="package")
def api(dashboard_settings: ApiSettings, redis_db: str) -> Iterator[RunningServer]:
    with serve(dashboard_settings) as running:
        running.wait_ready()
        yield running


@pytest.fixture(scope="package")
def worker(
    dashboard_settings: ApiSettings, redis_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A real trainer worker on the same store and Redis as the API; yields its log."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = worker_environment(dashboard_settings)
    env.update(CNCWEAR_MODEL_NAME=dashboard_settings.model_name, CNCWEAR_AUTOML_ENGINE="flaml")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WORKER), "worker", "--hostname", f"dashboard-{uuid.uuid4().hex[:6]}@%h"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace"), timeout=90, what="worker")
        yield log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=30)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"these tests need Debian's chromium at {CHROMIUM} (scripts/test-packages.apt)")
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@dataclass
class Dashboard:
    """A page of the dashboard, with every console error and every request it made."""

    page: Page
    origin: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def open(self) -> None:
        self.page.goto(self.origin + "/")
        self.page.wait_for_selector("body[data-loaded=true]", timeout=120_000)

    def text(self, test_id: str) -> str:
        return self.page.get_by_test_id(test_id).inner_text().strip()

    def chart(self, canvas_id: str) -> dict[str, Any]:
        """What Chart.js drew on a canvas: its type and datasets (labels and data)."""
        drawn: dict[str, Any] | None = self.page.evaluate(
            """(id) => {
                const chart = window.Chart.getChart(document.getElementById(id));
                if (!chart) return null;
                const canvas = chart.canvas;
                return {
                    type: chart.config.type,
                    width: canvas.width,
                    height: canvas.height,
                    labels: chart.data.labels || [],
                    datasets: chart.data.datasets.map((d) => ({label: d.label, data: d.data})),
                };
            }""",
            canvas_id,
        )
        assert drawn is not None, f"no chart drawn on #{canvas_id}"
        assert drawn["width"] > 0 and drawn["height"] > 0
        return drawn

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        width = self.page.viewport_size["width"] if self.page.viewport_size else 0
        path = ARTIFACTS / f"{name}-{width}px.png"
        self.page.locator(f"#{name}").screenshot(path=str(path))
        return path

    def assert_clean(self) -> None:
        """No console error, and every request went to the API's own origin."""
        assert self.console_errors == []
        foreign = [url for url in self.requests if _origin(url) != self.origin]
        assert foreign == [], foreign
        assert self.requests, "the page made no request at all"


def _origin(url: str) -> str:
    if url.startswith("data:"):
        return "data:"  # the page's empty inline favicon: no request leaves the browser
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def open_server_dashboard(browser: Browser) -> Iterator[Any]:
    """Opens the dashboard of a given server at a viewport size (laptop by default) and records
    what it does."""
    contexts = []

    def open_at(server: RunningServer, viewport: dict[str, int] = LAPTOP) -> Dashboard:
        context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        contexts.append(context)
        page = context.new_page()
        dashboard = Dashboard(page=page, origin=server.url)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                dashboard.console_errors.append(f"{message.text} @ {message.location}")

        def on_request(request: Request) -> None:
            dashboard.requests.append(request.url)

        page.on("console", on_console)
        page.on("pageerror", lambda error: dashboard.console_errors.append(str(error)))
        page.on("request", on_request)
        dashboard.open()
        return dashboard

    yield open_at
    for context in contexts:
        context.close()


@pytest.fixture
def open_dashboard(open_server_dashboard: Any, api: RunningServer) -> Any:
    """Opens the dashboard of these tests' API at a viewport size (laptop by default)."""

    def open_at(viewport: dict[str, int] = LAPTOP) -> Dashboard:
        dashboard: Dashboard = open_server_dashboard(api, viewport)
        return dashboard

    return open_at


@pytest.fixture
def api_json(api: RunningServer) -> Iterator[Any]:
    """GET a path of the API as JSON, the way a program would read it."""
    with httpx.Client(base_url=api.url, timeout=120.0) as client:

        def get(path: str) -> Any:
            response = client.get(path)
            assert response.status_code == 200, response.text
            return response.json()

        yield get
