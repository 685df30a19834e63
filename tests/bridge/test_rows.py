"""The bridge scores JSON rows from the broker through the API and publishes verdicts: one per
machine's batch, equal to what ``/predict`` answers for the same rows; job boundaries and a label
message make a labelled run in the API; bad messages land on the rejected topic with their reason,
and the bridge goes on."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from cncwear.data.dataset import Dataset
from tests.api.labelled_runs import records, run_label, run_rows
from tests.bridge.conftest import TOKEN, Api, BridgeProcess, Mqtt, machine_id
from tests.deploy.conftest import wait_until

ROWS = 20


@pytest.fixture(scope="module")
def unworn_rows(dataset: Dataset) -> list[dict[str, object]]:
    return records(run_rows(dataset, 1).iloc[100 : 100 + ROWS])


@pytest.fixture(scope="module")
def worn_rows(dataset: Dataset) -> list[dict[str, object]]:
    return records(run_rows(dataset, 6).iloc[100 : 100 + ROWS])


def test_rows_of_two_machines_give_one_verdict_each_equal_to_predicts(
    bridge: Callable[..., BridgeProcess],
    mqtt_client: Callable[..., Mqtt],
    api: Api,
    unworn_rows: list[dict[str, object]],
    worn_rows: list[dict[str, object]],
) -> None:
    bridge(bridge_batch_rows=str(ROWS), bridge_batch_ms="60000")
    first, second = machine_id(), machine_id()
    listener = mqtt_client(f"cncwear/{first}/verdict", f"cncwear/{second}/verdict")
    publisher = mqtt_client()
    for index, (a, b) in enumerate(zip(unworn_rows, worn_rows, strict=True)):
        publisher.publish(f"cncwear/{first}/rows", {**a, "timestamp": f"t{index}"})
        publisher.publish(f"cncwear/{second}/rows", [b])  # a list of one row
    verdicts = {
        machine: listener.wait_for(f"cncwear/{machine}/verdict")[0] for machine in (first, second)
    }
    with api.client() as client:
        for machine, rows in ((first, unworn_rows), (second, worn_rows)):
            expected = client.post("/predict", json={"rows": rows}).json()
            verdict = verdicts[machine]
            assert verdict["label"] == expected["verdict"]["label"]
            assert verdict["mean_probability_worn"] == expected["verdict"]["mean_probability_worn"]
            assert verdict["rows"] == ROWS
            assert verdict["model_version"] == expected["model"]["version"]
            assert verdict["machine"] == machine
    assert verdicts[first]["last_row_time"] == f"t{ROWS - 1}"
    assert {v["label"] for v in verdicts.values()} == {"unworn", "worn"}
    assert len(listener.messages(f"cncwear/{first}/verdict")) == 1


def test_verdicts_are_retained_for_a_subscriber_that_comes_later(
    bridge: Callable[..., BridgeProcess],
    mqtt_client: Callable[..., Mqtt],
    unworn_rows: list[dict[str, object]],
) -> None:
    bridge(bridge_batch_rows="5", bridge_batch_ms="60000")
    machine = machine_id()
    publisher = mqtt_client(f"cncwear/{machine}/verdict")
    publisher.publish(f"cncwear/{machine}/rows", unworn_rows[:5])
    publisher.wait_for(f"cncwear/{machine}/verdict")
    late = mqtt_client(f"cncwear/{machine}/verdict")
    (verdict,) = late.wait_for(f"cncwear/{machine}/verdict")
    assert verdict["rows"] == 5


def test_a_job_start_rows_a_job_end_and_a_label_make_a_labelled_run(
    bridge: Callable[..., BridgeProcess],
    mqtt_client: Callable[..., Mqtt],
    api: Api,
    dataset: Dataset,
) -> None:
    bridge(bridge_batch_rows="50", bridge_batch_ms="200", bridge_per_row="true")
    machine = machine_id()
    run = f"{machine}/job-1842"
    rows = records(run_rows(dataset, 1).iloc[:120])
    client = mqtt_client(f"cncwear/{machine}/predictions", f"cncwear/{machine}/rejected")
    client.publish(f"cncwear/{machine}/job", {"event": "start", "job": run})
    for start in range(0, len(rows), 10):
        client.publish(f"cncwear/{machine}/rows", rows[start : start + 10])
    client.publish(f"cncwear/{machine}/job", {"event": "end"})
    client.publish(f"cncwear/{machine}/rows", rows[:3])  # after the end: in no run
    label = run_label(dataset, 1)
    client.publish(f"cncwear/{machine}/label", {"run": run, **label, "token": "wrong"})
    client.publish(f"cncwear/{machine}/label", {"run": run, **label, "token": TOKEN})
    (refused,) = client.wait_for(f"cncwear/{machine}/rejected")
    assert refused["reason"] == "refused"
    assert "401" in refused["detail"]
    with api.client() as http:

        def labelled() -> bool:
            return http.get(f"/runs/{run}").json().get("label") is not None

        wait_until(labelled, "the run to be labelled", 120)
        stored = http.get(f"/runs/{run}").json()
    assert stored["rows"] == len(rows)
    assert stored["label"]["tool_condition"] == label["tool_condition"]
    assert stored["state"] != "collecting"
    predicted = client.wait_for(f"cncwear/{machine}/predictions", 4)
    assert [p["run"] for p in predicted] == [run, run, run, None]
    assert sum(len(p["predictions"]) for p in predicted) == len(rows) + 3


BAD_MESSAGES: list[tuple[bytes | object, str]] = [
    (b"{not json", "not_json"),
    ("just text", "bad_shape"),
    ({"rows": [], "job": "x"}, "bad_shape"),
    ({"X1_ActualPosition": "far"}, "invalid_rows"),
]


def test_bad_messages_land_on_the_rejected_topic_with_their_reason_and_the_bridge_goes_on(
    bridge: Callable[..., BridgeProcess],
    mqtt_client: Callable[..., Mqtt],
    unworn_rows: list[dict[str, object]],
) -> None:
    process = bridge(bridge_batch_rows="4", bridge_batch_ms="300")
    machine = machine_id()
    client = mqtt_client(f"cncwear/{machine}/rejected", f"cncwear/{machine}/verdict")
    good = unworn_rows[:3]
    bad_row = {**unworn_rows[3], "X1_ActualPosition": "far"}
    # One batch of three good messages and one bad one: the bad one is refused, the rest scored.
    for row in good:
        client.publish(f"cncwear/{machine}/rows", row)
    client.publish(f"cncwear/{machine}/rows", bad_row)
    for body, _ in BAD_MESSAGES:
        client.publish(f"cncwear/{machine}/rows", body)
    client.publish(f"cncwear/{machine}/job", {"event": "start", "job": "../etc"})
    client.publish(f"cncwear/{machine}/label", {"tool_condition": "worn"})
    rejected = client.wait_for(f"cncwear/{machine}/rejected", len(BAD_MESSAGES) + 3)
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons == sorted(
        ["invalid_rows", *(r for _, r in BAD_MESSAGES), "bad_job", "bad_label"]
    )
    by_payload = {r["payload"]: r for r in rejected}
    (problem,) = by_payload[json.dumps(bad_row)]["problems"]
    assert (problem["row"], problem["column"]) == (0, "X1_ActualPosition")
    assert by_payload["{not json"]["reason"] == "not_json"
    (verdict,) = client.wait_for(f"cncwear/{machine}/verdict")
    assert verdict["rows"] == len(good)
    # The bridge goes on: a good message after the bad ones is scored.
    client.publish(f"cncwear/{machine}/rows", unworn_rows[:4])
    verdicts = client.wait_for(f"cncwear/{machine}/verdict", 2)
    assert verdicts[-1]["rows"] == 4
    assert process.process.running()
    assert process.metric("cncwear_bridge_rejected_messages_total", 'reason="invalid_rows"') == 2
    assert process.metric("cncwear_bridge_rejected_messages_total", 'reason="not_json"') == 1
