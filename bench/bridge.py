"""The MQTT bridge at a stated rate: 10 machines publishing rows, then faster, till latency grows.

Starts, on loopback, a private ``mosquitto`` (persistence off: this measures throughput, not
durability), a real API (the ``cncwear-api`` console script) on a fresh store whose champion is a
random forest trained here, and the ``cncwear-bridge`` console script (per-row results on, so every
row's latency is seen). Each step publishes, open loop with QoS 1, one real row per message from
``--machines`` machines at ``--rates`` rows a second each (10: the data's own 100 ms sampling),
for ``--seconds``.

Printed per step: rows published and scored, end-to-end latency from publish to the row's result
on ``cncwear/{machine}/predictions`` (p50, p99), the bridge's pending count at the start and end of
the step's second half (sustained: it does not grow and every row is scored within the step plus
a grace), and the bridge's CPU seconds per 1,000 rows (from /proc). Then the highest sustained
rate.

Usage: uv run python bench/bridge.py [--seconds 20] [--machines 10] [--rates 10 20 40 80]
       [--batch-rows 10] [--batch-ms 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as mqtt
from loadgen import free_port, ready
from paho.mqtt.enums import CallbackAPIVersion

from cncwear.core.choices import Budget
from cncwear.core.schema import input_columns
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings
from cncwear.data.dataset import load_dataset
from cncwear.training.retrain import retrain

BIN = Path(sys.executable).parent
TOKEN = "bench-bridge-token"
GRACE_SECONDS = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each step")
    parser.add_argument("--machines", type=int, default=10)
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 20, 40, 80],
                        help="rows a second per machine, one step each")  # fmt: skip
    parser.add_argument("--batch-rows", type=int, default=10)
    parser.add_argument("--batch-ms", type=int, default=200)
    parser.add_argument("--max-pending", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cncwear-bench-bridge-"))
    settings = Settings(home=folder / "home", n_jobs=2)
    print("training a champion (random forest, fast budget)...", flush=True)
    retrain(settings, budget=Budget.FAST, candidates=["random_forest"], reason="bridge bench")
    rows = real_rows()
    with stack(folder, settings, args) as (broker_port, bridge_pid, metrics_url):
        results = [
            step(
                broker_port,
                bridge_pid,
                metrics_url,
                rows,
                machines=args.machines,
                rate=rate,
                seconds=args.seconds,
            )
            for rate in args.rates
        ]
    report(args, results)


def real_rows() -> list[dict[str, Any]]:
    frame = load_dataset(BUNDLED_DATA_DIR).rows.sample(n=500, random_state=3)
    records: list[dict[str, Any]] = (
        frame[input_columns(use_identifying_columns=False)].astype(object).to_dict("records")
    )  # type: ignore[assignment]
    return records


@contextmanager
def stack(
    folder: Path, settings: Settings, args: argparse.Namespace
) -> Iterator[tuple[int, int, str]]:
    mosquitto = shutil.which("mosquitto")
    if mosquitto is None:
        sys.exit("needs mosquitto (Debian's package)")
    broker_port, api_port, metrics_port = free_port(), free_port(), free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {broker_port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))}
    api_env = {**env, "CNCWEAR_HOME": str(settings.home), "CNCWEAR_PORT": str(api_port),
               "CNCWEAR_API_TOKEN": TOKEN, "CNCWEAR_POLL_INTERVAL_SECONDS": "3600"}  # fmt: skip
    bridge_env = {
        **env,
        "CNCWEAR_HOME": str(settings.home),
        "CNCWEAR_MQTT_URL": f"mqtt://127.0.0.1:{broker_port}",
        "CNCWEAR_BRIDGE_API_URL": f"http://127.0.0.1:{api_port}",
        "CNCWEAR_API_TOKEN": TOKEN,
        "CNCWEAR_BRIDGE_PER_ROW": "true",
        "CNCWEAR_BRIDGE_BATCH_ROWS": str(args.batch_rows),
        "CNCWEAR_BRIDGE_BATCH_MS": str(args.batch_ms),
        "CNCWEAR_BRIDGE_MAX_PENDING": str(args.max_pending),
        "CNCWEAR_BRIDGE_METRICS_PORT": str(metrics_port),
        "CNCWEAR_MQTT_CLIENT_ID": "bench-bridge",
    }
    log = (folder / "stack.log").open("wb")
    processes = [
        subprocess.Popen([mosquitto, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT),
        subprocess.Popen([str(BIN / "cncwear-api")], env=api_env, stdout=log,
                         stderr=subprocess.STDOUT),
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ready(f"http://127.0.0.1:{api_port}"):
            if time.monotonic() > deadline or processes[1].poll() is not None:
                sys.exit(f"the API did not start: see {folder / 'stack.log'}")
            time.sleep(0.5)
        bridge = subprocess.Popen([str(BIN / "cncwear-bridge")], env=bridge_env, stdout=log,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        processes.append(bridge)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        while metric(metrics_url, "cncwear_bridge_connected") != 1:
            if bridge.poll() is not None:
                sys.exit(f"the bridge stopped: see {folder / 'stack.log'}")
            time.sleep(0.2)
        yield broker_port, bridge.pid, metrics_url
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=60)


def metric(url: str, name: str) -> float:
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return -1.0
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def step(
    broker_port: int, bridge_pid: int, metrics_url: str, rows: list[dict[str, Any]], *,
    machines: int, rate: float, seconds: float,
) -> dict[str, Any]:  # fmt: skip
    tag = f"r{rate:g}"
    names = [f"bench-{tag}-{m}" for m in range(machines)]
    latencies: list[float] = []
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        body = json.loads(message.payload)
        with lock:
            latencies.extend(now - float(p["timestamp"]) for p in body["predictions"])

    listener = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    listener.on_message = on_message
    listener.connect("127.0.0.1", broker_port)
    listener.loop_start()
    listener.subscribe([(f"cncwear/{name}/predictions", 1) for name in names])
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", broker_port)
    publisher.loop_start()
    time.sleep(1.0)

    cpu_before, pending = cpu_seconds(bridge_pid), []
    interval, start, sent = 1.0 / (rate * machines), time.monotonic(), 0
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) / interval)
        while sent < due:
            name = names[sent % machines]
            row = {**rows[sent % len(rows)], "timestamp": repr(time.time())}
            publisher.publish(f"cncwear/{name}/rows", json.dumps(row), qos=1)
            sent += 1
        if len(pending) < (now - start) / 0.5:
            pending.append(metric(metrics_url, "cncwear_bridge_pending_messages"))
        time.sleep(min(interval, 0.005))
    grace = time.monotonic() + GRACE_SECONDS
    while len(latencies) < sent and time.monotonic() < grace:
        time.sleep(0.1)
    cpu = cpu_seconds(bridge_pid) - cpu_before
    publisher.loop_stop()
    listener.loop_stop()
    publisher.disconnect()
    listener.disconnect()
    with lock:
        seen = np.array(latencies)
    half = pending[len(pending) // 2 :]
    growing = len(half) > 1 and half[-1] > max(half[0], 50)
    return {
        "rate_per_machine": rate,
        "rows_per_second": rate * machines,
        "published": sent,
        "scored": len(seen),
        "p50_ms": float(np.percentile(seen, 50) * 1000) if len(seen) else None,
        "p99_ms": float(np.percentile(seen, 99) * 1000) if len(seen) else None,
        "pending_second_half": [half[0], half[-1]] if half else None,
        "sustained": len(seen) >= sent and not growing,
        "cpu_seconds_per_1000_rows": cpu / max(len(seen), 1) * 1000,
    }


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(
        f"\n{args.machines} machines, {args.seconds:g} s a step, batches of up to"
        f" {args.batch_rows} rows or {args.batch_ms} ms"
    )
    print(
        "rows/s  published  scored  p50 ms  p99 ms  pending (2nd half)  CPU s/1000 rows  sustained"
    )
    for r in results:
        pend = r["pending_second_half"]
        print(
            f"{r['rows_per_second']:6.0f}  {r['published']:9d}  {r['scored']:6d}  "
            f"{r['p50_ms'] or float('nan'):6.0f}  {r['p99_ms'] or float('nan'):6.0f}  "
            f"{pend[0]:6.0f} -> {pend[1]:6.0f}    {r['cpu_seconds_per_1000_rows']:15.2f}"
            f"  {'yes' if r['sustained'] else 'no'}"
        )
    sustained = [r["rows_per_second"] for r in results if r["sustained"]]
    print(f"highest sustained rate: {max(sustained) if sustained else 'none'} rows/s")


if __name__ == "__main__":
    main()
