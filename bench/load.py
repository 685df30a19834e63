"""Sustained load: a stated request rate on /predict for minutes, mixed with /explain calls (when
the API has them) and one retrain with promotion in the middle.

Starts, on loopback, a real API server (the ``cncwear-api`` console script, so its resident memory
can be read from /proc) and a real trainer worker on a fresh store whose champion is the weak
baseline, so the retrain's winner is promoted while the load runs. Requests are sent open loop: on
schedule, whether or not earlier ones have answered (a slow server shows as latency, not as a lower
offered rate). Uses the Redis at CNCWEAR_BENCH_REDIS_URL (default redis://127.0.0.1:6379/12,
flushed).

Reports throughput, latency p50/p99 per route, errors (target: zero), the versions served, the
retrain's time to promotion, and the API's resident memory at start and end (target: growth at
most --rss-bound-mb).

Usage: uv run python bench/load.py [--rate 50] [--seconds 180] [--explain-rate 1] [--rows 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from loadgen import free_port, ready

from cncwear.core.schema import input_columns
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.training.retrain import retrain

BIN = Path(sys.executable).parent
TOKEN = "bench-load-token"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    versions: Counter[str] = field(default_factory=Counter)
    rss: list[tuple[float, float]] = field(default_factory=list)
    """(seconds into the run, the API's resident MB)"""

    def record(self, route: str, status: str, seconds: float) -> None:
        self.statuses.setdefault(route, Counter())[status] += 1
        if status == "200":
            self.latencies.setdefault(route, []).append(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="/predict requests per second")
    parser.add_argument("--seconds", type=float, default=180.0, help="how long to hold the rate")
    parser.add_argument("--explain-rate", type=float, default=1.0, help="/explain per second")
    parser.add_argument("--rows", type=int, default=1, help="rows per /predict request")
    parser.add_argument("--retrain-at", type=float, default=0.3, help="share of the run")
    parser.add_argument("--rss-bound-mb", type=float, default=100.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the API and worker too
    redis_url = os.environ.get("CNCWEAR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    redis.Redis.from_url(redis_url).flushdb()
    rows = load_dataset(Settings().data_dir).active().rows
    rows = rows[input_columns(use_identifying_columns=False)].sample(n=2000, random_state=0)
    records = [{str(k): v for k, v in r.items()} for r in rows.to_dict(orient="records")]
    with tempfile.TemporaryDirectory(prefix="cncwear-bench-load-") as home:
        settings = Settings(home=Path(home), redis_url=redis_url, n_jobs=1)
        seed = retrain(settings, candidates=["baseline"], reason="load benchmark seed")
        with stack(settings) as (base_url, api_pid):
            print(f"seed champion: version {seed.version} (baseline)")
            asyncio.run(run(args, base_url, api_pid, records))


@contextmanager
def stack(settings: Settings) -> Iterator[tuple[str, int]]:
    """The API and a worker as processes on ``settings``; yields the API's URL and pid."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))},
        "CNCWEAR_HOME": str(settings.home),
        "CNCWEAR_REDIS_URL": settings.redis_url,
        "CNCWEAR_PORT": str(port),
        "CNCWEAR_API_TOKEN": TOKEN,
        "CNCWEAR_LOG_LEVEL": "WARNING",
        "CNCWEAR_N_JOBS": "1",
    }
    worker = [str(BIN / "cncwear-trainer"), "worker", "--loglevel=WARNING"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
        for command in (worker, [str(BIN / "cncwear-api")])
    ]
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while not ready(base_url):
            if time.monotonic() > deadline:
                raise TimeoutError("the API did not become ready")
            time.sleep(0.5)
        yield base_url, processes[1].pid
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def run(
    args: argparse.Namespace,
    base_url: str,
    api_pid: int,
    records: list[dict[str, Any]],
) -> None:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        explain = (await client.get("/openapi.json")).json()["paths"].get("/explain") is not None
        for record in records[:50]:  # warm up, then measure
            await client.post("/predict", json={"rows": [record]})
        if explain:
            await warm_explainer(client, {"row": records[0], "method": "shap"})
        tally = Tally()
        rss_start = rss_mb(api_pid)
        started = time.perf_counter()
        sampler = asyncio.create_task(sample_rss(api_pid, tally))
        tasks: list[asyncio.Task[None]] = []
        retrain_task = asyncio.create_task(
            retrain_midway(client, args.seconds * args.retrain_at, {"rows": records[:1]})
        )
        rates = [("/predict", args.rate)] + ([("/explain", args.explain_rate)] if explain else [])
        schedulers = [
            asyncio.create_task(
                schedule(
                    client,
                    route,
                    rate,
                    args,
                    records=records,
                    started=started,
                    tally=tally,
                    tasks=tasks,
                )
            )
            for route, rate in rates
            if rate > 0
        ]
        await asyncio.gather(*schedulers)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        retrain_report = await retrain_task
        rss_end = rss_mb(api_pid)
        sampler.cancel()
    report(args, tally, elapsed, rss=(rss_start, rss_end), outcome=retrain_report, explain=explain)


async def warm_explainer(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    """Ask for an explanation until one comes: the first builds the champion's explainer (tens of
    seconds for a model without a tree explainer), which is start-up, not load."""
    deadline = time.perf_counter() + 300
    while time.perf_counter() < deadline:
        if (await client.post("/explain", json=body)).status_code == 200:
            return
        await asyncio.sleep(1.0)
    raise TimeoutError("the explainer did not warm up within 300 s")


async def sample_rss(pid: int, tally: Tally) -> None:
    """The API's resident memory once a second, to tell a one-off step (a second model loaded at
    the swap) from steady growth (a leak)."""
    started = time.perf_counter()
    while True:
        tally.rss.append((time.perf_counter() - started, rss_mb(pid)))
        await asyncio.sleep(1.0)


async def schedule(
    client: httpx.AsyncClient,
    route: str,
    rate: float,
    args: argparse.Namespace,
    *,
    records: list[dict[str, Any]],
    started: float,
    tally: Tally,
    tasks: list[asyncio.Task[None]],
) -> None:
    """Fire requests at ``rate`` per second until the run's end, without waiting for answers."""
    count = int(args.seconds * rate)
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        batch = [records[(i * args.rows + k) % len(records)] for k in range(args.rows)]
        body: dict[str, Any] = {"rows": batch} if route == "/predict" else {"row": batch[0]}
        if route == "/explain":
            body["method"] = "shap"
        tasks.append(asyncio.create_task(one(client, route, body, tally)))


async def one(client: httpx.AsyncClient, route: str, body: dict[str, Any], tally: Tally) -> None:
    sent = time.perf_counter()
    try:
        response = await client.post(route, json=body)
        status = str(response.status_code)
        if route == "/predict" and response.status_code == 200:
            tally.versions[str(response.json()["model"]["version"])] += 1
    except httpx.HTTPError as error:
        status = type(error).__name__
    tally.record(route, status, time.perf_counter() - sent)


async def retrain_midway(
    client: httpx.AsyncClient, at: float, records_for_check: dict[str, Any]
) -> str:
    """POST /retrain at ``at`` seconds into the run; returns what became of it."""
    await asyncio.sleep(at)
    queued = time.perf_counter()
    answer = await client.post(
        "/retrain",
        json={"candidates": ["decision_tree"], "reason": "load benchmark"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    if answer.status_code != 202:
        return f"POST /retrain answered {answer.status_code}: {answer.text[:200]}"
    job_id = answer.json()["job_id"]
    while True:
        await asyncio.sleep(1.0)
        job = (await client.get(f"/jobs/{job_id}")).json()
        if job["state"] in {"succeeded", "failed"}:
            break
    if job["state"] == "failed":
        return f"retrain failed: {job['error']}"
    result = job["result"]
    served_after = None
    if result.get("promoted"):
        served_after = await first_answer_from(client, result["version"], records_for_check)
    return (
        f"retrain {job_id[:8]}: version {result['version']}, "
        f"{'promoted' if result.get('promoted') else 'not promoted'}"
        + (f", served {served_after - queued:.1f} s after POST /retrain" if served_after else "")
    )


async def first_answer_from(
    client: httpx.AsyncClient, version: str, payload: dict[str, Any]
) -> float | None:
    """When /predict first answers from ``version`` (None if not within two minutes)."""
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline:
        response = await client.post("/predict", json=payload)
        if response.status_code == 200 and str(response.json()["model"]["version"]) == version:
            return time.perf_counter()
        await asyncio.sleep(0.2)
    return None


def report(
    args: argparse.Namespace,
    tally: Tally,
    elapsed: float,
    *,
    rss: tuple[float, float],
    outcome: str,
    explain: bool,
) -> None:
    rss_start, rss_end = rss
    last_third = [mb for t, mb in tally.rss if t >= elapsed * 2 / 3]
    print(
        f"load: {args.rate:g} /predict per s ({args.rows} row(s) each)"
        + (f" + {args.explain_rate:g} /explain per s" if explain else " (no /explain on this API)")
        + f", held {elapsed:.1f} s"
    )
    errors = 0
    for route, statuses in tally.statuses.items():
        total = sum(statuses.values())
        ok = statuses.get("200", 0)
        errors += total - ok
        latencies = np.asarray(tally.latencies.get(route, [float("nan")])) * 1000
        print(
            f"  {route:9} {total:7d} requests, {total / elapsed:7.1f}/s, errors {total - ok}"
            f" {dict(s for s in statuses.items() if s[0] != '200') or ''}"
            f"  p50 {np.percentile(latencies, 50):7.2f} ms  p99 {np.percentile(latencies, 99):7.2f}"
            f" ms  max {latencies.max():7.1f} ms"
        )
    print(f"  versions served: {dict(sorted(tally.versions.items()))}")
    print(f"  {outcome}")
    growth = rss_end - rss_start
    verdict = "within" if growth <= args.rss_bound_mb else "OVER"
    print(
        f"  API resident memory: {rss_start:.0f} MB at start, {rss_end:.0f} MB at end "
        f"({growth:+.0f} MB, {verdict} the bound of {args.rss_bound_mb:g} MB); "
        f"peak {max(mb for _, mb in tally.rss):.0f} MB"
    )
    if len(last_third) > 1:
        print(
            f"  over the last third (after the swap): {last_third[0]:.0f} MB to "
            f"{last_third[-1]:.0f} MB ({last_third[-1] - last_third[0]:+.0f} MB)"
        )
    print(f"  errors in all: {errors} (target 0)")


if __name__ == "__main__":
    main()
