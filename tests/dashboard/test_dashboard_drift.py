"""The dashboard's drift view in headless Chromium: after real traffic, each monitored feature's
drift statistics from ``/drift`` are on the page, drawn over time, and the live traffic is overlaid
on the training distribution."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.conftest import RunningServer

from .conftest import Dashboard
from .test_dashboard import fmt

Open = Callable[..., Dashboard]
ApiJson = Callable[[str], Any]


def test_drift_view_shows_each_feature_s_drift_over_time_after_real_traffic(
    open_dashboard: Open, api_json: ApiJson, api: RunningServer
) -> None:
    rows = [e["row"] for e in api_json("/model/examples?per_experiment=50")["examples"]]
    with httpx.Client(base_url=api.url, timeout=120.0) as client:
        for _ in range(20):  # the window's minimum is a few hundred rows
            if client.get("/drift").json()["enough_rows"]:
                break
            assert client.post("/predict", json={"rows": rows}).status_code == 200
    drift = api_json("/drift")  # no traffic from here on: the page reads the same window
    assert drift["features"], drift
    dashboard = open_dashboard()
    table = dashboard.page.locator("[data-testid=drift-table] tbody tr")
    assert table.count() == len(drift["features"])
    for index, feature in enumerate(drift["features"]):
        row = table.nth(index)
        assert row.get_attribute("data-feature") == feature["name"]
        assert row.locator("td[data-metric=psi]").inner_text() == fmt(feature["psi"])
        assert row.locator("td[data-metric=statistic]").inner_text() == fmt(feature["statistic"])
        assert (
            row.locator("td[data-metric=drifted]")
            .inner_text()
            .startswith("yes" if feature["drifted"] else "no")
        )
        band = row.locator("td[data-metric=band]").inner_text()
        assert feature["calibrated"], "a model trained now is judged on its normal band"
        assert band == (
            f"{fmt(feature['band']['0.5'])}\u2013{fmt(feature['band']['1.0'])} · "
            f"{fmt(feature['threshold'])}"
        )
    summary = dashboard.text("drift-summary")
    assert f"{len(drift['drifted_features'])} of {len(drift['features'])} features drifted" in (
        summary
    )
    assert f"window {drift['window_rows']} of {drift['window_capacity']} rows" in summary
    over_time = dashboard.chart("drift-chart")
    names = [f["name"] for f in drift["features"]]
    assert [d["label"] for d in over_time["datasets"]] == [*names, "edge of the normal band"]
    levels = [d["data"][-1] for d in over_time["datasets"]]
    assert levels[:-1] == pytest.approx(
        [f["statistic"] / f["threshold"] for f in drift["features"]]
    )
    assert levels[-1] == 1  # each feature is drawn as a share of its band's edge
    monitored = drift["features"][0]
    dashboard.page.get_by_test_id("feature-select").select_option(monitored["name"])
    caption = dashboard.text("distribution-caption")
    assert f"live mean {fmt(monitored['current_mean'])}" in caption
    labels = [d["label"] for d in dashboard.chart("distribution-chart")["datasets"]]
    assert labels[:2] == ["training", "training mean"] and "live mean" in labels
    dashboard.screenshot("drift")
    dashboard.screenshot("distributions")
    dashboard.assert_clean()
