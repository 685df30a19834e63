"""What drift monitoring adds to ``/predict``: the same champion served with monitoring on and off,
in the same run, single-row requests.

    CNCWEAR_HOME=var uv run python bench/drift.py [--requests 3000] [--seconds 10]

Starts three ``cncwear-api`` processes on the same registry: one with monitoring, two without
(``CNCWEAR_MONITORING=false``; the second is a control: off/off shows how far two identical servers
differ on this machine, the noise the on/off ratio must be read against). Single-row requests go to
them in turn, in a rotating order, from one client, so that whatever else the machine does weighs
on all alike; the latency of each is measured at the client. Then each server, in rotating blocks,
takes single-row requests from 8 concurrent clients (throughput). The figure to read is the ratio
on/off (target: at most 1.05 at single rows). Also the in-process cost of the monitoring step
itself, the one figure that does not depend on the machine's other work. Needs a champion:
``cncwear train`` first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import pandas as pd

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.data.feature_map import FeatureMap
from cncwear.monitoring.window import Monitor, MonitorConfig, Reference
from cncwear.registry.store import ModelStore
from cncwear.serving.batch import to_batch
from cncwear.training.budget import BUDGETS
from cncwear.training.candidates import FitContext
from cncwear.training.evaluation import holdout_split
from cncwear.training.retrain import candidate_profile, make_candidate
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.settings import ApiSettings
from cncwear_api.schemas.predict import PredictRequest
from cncwear_api.serving.holder import load_served_model
from cncwear_api.serving.live_monitoring import LiveMonitoring

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
TARGET = 1.05
LABELS = {"on": "on", "off": "off", "control": "off (control)"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(settings: ApiSettings, monitoring: bool, log: IO[bytes]) -> tuple[str, Any]:
    port = free_port()
    env = {
        **os.environ,
        "CNCWEAR_HOME": str(settings.home),
        "CNCWEAR_PORT": str(port),
        "CNCWEAR_HOST": "127.0.0.1",
        "CNCWEAR_MONITORING": "true" if monitoring else "false",
        "CNCWEAR_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [str(BIN / "cncwear-api")], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return f"http://127.0.0.1:{port}", process


def wait_ready(url: str, process: Any, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not become ready")


def interleaved(urls: dict[str, str], bodies: list[bytes], requests: int) -> dict[str, list[float]]:
    """Latency (s) of single-row requests sent alternately to each server, one at a time."""
    headers = {"content-type": "application/json"}
    clients = {name: httpx.Client(base_url=url, timeout=30.0) for name, url in urls.items()}
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    try:
        items = list(clients.items())
        for i in range(requests + 200):
            body = bodies[i % len(bodies)]
            shift = i % len(items)
            order = items[shift:] + items[:shift]
            for name, client in order:
                started = time.perf_counter()
                response = client.post("/predict", content=body, headers=headers)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {response.status_code} {response.text[:200]}")
                if i >= 200:  # the first requests warm both servers up
                    latencies[name].append(elapsed)
    finally:
        for client in clients.values():
            client.close()
    return latencies


async def _throughput(url: str, bodies: list[bytes], concurrency: int, seconds: float) -> float:
    headers = {"content-type": "application/json"}
    done = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.perf_counter() < deadline:
                response = await client.post(
                    "/predict", content=bodies[i % len(bodies)], headers=headers
                )
                if response.status_code != 200:
                    raise SystemExit(f"{url}: {response.status_code}")
                done += 1
                i += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return done / (time.perf_counter() - started)


def blocks(
    urls: dict[str, str], bodies: list[bytes], seconds: float, rounds: int = 5
) -> dict[str, float]:
    """Requests per second at concurrency 8, each server in alternating blocks; the median."""
    rates: dict[str, list[float]] = {name: [] for name in urls}
    names = list(urls)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(asyncio.run(_throughput(urls[name], bodies, 8, seconds)))
    return {name: statistics.median(values) for name, values in rates.items()}


def in_process(settings: ApiSettings, bodies: list[dict[str, Any]]) -> dict[str, float]:
    """Median microseconds in this process: the predict step, and the monitoring step after it."""
    served = load_served_model(ModelStore(settings), ModelStore(settings).champion_version())  # type: ignore[arg-type]
    live = LiveMonitoring(settings, ApiMetrics(), enqueue=lambda request: (None, False))  # type: ignore[arg-type,return-value]
    requests = [PredictRequest.model_validate(body) for body in bodies]
    predict, observe = [], []
    for i in range(3000):
        request = requests[i % len(requests)]
        started = time.perf_counter()
        batch = to_batch(request, served.input_columns)
        probability = served.probability_worn(batch)
        middle = time.perf_counter()
        live.observe(served, batch.numeric, probability, probability >= 0.5, f"r{i}")
        ended = time.perf_counter()
        predict.append(middle - started)
        observe.append(ended - middle)
    started = time.perf_counter()
    live.report(served)
    report_ms = (time.perf_counter() - started) * 1000
    return {
        "validate + predict, 1 row (us)": statistics.median(predict) * 1e6,
        "monitoring step, 1 row (us)": statistics.median(observe) * 1e6,
        "drift report over a full window, off the request path (ms)": report_ms,
    }


def summary(latencies: list[float]) -> dict[str, float]:
    values = np.asarray(latencies) * 1000
    return {
        "requests": len(values),
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="single-row requests per server")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per throughput block")
    parser.add_argument("--loeo", action="store_true", help="false alarms and detection, LOEO")
    parser.add_argument("--candidate", default="random_forest", help="the LOEO folds' learner")
    parser.add_argument("--quantile", type=float, default=1.0, help="the null's upper quantile")
    parser.add_argument("--min-rows", type=int, default=100, help="rows before a run is judged")
    args = parser.parse_args()
    if args.loeo:
        loeo(args)
    else:
        cost(args)


def cost(args: argparse.Namespace) -> None:
    """The monitoring step's cost on ``/predict``: monitoring on against off, in the same run."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = ApiSettings()
    if ModelStore(settings).champion_version() is None:
        raise SystemExit(f"no champion in {settings.tracking_uri()}: run `cncwear train` first")
    rows = load_dataset(settings.data_dir).active().rows.sample(n=500, random_state=0)
    columns = ModelStore(settings).load_champion().pipeline.feature_names_in_.tolist()
    payloads = [{"rows": [row]} for row in rows[columns].to_dict(orient="records")]
    bodies = [json.dumps(p).encode() for p in payloads]
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
        "(shared with other work: read ratios, not absolute times)",
        flush=True,
    )
    floor = in_process(settings, payloads)
    print("in process, median per call:")
    for what, value in floor.items():
        print(f"  {what:62} {value:9.1f}")

    with ExitStack() as stack:
        names = ("on", "off", "control")
        logs = {name: stack.enter_context(tempfile.TemporaryFile()) for name in names}
        servers = {name: start(settings, name == "on", logs[name]) for name in names}
        for _, process in servers.values():
            stack.callback(process.wait, 60)
            stack.callback(process.terminate)
        for url, process in servers.values():
            wait_ready(url, process)
        urls = {name: url for name, (url, _) in servers.items()}
        print(f"HTTP, single-row requests, in turn to the three servers ({args.requests} each):")
        latencies = interleaved(urls, bodies, args.requests)
        stats = {name: summary(values) for name, values in latencies.items()}
        for name in names:
            s = stats[name]
            print(
                f"  monitoring {LABELS[name]:13}: p50 {s['p50_ms']:.3f} ms  "
                f"p99 {s['p99_ms']:.3f} ms  mean {s['mean_ms']:.3f} ms"
            )
        drift = httpx.get(f"{urls['on']}/drift", timeout=30).json()
        print(
            f"  (the monitored server's window: {drift['window_rows']} rows, drift share "
            f"{drift['drift_share']:.2f})"
        )
        rates = blocks(urls, bodies, args.seconds)
        print(
            f"HTTP, single rows at concurrency 8, rotating {args.seconds:.0f} s blocks "
            "(median of 5):"
        )
        for name in names:
            print(f"  monitoring {LABELS[name]:13}: {rates[name]:8.0f} requests/s")

    ratios = {}
    for other in ("on", "control"):
        ratios[other] = {
            "p50 latency": stats[other]["p50_ms"] / stats["off"]["p50_ms"],
            "mean latency": stats[other]["mean_ms"] / stats["off"]["mean_ms"],
            "p99 latency": stats[other]["p99_ms"] / stats["off"]["p99_ms"],
            "1 / throughput at concurrency 8": rates["off"] / rates[other],
        }
    print(f"ratios against monitoring off (target for on/off: at most {TARGET:.2f}):")
    print(f"  {'':34} {'on/off':>8} {'control/off (noise)':>20}")
    for what in ratios["on"]:
        on, control = ratios["on"][what], ratios["control"][what]
        mark = "ok" if on <= TARGET else "OVER"
        print(f"  {what:34} {on:8.3f} {control:20.3f}   {mark}")
    step = floor["monitoring step, 1 row (us)"]
    print(
        f"monitoring step in process: {step:.1f} us = {step / (stats['off']['p50_ms'] * 1000):.2%} "
        "of the p50 single-row request without monitoring"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"drift-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {"in_process": floor, "http": stats, "throughput": rates, "ratios": ratios}, indent=2
        )
    )
    print(f"written to {out}")


# Leave-one-experiment-out: false alarms and detection power ------------------------------------

FAULTS: dict[str, str] = {
    "gain": "output-current gain 1.10 on X1, Y1 and S1",
    "offset": "work offset shifted 5 mm on X (actual and command positions)",
    "stuck_current": "Y1_OutputCurrent frozen at its first value",
    "stuck_position": "X1_ActualPosition frozen at its first value",
    "unit": "X1_ActualVelocity in the wrong unit (x10)",
}
BATCH_ROWS = 100


def faulty(rows: pd.DataFrame, fault: str) -> pd.DataFrame:
    """The same run with one of :data:`FAULTS`."""
    rows = rows.copy()
    if fault == "gain":
        for column in ("X1_OutputCurrent", "Y1_OutputCurrent", "S1_OutputCurrent"):
            rows[column] = rows[column] * 1.10
    elif fault == "offset":
        for column in ("X1_ActualPosition", "X1_CommandPosition"):
            rows[column] = rows[column] + 5.0
    elif fault == "stuck_current":
        rows["Y1_OutputCurrent"] = rows["Y1_OutputCurrent"].iloc[0]
    elif fault == "stuck_position":
        rows["X1_ActualPosition"] = rows["X1_ActualPosition"].iloc[0]
    elif fault == "unit":
        rows["X1_ActualVelocity"] = rows["X1_ActualVelocity"] * 10.0
    return rows


def stream(
    monitor: Monitor, pipeline: Any, rows: pd.DataFrame
) -> tuple[bool, int | None, list[str]]:
    """Score the run's rows in batches, judging the rows so far after each batch: the verdict on
    the whole run, the rows after which it was first drifted, and what drifted at the end."""
    columns = list(pipeline.feature_names_in_)
    numeric = rows[monitor.feature_map.raw_columns].to_numpy(np.float64)
    probability = np.asarray(pipeline.predict_proba(rows[columns])[:, 1])
    first: int | None = None
    verdict = None
    for stop in range(BATCH_ROWS, len(rows) + BATCH_ROWS, BATCH_ROWS):
        end = min(stop, len(rows))
        verdict = monitor.judge(numeric[:end], probability[:end])
        if verdict.drift_detected and first is None:
            first = end
    assert verdict is not None
    return verdict.drift_detected, first, verdict.drifted


def loeo(args: argparse.Namespace) -> None:
    settings = Settings(home=Path(tempfile.mkdtemp(prefix="cncwear-drift-")), budget=Budget.FAST)
    dataset = load_dataset(settings.data_dir).active()
    context = FitContext.from_settings(settings, BUDGETS[Budget.FAST])
    started = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    print(
        f"leave-one-experiment-out drift, {args.candidate} at the fast budget, quantile "
        f"{args.quantile:g}; margin chosen per fold on its training runs; runs judged after every "
        f"{BATCH_ROWS} rows from {args.min_rows}",
        flush=True,
    )
    for experiment in (int(e) for e in dataset.experiments):
        rest = dataset.subset([e for e in dataset.experiments if e != experiment])
        split = holdout_split(rest, settings.holdout_fraction, settings.seed)
        train, holdout = (
            rest.subset(split.train_experiments),
            rest.subset(split.holdout_experiments),
        )
        fitted = make_candidate(args.candidate, settings).fit(train, context)
        profile = candidate_profile(fitted.pipeline, train, holdout, seed=settings.seed)
        reference = Reference.from_profile(str(experiment), profile, {})
        assert reference.null is not None
        config = MonitorConfig(
            window_rows=10**6,
            min_rows=args.min_rows,
            drift_share=0.5,
            ks_alpha=0.05,
            wasserstein_threshold=0.1,
            feedback_window_rows=10,
            feedback_min_rows=10,
            null_quantile=args.quantile,
            null_margin=None,
        )
        monitor = Monitor(reference, FeatureMap.probe(fitted.pipeline), config)
        run = dataset.subset([experiment]).rows
        margin = monitor.margin  # chosen on the fold's training runs (NullReference.choose_margin)
        fold: dict[str, Any] = {"rows": len(run), "margin": margin}
        for name in ("clean", *FAULTS):
            rows = run if name == "clean" else faulty(run, name)
            drifted, first, what = stream(monitor, fitted.pipeline, rows)
            fold[name] = {"drifted": drifted, "rows_to_decide": first, "what": what[:6]}
        results[experiment] = fold
        flags = " ".join(f"{n}={'Y' if fold[n]['drifted'] else '-'}" for n in ("clean", *FAULTS))
        print(
            f"  experiment {experiment:>2} ({len(run):>4} rows, margin {margin:g}): {flags}"
            + (f"  clean drifted on {fold['clean']['what']}" if fold["clean"]["drifted"] else ""),
            flush=True,
        )
    print(f"\n{len(results)} folds in {time.perf_counter() - started:.0f} s")
    clean = sum(f["clean"]["drifted"] for f in results.values())
    print(f"false alarms on clean runs: {clean} of {len(results)} (target: at most 1)")
    for name, what in FAULTS.items():
        hits = [f[name] for f in results.values()]
        detected = sum(h["drifted"] for h in hits)
        needed = [h["rows_to_decide"] for h in hits if h["rows_to_decide"] is not None]
        median = f"{statistics.median(needed):.0f}" if needed else "-"
        print(
            f"detected {name:15} {detected:>2} of {len(hits)} (target: at least 16); "
            f"rows to decide: median {median}, max {max(needed, default=0)}   ({what})"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"drift-loeo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
