"""The champion-versus-challenger view, in headless Chromium against real servers: with a challenger
in shadow and labelled runs both models scored, it shows the two versions, their live accuracy,
the runs, the p-value and what the next decision needs, as ``GET /model/challenger`` says; under
the offline policy it says in one line that nothing is in shadow, without asking for it. Each test
also fails on any console error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from cncwear.data.dataset import Dataset
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Decider, ShadowState, Tag
from cncwear_api.core.settings import ApiSettings
from tests.api.conftest import Registry, RunningServer, wait_until
from tests.api.shadow_servers import discordant_experiments, label_runs, shadow_server

from .conftest import PHONE, Dashboard

ApiJson = Callable[[str], Any]

LABELLED = 2
"""Labelled runs in shadow: too few for the 10 the decision asks for, so it waits and says why."""


def fmt(value: float | None, digits: int = 3) -> str:
    """How the page writes a number."""
    return "\u2013" if value is None else f"{value:.{digits}f}"


@pytest.fixture(scope="module")
def in_shadow(
    registry: Registry, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server under the shadow policy, the forest copy in shadow beside the baseline copy, with
    two runs labelled: one both get right, one only the challenger does. The periodic decision is
    an hour away, so the evidence stays that of the last label while the page reads it."""
    both, wins = discordant_experiments(registry, dataset)
    with shadow_server(
        registry,
        tmp_path_factory.mktemp("shadow-dashboard"),
        shadow_min_runs=10,
        shadow_check_interval_seconds=3600.0,
    ) as (running, _, _, _):
        label_runs(running, dataset, [both, wins])
        with running.client() as client:
            wait_until(
                lambda: (
                    (client.get("/model/challenger").json().get("evidence") or {}).get("runs")
                    == LABELLED
                ),
                "the decision on the labelled runs",
            )
        yield running


def challenger_json(server: RunningServer) -> dict[str, Any]:
    return server.get_json("/model/challenger")


def test_the_panel_shows_both_versions_the_p_value_and_what_the_next_decision_needs(
    open_server_dashboard: Any, in_shadow: RunningServer
) -> None:
    dashboard: Dashboard = open_server_dashboard(in_shadow)
    body = challenger_json(in_shadow)
    evidence = body["evidence"]
    page = dashboard.page
    expect(page.get_by_test_id("shadow-summary")).to_have_attribute("data-state", "shadow")
    assert dashboard.text("shadow-challenger-version") == body["version"]
    assert dashboard.text("shadow-champion-version") == body["champion_version"]
    assert f"v{body['version']} in shadow against champion v{body['champion_version']}" in (
        dashboard.text("shadow-summary")
    )
    assert dashboard.text("shadow-state") == body["state"]
    assert dashboard.text("shadow-p-value") == fmt(evidence["p_value"])
    assert dashboard.text("shadow-outcome") == evidence["outcome"] == "inconclusive"
    assert dashboard.text("shadow-champion-accuracy") == fmt(evidence["champion_accuracy"])
    assert dashboard.text("shadow-challenger-accuracy") == fmt(evidence["challenger_accuracy"])
    assert dashboard.text("shadow-agreement") == fmt(evidence["agreement"])
    by_label = ", ".join(f"{count} {label}" for label, count in evidence["runs_by_label"].items())
    assert dashboard.text("shadow-runs") == f"{evidence['runs']} ({by_label})"
    assert dashboard.text("shadow-challenger-wins") == str(evidence["challenger_wins"])
    assert dashboard.text("shadow-champion-wins") == str(evidence["champion_wins"])
    needs = page.get_by_test_id("shadow-need").all_inner_texts()
    assert needs == evidence["needs"]
    assert any("more labelled run(s) (at least 10)" in need for need in needs)
    dashboard.screenshot("shadow")
    dashboard.assert_clean()


def test_the_panel_fits_a_phone_screen(
    open_server_dashboard: Any, in_shadow: RunningServer
) -> None:
    dashboard: Dashboard = open_server_dashboard(in_shadow, PHONE)
    section = dashboard.page.locator("#shadow")
    section.scroll_into_view_if_needed()
    box = section.bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    assert dashboard.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert dashboard.text("shadow-challenger-version") == challenger_json(in_shadow)["version"]
    dashboard.screenshot("shadow")
    dashboard.assert_clean()


def test_without_a_challenger_the_panel_says_so_in_one_line_naming_the_policy(
    open_dashboard: Any, api_json: ApiJson
) -> None:
    dashboard: Dashboard = open_dashboard()
    policy = api_json("/model")["promotion_policy"]
    line = dashboard.page.get_by_test_id("shadow-summary")
    expect(line).to_have_text(f"No challenger in shadow (promotion policy: {policy}).")
    expect(dashboard.page.get_by_test_id("shadow-evidence")).to_be_hidden()
    expect(dashboard.page.locator("#shadow [data-role=challenger]")).to_be_hidden()
    assert not any("/model/challenger" in url for url in dashboard.requests)  # offline: not asked
    dashboard.assert_clean()


def test_under_shadow_with_nothing_in_shadow_the_404_reads_as_one_line(
    open_server_dashboard: Any, registry: Registry, tmp_path: Path
) -> None:
    with shadow_server(registry, tmp_path, with_challenger=False) as (running, _, _, _):
        with running.client() as client:
            assert client.get("/model/challenger").status_code == 404
            policy = client.get("/model").json()["promotion_policy"]
        dashboard: Dashboard = open_server_dashboard(running)
        line = dashboard.page.get_by_test_id("shadow-summary")
        expect(line).to_have_text(f"No challenger in shadow (promotion policy: {policy}).")
        expect(dashboard.page.get_by_test_id("shadow-evidence")).to_be_hidden()
        expect(dashboard.page.get_by_test_id("shadow-summary")).to_have_attribute(
            "data-state", "none"
        )
    # The browser reports the API's 404 as a failed load; nothing else may be in the console.
    assert dashboard.console_errors, "the page did not ask for the challenger"
    errors = dashboard.console_errors
    assert all("404" in error and "/model/challenger" in error for error in errors), errors


def test_the_shadow_decisions_the_retrains_record_are_listed(
    open_dashboard: Any, api_json: ApiJson, dashboard_settings: ApiSettings
) -> None:
    """A decision as the registry records it on the retrain run that registered the version (the
    tags are removed again: the run is the other dashboard tests' too)."""
    run_id = api_json("/model/retrains?limit=1")[0]["run_id"]
    store = ModelStore(dashboard_settings)
    tags: dict[str, str] = {
        Tag.SHADOW_STATE: ShadowState.REJECTED,
        Tag.SHADOW_REASON: "the challenger loses with p < 0.05 (a dashboard test)",
        Tag.SHADOW_DECIDED_BY: Decider.AUTOMATIC,
    }
    store.tag_run(run_id, tags)
    try:
        retrain = next(r for r in api_json("/model/retrains?limit=10") if r["run_id"] == run_id)
        dashboard: Dashboard = open_dashboard()
        row = dashboard.page.locator(
            f'[data-testid=shadow-decision][data-version="{retrain["registered_version"]}"]'
        )
        expect(row).to_have_count(1)
        cells = row.locator("td").all_inner_texts()
    finally:
        for key in tags:
            store.client.delete_tag(run_id, key)
    assert cells[1] == f"v{retrain['registered_version']} ({retrain['winner']})"
    assert cells[2:] == [
        retrain["shadow_state"],
        retrain["shadow_decided_by"],
        retrain["shadow_reason"],
    ]
    dashboard.assert_clean()
