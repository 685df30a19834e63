"""The dashboard, in headless Chromium against a running API with a champion: every view draws the
numbers the API's JSON holds, explaining a row shows SHAP, LIME and an anchor, a retrain started
from the page ends with its promotion decision on the page, and nothing is fetched from another
host. Each test also fails on any console error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import LAPTOP, PHONE, TOKEN, Dashboard

Open = Callable[..., Dashboard]
ApiJson = Callable[[str], Any]

VIEWS = (
    "champion",
    "shadow",
    "evaluation",
    "candidates",
    "distributions",
    "drift",
    "global",
    "explain",
)


def fmt(value: float | None, digits: int = 3) -> str:
    """How the page writes a number."""
    return "\u2013" if value is None else f"{value:.{digits}f}"


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_every_view_renders_at_laptop_and_phone_width_from_this_server_only(
    open_dashboard: Open, viewport: dict[str, int]
) -> None:
    dashboard = open_dashboard(viewport)
    page = dashboard.page
    for view in VIEWS:
        section = page.locator(f"#{view}")
        section.scroll_into_view_if_needed()
        box = section.bounding_box()
        assert box is not None and box["width"] <= viewport["width"]
        dashboard.screenshot(view)
    # Nothing wider than the screen: the page never scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    dashboard.assert_clean()


def test_champion_view_shows_the_grouped_and_the_leaky_figure_of_the_api(
    open_dashboard: Open, api_json: ApiJson
) -> None:
    dashboard = open_dashboard()
    card = api_json("/model")
    assert dashboard.text("champion-version") == card["version"]
    assert dashboard.text("champion-engine") == card["engine"]
    assert dashboard.text("champion-candidate") == card["candidate"]
    assert dashboard.text("champion-runtime") == card["serving"]["runtime"]
    assert dashboard.text("champion-trained").startswith(card["trained_at"][:10])
    grouped = card["metrics"]["holdout"]["accuracy"]
    assert dashboard.text("metric-grouped-accuracy") == fmt(grouped)
    assert dashboard.text("metric-leaky-accuracy") == fmt(card["leaky_row_split"]["accuracy"])
    assert "never used to choose a model" in dashboard.text("leak-explanation")
    row = dashboard.page.locator("[data-testid=holdout-metrics] tr[data-metric=mcc] td")
    assert row.inner_text() == fmt(card["metrics"]["holdout"]["mcc"])
    experiments = dashboard.chart("experiment-chart")
    per_experiment = api_json("/model/evaluation")["per_experiment_accuracy"]
    assert experiments["datasets"][0]["data"] == list(per_experiment.values())
    dashboard.assert_clean()


def test_evaluation_view_draws_the_confusion_matrix_and_both_curves(
    open_dashboard: Open, api_json: ApiJson
) -> None:
    dashboard = open_dashboard()
    evaluation = api_json("/model/evaluation")
    counts = evaluation["confusion_matrix"]["counts"]
    for i in range(2):
        for j in range(2):
            assert dashboard.text(f"cm-{i}-{j}") == str(counts[i][j])
    assert dashboard.text("roc-auc") == fmt(evaluation["roc"]["auc"])
    assert dashboard.text("pr-ap") == fmt(evaluation["precision_recall"]["average_precision"])
    roc = dashboard.chart("roc-chart")["datasets"][0]["data"]
    assert [p["x"] for p in roc] == evaluation["roc"]["fpr"]
    assert [p["y"] for p in roc] == evaluation["roc"]["tpr"]
    pr = dashboard.chart("pr-chart")["datasets"][0]["data"]
    assert [p["y"] for p in pr] == evaluation["precision_recall"]["precision"]
    dashboard.assert_clean()


def test_candidates_view_puts_the_candidates_of_each_recent_retrain_side_by_side(
    open_dashboard: Open, api_json: ApiJson
) -> None:
    dashboard = open_dashboard()
    retrains = api_json("/model/retrains?limit=3")
    cards = dashboard.page.get_by_test_id("retrain-card")
    expect(cards).to_have_count(len(retrains))
    for index, retrain in enumerate(retrains):
        card = cards.nth(index)
        assert card.get_attribute("data-run") == retrain["run_id"]
        for candidate in retrain["candidates"]:
            row = card.locator(f"tr[data-candidate={candidate['name']}]")
            cell = row.locator("td[data-metric=holdout_accuracy]")
            assert cell.inner_text() == fmt(candidate["metrics"]["holdout_accuracy"])
        drawn = dashboard.chart(f"retrain-chart-{index}")
        assert drawn["labels"] == [c["name"] for c in retrain["candidates"] if not c["error"]]
    first = retrains[-1]  # the champion's own retrain
    assert (
        cards.nth(len(retrains) - 1).get_by_test_id("retrain-decision-tag").inner_text()
        == (first["decision"])
    )
    dashboard.assert_clean()


def test_distributions_view_plots_each_feature_s_training_histogram(
    open_dashboard: Open, api_json: ApiJson
) -> None:
    dashboard = open_dashboard()
    distributions = api_json("/model/distributions")
    select = dashboard.page.get_by_test_id("feature-select")
    options = select.locator("option").all_inner_texts()
    assert options == [f["feature"] for f in distributions["features"]]
    for feature in distributions["features"][:2]:
        select.select_option(feature["feature"])
        total = sum(feature["histogram"]["counts"])
        drawn = dashboard.chart("distribution-chart")["datasets"][0]["data"]
        assert [round(p["y"] * total) for p in drawn] == feature["histogram"]["counts"]
        caption = dashboard.text("distribution-caption")
        assert f"training mean {fmt(feature['mean'])}" in caption
    probability = dashboard.chart("probability-chart")["datasets"][0]["data"]
    assert probability == distributions["holdout_probability_worn"]["counts"]
    dashboard.assert_clean()


def test_retrain_from_the_page_asks_for_the_token_and_shows_the_decision(
    open_dashboard: Open, api_json: ApiJson, worker: Path
) -> None:
    dashboard = open_dashboard()
    page = dashboard.page
    page.get_by_test_id("retrain-budget").select_option("fast")
    page.locator("input[name=candidates][value=baseline]").check()
    page.get_by_test_id("retrain-button").click()
    dialog = page.get_by_test_id("token-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("token-input").fill(TOKEN)
    page.get_by_test_id("token-ok").click()
    decision = page.get_by_test_id("retrain-decision")
    expect(decision).not_to_be_empty(timeout=300_000)
    assert page.evaluate("sessionStorage.getItem('cncwear.apiToken')") == TOKEN
    job_id_prefix = dashboard.text("retrain-job-id")
    [job] = [j for j in api_json("/jobs") if j["job_id"].startswith(job_id_prefix)]
    assert job["state"] == "succeeded", job
    result = job["result"]
    assert dashboard.text("retrain-state") == "succeeded"
    assert page.get_by_test_id("retrain-progress").evaluate("p => p.value") == 100
    assert decision.get_attribute("data-promoted") == str(result["promoted"]).lower()
    assert f"version {result['version']}" in decision.inner_text()
    assert result["decision"] in decision.inner_text()
    # A weak baseline does not dethrone the forest: the page says the champion was kept.
    assert decision.inner_text().startswith("Kept the champion")
    # The candidates view now leads with this retrain.
    expect(page.get_by_test_id("retrain-card").first).to_have_attribute(
        "data-run", result["run_id"]
    )
    dashboard.screenshot("retrain")
    dashboard.assert_clean()
