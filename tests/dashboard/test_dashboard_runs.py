"""The Runs view, in headless Chromium against the running API and its real store: a run
streamed through /predict with a run id shows as collecting with its row counts; labelled from the
page with the token, it is accepted and listed in the dataset version it made; a run too short to
learn from is rejected with its reason, and withdrawn only once the confirm is accepted; the state
filter and the pages show what the API's pages hold; the champion's dataset version is on the model
card; a retrain skipped for want of new data reads as skipped. Each test also fails on any console
error."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from playwright.sync_api import Dialog, Locator, expect

from cncwear.data.dataset import Dataset
from cncwear.jobs.queue import make_celery
from cncwear.jobs.store import JobStore, RetrainRequest
from tests.api.conftest import RunningServer
from tests.api.labelled_runs import batches, records, run_label, run_rows

from .conftest import ARTIFACTS, LAPTOP, PHONE, TOKEN, Dashboard

Open = Callable[..., Dashboard]
ApiJson = Callable[[str], Any]

WORN, UNWORN = 8, 4
"""Bundled experiments, worn and unworn, of 605 and 532 rows (300 to 400 of active cutting)."""
PAGE_SIZE = 20
"""Runs on one page of the view (runs.js)."""
UNREAD_QUEUE = "dashboard-tests-nobody-reads"
"""A Celery queue no worker consumes: a job queued there is finished by the test, as the trainer
would finish it."""


def fmt(value: float | None, digits: int = 3) -> str:
    """How the page writes a number."""
    return "\u2013" if value is None else f"{value:.{digits}f}"


def minute(seconds: float) -> str:
    """A time of the store to the minute, in UTC, as the runs table writes it."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def new_run() -> str:
    return f"mill-3/2026-12-02/dash-{uuid.uuid4().hex[:8]}"


def stream(api: RunningServer, run: str, rows: pd.DataFrame) -> None:
    """The rows sent through /predict with the run id, 100 at a time, as a mill sends them."""
    with api.client() as client:
        for batch in batches(rows, 100):
            response = client.post("/predict", json={"rows": records(batch), "run": run})
            assert response.status_code == 200, response.text


def snapshot(dashboard: Dashboard, view: str, moment: str) -> None:
    """A screenshot of one view at one moment of a test (``runs-accepted.png``, say)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    section = dashboard.page.locator(f"#{view}")
    section.scroll_into_view_if_needed()
    section.screenshot(path=str(ARTIFACTS / f"{view}-{moment}.png"))


def run_row(dashboard: Dashboard, run: str) -> Locator:
    return dashboard.page.locator(f'[data-testid=run-row][data-run="{run}"]')


def cell(row: Locator, field: str) -> Locator:
    return row.locator(f"[data-field={field}]")


def give_token_if_asked(dashboard: Dashboard) -> None:
    """Types the API token into the page's dialog when it asks (once per tab)."""
    dialog = dashboard.page.get_by_test_id("token-dialog")
    if not dashboard.page.evaluate("sessionStorage.getItem('cncwear.apiToken')"):
        expect(dialog).to_be_visible()
        dashboard.page.get_by_test_id("token-input").fill(TOKEN)
        dashboard.page.get_by_test_id("token-ok").click()
    expect(dialog).to_be_hidden()


def label_on_the_page(dashboard: Dashboard, run: str, label: dict[str, Any]) -> Locator:
    """Picks the run's Label button, fills the form and sends it; the outcome's element."""
    page = dashboard.page
    run_row(dashboard, run).locator("button[data-action=label]").click()
    expect(page.get_by_test_id("label-run")).to_have_value(run)
    page.get_by_test_id(f"label-{label['tool_condition']}").check()
    page.get_by_test_id("label-feedrate").fill(str(label["feedrate"]))
    page.get_by_test_id("label-clamp-pressure").fill(str(label["clamp_pressure"]))
    page.get_by_test_id("label-material").fill(label["material"])
    page.get_by_test_id("label-button").click()
    give_token_if_asked(dashboard)
    outcome = page.get_by_test_id("label-outcome")
    expect(outcome).to_have_attribute("data-state", re.compile(".+"), timeout=30_000)
    return outcome


def test_a_streamed_run_shows_collecting_then_labelled_on_the_page_is_accepted_into_a_version(
    open_dashboard: Open, api: RunningServer, api_json: ApiJson, dataset: Dataset
) -> None:
    run = new_run()
    rows = run_rows(dataset, WORN)
    stream(api, run, rows)
    collecting = api_json(f"/runs/{run}")
    champion = api_json("/model")["version"]

    dashboard = open_dashboard()
    row = run_row(dashboard, run)
    expect(cell(row, "state")).to_have_text("collecting")
    expect(cell(row, "rows")).to_have_text(str(len(rows)))
    expect(cell(row, "active_rows")).to_have_text(str(collecting["active_rows"]))
    assert 200 <= collecting["active_rows"] < len(rows)
    expect(cell(row, "model_versions")).to_have_text(f"v{champion}")
    expect(cell(row, "label")).to_have_text("\u2013")
    expect(cell(row, "live")).to_have_text("\u2013")
    for seen in ("first_seen", "last_seen"):
        expect(cell(row, seen)).to_have_attribute("data-minute", minute(collecting[seen]))
    snapshot(dashboard, "runs", "collecting")

    outcome = label_on_the_page(dashboard, run, run_label(dataset, WORN))

    expect(outcome).to_have_attribute("data-state", "accepted")
    accepted = api_json(f"/runs/{run}")
    assert accepted["state"] == "accepted"
    assert accepted["label"]["tool_condition"] == "worn"
    expect(cell(row, "state")).to_have_text("accepted")
    expect(cell(row, "label")).to_contain_text("worn (feed ")
    live = accepted["live"]
    expect(cell(row, "live")).to_have_text(f"{fmt(live['accuracy'])} of {live['rows']}")
    assert live["rows"] == len(rows)
    drift = accepted["drift"]  # judged when labelled
    assert drift is not None and drift["model_version"] == champion
    expect(cell(row, "drift")).to_have_text(
        f"unusual: {', '.join(drift['drifted_features'])}" if drift["drifted"] else "normal"
    )
    expect(row.locator("button[data-action=label]")).to_have_count(0)  # closed: no second label

    version = accepted["dataset_versions"][-1]
    expect(outcome).to_contain_text(version)
    listed = next(v for v in api_json("/data/versions") if v["id"] == version)
    version_row = dashboard.page.locator(
        f'[data-testid=data-version-row][data-version="{version}"]'
    )
    expect(cell(version_row, "runs")).to_contain_text(run)
    assert listed["current"]  # the latest accepted run makes the version a retrain would use
    expect(version_row).to_have_attribute("data-current", "true")
    expect(cell(version_row, "current")).to_have_text("current")
    counts = listed["counts"]
    worn = f"{counts['all']['worn']} ({counts['base']['worn']} + {counts['runs'].get('worn', 0)})"
    expect(cell(version_row, "worn")).to_have_text(worn)
    base = listed["parts"]["base"]
    expect(cell(version_row, "base")).to_have_text(
        f"{base['source']}, {base['experiments']} experiments"
    )
    assert cell(row, "dataset_versions").inner_text().startswith(version[:12])
    snapshot(dashboard, "runs", "accepted")
    snapshot(dashboard, "data", "accepted")
    dashboard.assert_clean()


def test_a_run_too_short_is_rejected_with_its_reason_and_withdrawn_only_once_confirmed(
    open_dashboard: Open, api: RunningServer, api_json: ApiJson, dataset: Dataset
) -> None:
    run = new_run()
    stream(api, run, run_rows(dataset, UNWORN).head(150))  # under CNCWEAR_RUN_MIN_ROWS=200
    dashboard = open_dashboard()
    page = dashboard.page
    row = run_row(dashboard, run)
    expect(cell(row, "state")).to_have_text("collecting")

    outcome = label_on_the_page(dashboard, run, run_label(dataset, UNWORN))

    expect(outcome).to_have_attribute("data-state", "rejected")
    rejected = api_json(f"/runs/{run}")
    assert rejected["state"] == "rejected"
    assert any(r.startswith("too few active-cutting rows") for r in rejected["reasons"])
    reasons = page.locator(f'[data-testid=run-reasons][data-run="{run}"]')
    expect(reasons).to_have_text("why rejected: " + "; ".join(rejected["reasons"]))
    for reason in rejected["reasons"]:
        expect(outcome).to_contain_text(reason)
    expect(cell(row, "dataset_versions")).to_have_text("\u2013")
    snapshot(dashboard, "runs", "rejected")

    confirms: list[str] = []

    def answer(accept: bool) -> Callable[[Dialog], None]:
        def handle(dialog: Dialog) -> None:
            confirms.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return handle

    page.once("dialog", answer(accept=False))
    row.locator("button[data-action=withdraw]").click()
    assert len(confirms) == 1 and run in confirms[0]
    assert api_json(f"/runs/{run}")["state"] == "rejected"  # cancelled: nothing was sent

    page.once("dialog", answer(accept=True))
    row.locator("button[data-action=withdraw]").click()
    expect(cell(row, "state")).to_have_text("withdrawn")
    assert api_json(f"/runs/{run}")["state"] == "withdrawn"
    expect(row.locator("button[data-action=withdraw]")).to_have_count(0)

    state = page.get_by_test_id("runs-state")
    state.select_option("rejected")
    expect(page.get_by_test_id("runs-summary")).to_contain_text("rejected run(s)")
    expect(row).to_have_count(0)
    state.select_option("withdrawn")
    withdrawn = api_json("/runs?state=withdrawn&limit=20")
    expect(page.get_by_test_id("run-row")).to_have_count(len(withdrawn["runs"]))
    expect(cell(row, "state")).to_have_text("withdrawn")
    dashboard.assert_clean()


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_runs_view_pages_through_the_runs_as_the_api_pages_them(
    open_dashboard: Open, api: RunningServer, api_json: ApiJson, dataset: Dataset, viewport: Any
) -> None:
    missing = PAGE_SIZE + 1 - api_json("/runs?limit=1")["total"]
    for _ in range(max(missing, 0)):  # one-row runs, until there is a second page
        stream(api, new_run(), run_rows(dataset, UNWORN).head(1))
    first = api_json(f"/runs?limit={PAGE_SIZE}&offset=0")
    second = api_json(f"/runs?limit={PAGE_SIZE}&offset={PAGE_SIZE}")

    dashboard = open_dashboard(viewport)
    page = dashboard.page
    rows = page.get_by_test_id("run-row")
    summary = page.get_by_test_id("runs-summary")
    expect(summary).to_have_text(f"1\u2013{PAGE_SIZE} of {first['total']} run(s), newest first")
    assert [r.get_attribute("data-run") for r in rows.all()] == [r["run"] for r in first["runs"]]
    expect(page.get_by_test_id("runs-newer")).to_be_disabled()

    page.get_by_test_id("runs-older").click()
    last = PAGE_SIZE + len(second["runs"])
    expect(summary).to_have_text(
        f"{PAGE_SIZE + 1}\u2013{last} of {second['total']} run(s), newest first"
    )
    assert [r.get_attribute("data-run") for r in rows.all()] == [r["run"] for r in second["runs"]]
    page.get_by_test_id("runs-newer").click()
    expect(summary).to_contain_text(f"1\u2013{PAGE_SIZE} of")

    for view in ("runs", "data"):
        page.locator(f"#{view}").scroll_into_view_if_needed()
        dashboard.screenshot(view)
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    dashboard.assert_clean()


def test_data_versions_of_the_champion_and_retrains_are_shown_and_a_skipped_retrain_reads_so(
    open_dashboard: Open, api: RunningServer, api_json: ApiJson
) -> None:
    # A retrain job that the trainer skipped, recorded in the real job store as the trainer
    # records it (cncwear_trainer.tasks.skipped): queued where no worker reads, then finished.
    celery = make_celery(api.settings)
    celery.conf.task_default_queue = UNREAD_QUEUE
    jobs = JobStore(api.settings)
    card = api_json("/model")
    try:
        job, created = jobs.enqueue(RetrainRequest(reason="drift", if_new_data=True), celery)
        assert created, "another retrain is queued or running"
        jobs.start(job.job_id)
        jobs.finish(
            job.job_id,
            result={
                "skipped": True,
                "reason": "no new data",
                "detail": "the champion was trained on the latest dataset version",
                "data_version": card["data_version"],
                "champion_version": card["version"],
                "champion_data_version": card["data_version"],
                "candidates": [],
                "winner": None,
                "version": card["version"],
                "promoted": False,
                "decision": "skipped: no new data",
                "warnings": [],
            },
        )
    finally:
        jobs.close()
        celery.close()

    dashboard = open_dashboard()
    assert card["data_version"], "the champion was trained on a dataset version"
    assert dashboard.text("champion-data-version") == card["data_version"]
    version_row = dashboard.page.locator(
        f'[data-testid=data-version-row][data-version="{card["data_version"]}"]'
    )
    expect(cell(version_row, "id")).to_contain_text(f"\u2605 {card['data_version']}")
    expect(cell(version_row, "model_versions")).to_contain_text(f"v{card['version']}")
    retrains = api_json("/model/retrains?limit=3")
    tags = dashboard.page.get_by_test_id("retrain-data-version")
    expect(tags).to_have_count(len(retrains))
    assert tags.all_inner_texts() == [r["data_version"] or "\u2013" for r in retrains]

    assert dashboard.text("retrain-job-id") == job.job_id[:8]
    assert dashboard.text("retrain-state") == "skipped"
    decision = dashboard.page.get_by_test_id("retrain-decision")
    expect(decision).to_have_attribute("data-skipped", "true")
    expect(decision).to_contain_text("Skipped: no new data (the champion was trained on")
    expect(decision).to_contain_text(f"the champion, version {card['version']}")
    snapshot(dashboard, "retrain", "skipped")
    dashboard.assert_clean()


def test_labelling_from_the_page_without_the_token_changes_nothing(
    open_dashboard: Open, api: RunningServer, api_json: ApiJson, dataset: Dataset
) -> None:
    run = new_run()
    stream(api, run, run_rows(dataset, WORN).head(100))
    dashboard = open_dashboard()
    page = dashboard.page
    run_row(dashboard, run).locator("button[data-action=label]").click()
    page.get_by_test_id("label-worn").check()
    page.get_by_test_id("label-feedrate").fill("6")
    page.get_by_test_id("label-clamp-pressure").fill("4")
    page.get_by_test_id("label-button").click()
    expect(page.get_by_test_id("token-dialog")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_test_id("token-dialog")).to_be_hidden()
    assert api_json(f"/runs/{run}")["state"] == "collecting"
    expect(cell(run_row(dashboard, run), "state")).to_have_text("collecting")
    dashboard.assert_clean()
