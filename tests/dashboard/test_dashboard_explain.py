"""The dashboard's explanation views in headless Chromium: the global view draws the API's
importance, surrogate and partial dependence, and explaining a picked row shows SHAP (with derived
features broken down into raw columns), LIME with its fit and an anchor with its precision against
the threshold, each marked when partial or of low fidelity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.api.conftest import RunningServer

from .conftest import Dashboard
from .test_dashboard import fmt

Open = Callable[..., Dashboard]
ApiJson = Callable[[str], Any]
EXPLAIN_SECONDS = 180


def test_global_view_draws_importance_surrogate_rules_and_partial_dependence(
    open_dashboard: Open, api_json: ApiJson
) -> None:
    view = api_json("/explain/global")  # computed once per version: the page gets the same
    dashboard = open_dashboard()
    importance = dashboard.chart("importance-chart")
    top = view["importance"][:15]
    assert importance["labels"] == [i["feature"] for i in top]
    assert importance["datasets"][0]["data"] == [i["mean_abs_shap"] for i in top]
    surrogate = view["surrogate"]
    assert dashboard.text("surrogate-fidelity") == fmt(surrogate["fidelity_accuracy"])
    assert surrogate["rules"].strip() in dashboard.text("surrogate-rules")
    curves = view["partial_dependence"]
    options = dashboard.page.get_by_test_id("pd-select").locator("option").all_inner_texts()
    assert options == [c["feature"] for c in curves]
    drawn = dashboard.chart("pd-chart")["datasets"]
    assert [p["y"] for p in drawn[0]["data"]] == curves[0]["average"]
    assert len(drawn) == 1 + len(curves[0]["ice"])  # the average and one line per ICE row
    dashboard.screenshot("global")
    dashboard.assert_clean()


def test_explaining_a_picked_row_shows_shap_lime_and_an_anchor(
    open_dashboard: Open, api_json: ApiJson, api: RunningServer
) -> None:
    dashboard = open_dashboard()
    page = dashboard.page
    examples = api_json("/model/examples?per_experiment=3")["examples"]
    worn = next(i for i, e in enumerate(examples) if e["true_label"] == "worn")
    page.get_by_test_id("example-select").select_option(str(worn))
    page.get_by_test_id("explain-button").click()
    for method in ("shap", "lime", "anchor"):
        card = page.get_by_test_id(f"explain-{method}")
        expect(card).to_have_attribute("data-state", "done", timeout=EXPLAIN_SECONDS * 1000)
    with httpx.Client(base_url=api.url, timeout=EXPLAIN_SECONDS) as client:
        shap = client.post("/explain", json={"row": examples[worn]["row"], "method": "shap"})
        lime_answer = client.post("/explain", json={"row": examples[worn]["row"], "method": "lime"})
    assert shap.status_code == 200, shap.text
    assert lime_answer.status_code == 200, lime_answer.text
    expected = shap.json()
    shap_card = page.get_by_test_id("explain-shap")
    summary = shap_card.locator("[data-role=summary]").inner_text()
    assert f"P(worn) {fmt(expected['probability_worn'])} → {expected['label']}" in summary
    drawn = dashboard.chart("shap-chart")["datasets"][0]["data"]
    assert drawn == [c["contribution"] for c in expected["contributions"][:12]]
    lime = dashboard.chart("lime-chart")
    assert lime["labels"] and len(lime["labels"]) == len(lime["datasets"][0]["data"])
    derived = [c for c in expected["contributions"][:12] if len(c["terms"]) > 1]
    raw = shap_card.locator("[data-role=raw] li")
    expect(raw).to_have_count(len(derived))
    for item, contribution in zip(raw.all(), derived, strict=True):
        assert item.get_attribute("data-feature") == contribution["feature"]
        assert all(t["column"] in item.inner_text() for t in contribution["terms"])
    lime_card = page.get_by_test_id("explain-lime")
    lime_summary = lime_card.locator("[data-role=summary]").inner_text()
    assert f'explains "{expected["label"]}"' in lime_summary
    assert f"R² {fmt(lime_answer.json()['score'])}" in lime_summary  # LIME is repeatable
    low_fidelity = lime_card.locator("[data-flag=low_fidelity]")
    expect(low_fidelity).to_have_count(1 if lime_answer.json()["low_fidelity"] else 0)
    rule = page.get_by_test_id("explain-anchor").locator("[data-role=rule]").inner_text()
    assert rule.startswith("IF") and rule.endswith(f"THEN {expected['label']}")
    anchor_card = page.get_by_test_id("explain-anchor")
    anchor_summary = anchor_card.locator("[data-role=summary]").inner_text()
    assert "precision" in anchor_summary and "threshold" in anchor_summary
    partial = "partial: stopped by" in anchor_summary
    expect(anchor_card.locator("[data-flag=partial]")).to_have_count(1 if partial else 0)
    below = "< threshold" in anchor_summary
    expect(anchor_card.locator("[data-flag=below_threshold]")).to_have_count(1 if below else 0)
    dashboard.screenshot("explain")
    dashboard.assert_clean()
