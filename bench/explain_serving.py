"""Does /predict latency suffer while explanations run? The same API process, measured twice.

    CNCWEAR_HOME=var uv run python bench/explain_serving.py [--requests 400] [--explainers 2]

Starts ``cncwear-api`` on the champion of ``CNCWEAR_HOME`` (``cncwear train`` first), then sends
single-row ``/predict`` requests one after another, first alone (the baseline), then while
``--explainers`` clients keep asking for anchor and LIME explanations (the heaviest methods) without
pause. With ``CNCWEAR_EXPLAIN_CONCURRENCY=1`` (the default) one explanation runs at a time, the
others wait or get 503. Prints p50/p95/p99 of /predict in both phases and their ratio, and what the
explainers got (answers, 503s, median seconds). The machine is shared: its load average is printed,
and the ratio (same run, same machine) is the figure to read.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from cncwear.core.schema import input_columns
from cncwear.core.settings import get_settings
from cncwear.data.dataset import load_dataset

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CNCWEAR_PORT": str(port), "CNCWEAR_LOG_LEVEL": "WARNING"}
    return subprocess.Popen([str(BIN / "cncwear-api")], env=env)


def wait_ready(client: httpx.Client, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the API exited; is there a champion? (cncwear train)")
        try:
            response = client.get("/ready")
            if response.status_code == 200:
                return str(response.json()["model"]["version"])
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the API did not become ready")


def real_rows(count: int) -> list[dict[str, Any]]:
    rows = load_dataset(get_settings().data_dir).active().rows
    sample = rows.groupby("experiment").sample(n=max(1, count // 18), random_state=1)
    return sample[input_columns(use_identifying_columns=False)].to_dict(orient="records")


def predict_latencies(client: httpx.Client, rows: list[dict[str, Any]], n: int) -> np.ndarray:
    seconds = []
    for i in range(n):
        started = time.perf_counter()
        response = client.post("/predict", json={"rows": [rows[i % len(rows)]]})
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return np.asarray(seconds)


class Explainers:
    """Clients asking for anchor and LIME explanations back to back until stopped."""

    def __init__(self, url: str, rows: list[dict[str, Any]], clients: int) -> None:
        self.stop = threading.Event()
        self.answers: list[float] = []
        self.refused = 0
        self.failed = 0
        self.threads = [
            threading.Thread(target=self._loop, args=(url, rows, i)) for i in range(clients)
        ]

    def _loop(self, url: str, rows: list[dict[str, Any]], index: int) -> None:
        methods = ("anchor", "lime")
        with httpx.Client(base_url=url, timeout=120) as client:
            i = index
            while not self.stop.is_set():
                body = {"row": rows[i % len(rows)], "method": methods[i % 2]}
                response = client.post("/explain", json=body)
                if response.status_code == 200:
                    self.answers.append(float(response.json()["seconds"]))
                elif response.status_code == 503:
                    self.refused += 1
                    time.sleep(float(response.headers.get("Retry-After", "1")) / 10)
                else:
                    self.failed += 1
                i += 1

    def __enter__(self) -> Explainers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def summary(seconds: np.ndarray) -> str:
    p50, p95, p99 = (np.percentile(seconds, q) * 1000 for q in (50, 95, 99))
    return f"p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  p99 {p99:7.2f} ms  ({len(seconds)} requests)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--explainers", type=int, default=2)
    args = parser.parse_args()
    rows = real_rows(90)
    port = free_port()
    process = start_api(port)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            version = wait_ready(client, process)
            client.post("/explain", json={"row": rows[0], "method": "shap"}).raise_for_status()
            predict_latencies(client, rows, 50)  # warm up
            alone = predict_latencies(client, rows, args.requests)
            with Explainers(url, rows, args.explainers) as explainers:
                time.sleep(1.0)  # let the first explanations start
                beside = predict_latencies(client, rows, args.requests)
        print(f"champion version {version}; load average {os.getloadavg()[0]:.1f}")
        print(f"/predict alone:                  {summary(alone)}")
        print(f"/predict beside {args.explainers} explainers:    {summary(beside)}")
        for q in (50, 95):
            ratio = np.percentile(beside, q) / np.percentile(alone, q)
            print(f"  p{q} ratio beside/alone: {ratio:.2f}")
        median = np.median(explainers.answers) if explainers.answers else float("nan")
        print(
            f"explanations meanwhile: {len(explainers.answers)} answered (median {median:.2f} s), "
            f"{explainers.refused} refused with 503, {explainers.failed} failed"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
