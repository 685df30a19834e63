"""Time from ``POST /retrain`` to the new champion answering ``/predict``, end to end.

Starts, on loopback, a real trainer worker and a real API server on a fresh store whose champion is
the weak baseline (so the retrain's winner is promoted), then for each budget: POST /retrain, and
poll /predict with a real row until the answer names the new version. Uses the Redis at
CNCWEAR_BENCH_REDIS_URL (default redis://127.0.0.1:6379/12, flushed).

Usage: uv run python bench/retrain.py [--budgets fast full]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.training.retrain import retrain

BIN = Path(sys.executable).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", type=Budget, default=[Budget.FAST, Budget.FULL])
    args = parser.parse_args()
    redis_url = os.environ.get("CNCWEAR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    rows = load_dataset(Settings().data_dir).active().rows
    row = rows.drop(columns=["experiment", "label", "feedrate", "clamp_pressure"]).iloc[[0]]
    payload = {"rows": row.to_dict(orient="records")}
    for budget in args.budgets:
        redis.Redis.from_url(redis_url).flushdb()
        with tempfile.TemporaryDirectory(prefix="cncwear-bench-retrain-") as home:
            seconds, version = measure(Path(home), redis_url, budget, payload)
            print(f"{budget.value:>5} budget: POST /retrain -> champion v{version} answering "
                  f"/predict in {seconds:.1f} s")  # fmt: skip


def measure(
    home: Path, redis_url: str, budget: Budget, payload: dict[str, object]
) -> tuple[float, str]:
    settings = Settings(home=home, redis_url=redis_url)
    retrain(settings, candidates=["baseline"], reason="benchmark seed")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))},
        "CNCWEAR_HOME": str(home),
        "CNCWEAR_REDIS_URL": redis_url,
        "CNCWEAR_PORT": str(port),
        "CNCWEAR_API_TOKEN": "bench-token",
        "CNCWEAR_LOG_LEVEL": "WARNING",
    }
    processes = [
        subprocess.Popen([str(BIN / "cncwear-trainer"), "worker", "--loglevel=WARNING"], env=env,
                         stdout=subprocess.DEVNULL, start_new_session=True),
        subprocess.Popen([str(BIN / "cncwear-api")], env=env, stdout=subprocess.DEVNULL,
                         start_new_session=True),
    ]  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            before = wait_for_version(client, payload, lambda v: v is not None, timeout=120)
            time.sleep(5)  # let the worker finish starting
            started = time.perf_counter()
            answer = client.post(
                "/retrain",
                json={"budget": budget.value, "reason": "benchmark"},
                headers={"Authorization": "Bearer bench-token"},
            )
            answer.raise_for_status()
            version = wait_for_version(client, payload, lambda v: v != before, timeout=3600)
            return time.perf_counter() - started, str(version)
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def wait_for_version(
    client: httpx.Client, payload: dict[str, object], accept: object, timeout: float
) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = client.post("/predict", json=payload)
            if response.status_code == 200:
                version = str(response.json()["model"]["version"])
                if accept(version):  # type: ignore[operator]
                    return version
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the new champion did not answer in time")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
