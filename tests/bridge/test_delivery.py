"""Delivery: at least once, through a broker killed mid-stream and an API gone for a while.

Every message carries a unique ``timestamp``; the bridge publishes each scored row's result with
that timestamp on the predictions topic (``CNCWEAR_BRIDGE_PER_ROW``), where a persistent
subscriber of the test counts them. "Scored" means the API answered for the row; a message scored
twice (delivered again after a reconnect) is counted twice, and none may be missing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from cncwear.data.dataset import Dataset
from tests.api.labelled_runs import records, run_rows
from tests.bridge.conftest import Api, BridgeProcess, Broker, Mqtt, machine_id
from tests.deploy.conftest import wait_until

QUIET_SECONDS = 2.0
"""The broker saves its database after every change (``autosave_on_changes``, interval 1); this
pause before the kill lets it save what it acknowledged. A message acknowledged in the last
instants before a SIGKILL may be lost by the broker itself, whatever the bridge does: the test
counts only what the broker acknowledged at least this long before the kill."""


@pytest.fixture(scope="module")
def rows(dataset: Dataset) -> list[dict[str, object]]:
    return records(run_rows(dataset, 1).iloc[:50])


def scored(listener: Mqtt, machine: str) -> Counter[str]:
    """How often each message (by its timestamp) was scored."""
    return Counter(
        p["timestamp"]
        for body in listener.messages(f"cncwear/{machine}/predictions")
        for p in body["predictions"]
    )


def test_a_broker_killed_and_restarted_mid_stream_loses_no_acknowledged_message(
    bridge: Callable[..., BridgeProcess],
    mqtt_client: Callable[..., Mqtt],
    broker: Broker,
    api: Api,
    rows: list[dict[str, object]],
) -> None:
    process = bridge(
        bridge_batch_rows="5", bridge_batch_ms="50", bridge_per_row="true",
        bridge_max_pending="20", bridge_api_timeout_seconds="2", bridge_retry_max_seconds="1",
        mqtt_keepalive_seconds="5",
    )  # fmt: skip
    machine = machine_id()
    topic = f"cncwear/{machine}/rows"
    listener = mqtt_client(f"cncwear/{machine}/predictions", persistent=True)
    publisher = mqtt_client()
    sent: list[str] = []

    def publish(count: int) -> None:
        for _ in range(count):
            stamp = f"m{len(sent)}"
            publisher.publish(topic, {**rows[len(sent) % len(rows)], "timestamp": stamp})
            sent.append(stamp)

    publish(100)
    wait_until(lambda: len(scored(listener, machine)) >= 50, "the stream to flow", 120)
    # The API stops answering (SIGSTOP): the bridge holds what it took, unacknowledged, and the
    # broker queues the rest. Then the broker is SIGKILLed with both in hand.
    assert api.process is not None
    os.killpg(api.process.popen.pid, signal.SIGSTOP)
    try:
        publish(400)
        time.sleep(QUIET_SECONDS)
        before_kill = list(sent)
        in_hand = process.metric("cncwear_bridge_pending_messages")
        unscored = set(before_kill) - set(scored(listener, machine))
        broker.kill()
    finally:
        os.killpg(api.process.popen.pid, signal.SIGCONT)
    assert in_hand > 0, "the bridge held no unacknowledged message at the kill"
    assert len(unscored) > in_hand, "the broker held no backlog at the kill"
    broker.start()
    publisher.wait_connected()
    publish(100)  # the stream goes on after the restart

    def all_scored() -> bool:
        return set(sent) <= set(scored(listener, machine))

    wait_until(all_scored, "every acknowledged message to be scored", 180)
    counts = scored(listener, machine)
    assert all(counts[stamp] >= 1 for stamp in before_kill)
    duplicates = sum(n - 1 for n in counts.values())
    print(
        f"\nbroker kill: {len(before_kill)} acknowledged before the kill ({len(unscored)} not yet"
        f" scored, {in_hand:.0f} in the bridge's hands); {len(sent)} in all, every one scored;"
        f" {duplicates} scored twice"
    )
    assert process.metric("cncwear_bridge_reconnects_total") >= 1
    assert process.process.running()


def test_the_api_stopped_for_10_s_under_a_steady_stream_loses_nothing_within_the_pending_bound(
    bridge: Callable[..., BridgeProcess],
    mqtt_client: Callable[..., Mqtt],
    api: Api,
    rows: list[dict[str, object]],
) -> None:
    bound = 40
    process = bridge(
        bridge_batch_rows="10", bridge_batch_ms="100", bridge_per_row="true",
        bridge_max_pending=str(bound), bridge_retry_max_seconds="1",
    )  # fmt: skip
    machine = machine_id()
    topic = f"cncwear/{machine}/rows"
    listener = mqtt_client(f"cncwear/{machine}/predictions")
    publisher = mqtt_client()
    sent: list[str] = []
    streaming = threading.Event()
    streaming.set()

    def stream() -> None:  # 100 rows a second: ten machines' worth of one row every 100 ms
        while streaming.is_set():
            stamp = f"s{len(sent)}"
            publisher.publish(topic, {**rows[len(sent) % len(rows)], "timestamp": stamp})
            sent.append(stamp)
            time.sleep(0.01)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    pending: list[float] = []
    try:
        wait_until(lambda: len(scored(listener, machine)) >= 100, "the stream to flow", 120)
        api.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10:
            pending.append(process.metric("cncwear_bridge_pending_messages"))
            time.sleep(0.2)
        backlog_at_restart = len(sent) - len(scored(listener, machine))
        api.start()
        time.sleep(2)
    finally:
        streaming.clear()
        streamer.join(timeout=60)

    wait_until(lambda: set(sent) <= set(scored(listener, machine)), "the backlog to drain", 180)
    assert max(pending) <= bound
    assert max(pending) == bound, "backpressure never engaged"
    assert backlog_at_restart > bound, "the broker held no backlog"
    assert process.metric("cncwear_bridge_api_retries_total") > 0
    print(
        f"\nAPI stop: {len(sent)} messages, the broker held {backlog_at_restart - bound}, the"
        f" bridge at most {max(pending):.0f} (bound {bound}); every one scored"
    )
