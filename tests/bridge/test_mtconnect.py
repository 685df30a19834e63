"""MTConnect-style observations (one data item a message, each with its timestamp, as the reference
agent's MQTT entity sink publishes them), mapped by the example mapping file of ``deploy/`` and
assembled into rows by timestamp, give the same verdict as the equivalent rows."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from cncwear.data.dataset import Dataset
from tests.api.labelled_runs import records, run_rows
from tests.bridge.conftest import Api, BridgeProcess, Mqtt, machine_id

MAPPING = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "mtconnect-mapping.yml"
ROWS = 6


def test_observations_with_a_mapping_file_give_the_verdict_of_the_equivalent_rows(
    bridge: Callable[..., BridgeProcess],
    mqtt_client: Callable[..., Mqtt],
    api: Api,
    dataset: Dataset,
    tmp_path: Path,
) -> None:
    machine, device = machine_id(), "OKUMA.TEST"
    mapping = yaml.safe_load(MAPPING.read_text())
    mapping["devices"] = {device: machine}
    path = tmp_path / "mapping.yml"
    path.write_text(yaml.safe_dump(mapping))
    items = {column: item for item, column in mapping["items"].items()}
    bridge(
        mqtt_topics='["MTConnect/Devices/+/Observations/+"]', mqtt_mapping=str(path),
        bridge_batch_rows=str(ROWS), bridge_batch_ms="60000",
    )  # fmt: skip
    client = mqtt_client(f"cncwear/{machine}/verdict", f"cncwear/{machine}/rejected")
    rows = records(run_rows(dataset, 6).iloc[200 : 200 + ROWS])
    start, jitter = datetime(2026, 12, 2, 5, 0, tzinfo=UTC), random.Random(3)
    for index, row in enumerate(rows):
        sampled = start + timedelta(milliseconds=100 * index)  # the data's 100 ms sampling
        observations = list(row.items())
        jitter.shuffle(observations)  # the agent sends the items of one sample in any order
        for column, value in observations:
            stamp = sampled + timedelta(milliseconds=jitter.uniform(0, 5))
            body = {"dataItemId": items[column], "timestamp": stamp.isoformat(),
                    "result": str(value), "sequence": index}  # fmt: skip
            client.publish(f"MTConnect/Devices/{device}/Observations/{items[column]}", body)
    ignored = {"dataItemId": "avail", "timestamp": start.isoformat(), "result": "AVAILABLE"}
    client.publish(f"MTConnect/Devices/{device}/Observations/avail", ignored)
    unknown = {"dataItemId": "Zload", "timestamp": start.isoformat(), "result": "1.0"}
    client.publish(f"MTConnect/Devices/{device}/Observations/Zload", unknown)
    (verdict,) = client.wait_for(f"cncwear/{machine}/verdict")
    with api.client() as http:
        expected = http.post("/predict", json={"rows": rows}).json()["verdict"]
    assert verdict["rows"] == ROWS
    assert verdict["label"] == expected["label"]
    assert verdict["mean_probability_worn"] == expected["mean_probability_worn"]
    (rejected,) = client.wait_for(f"cncwear/{machine}/rejected")
    assert rejected["reason"] == "unknown_data_item"
    assert "Zload" in rejected["detail"]
