"""Serving speed: the cncwear API against MLflow's own scoring server, on the same champion.

    CNCWEAR_HOME=var uv run python bench/serve.py [--duration 10] [--skip-mlflow]

Starts each server in turn (so they do not compete for cores), loads it with wrk (Debian package
``wrk``; an asyncio client when wrk is missing) and measures throughput and p50/p99 latency for
single-row requests at concurrency 1, 8 and 32 and 1,000-row batches at concurrency 1 and 4; plus
scoring in process, the floor. Batches are sent in the columnar form to both (MLflow's
``dataframe_split``), single rows as one record to ours. Results are printed and written to
``bench/results/``. Needs a champion: ``cncwear train`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from loadgen import free_port, load

from cncwear.data.dataset import load_dataset
from cncwear.registry.store import ModelStore
from cncwear.serving.batch import to_batch
from cncwear_api.core.settings import ApiSettings
from cncwear_api.schemas.predict import PredictRequest
from cncwear_api.serving.holder import ServedModel, load_served_model

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
SCENARIOS = [
    ("single row", 1, 1),
    ("single row", 1, 8),
    ("single row", 1, 32),
    ("1,000-row batch", 1000, 1),
    ("1,000-row batch", 1000, 4),
]


@dataclass
class Result:
    server: str
    scenario: str
    rows: int
    concurrency: int
    requests: int
    throughput: float
    p50_ms: float
    p99_ms: float
    failed: int


def wait_for(url: str, process: subprocess.Popen[bytes], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def bodies(frame: pd.DataFrame, folder: Path) -> dict[tuple[str, int], Path]:
    """Request bodies for each server and batch size, as files for the load generator."""
    one = frame.head(1)
    batch = frame.head(1000)
    split = {"columns": list(batch.columns), "data": batch.to_numpy().tolist()}
    payloads = {
        ("mlflow", 1): {
            "dataframe_split": {"columns": list(one.columns), "data": one.to_numpy().tolist()}
        },
        ("mlflow", 1000): {"dataframe_split": split},
        ("cncwear", 1): {"rows": one.to_dict(orient="records")},
        ("cncwear", 1000): split,
    }
    paths = {}
    for (server, rows), payload in payloads.items():
        path = folder / f"{server}-{rows}.json"
        path.write_text(json.dumps(payload))
        paths[(server, rows)] = path
    return paths


def run_scenarios(
    name: str, url: str, paths: dict[tuple[str, int], Path], seconds: float
) -> list[Result]:
    results = []
    for scenario, rows, concurrency in SCENARIOS:
        load(url, paths[(name, rows)], concurrency, min(3.0, seconds))  # warm up
        measured = load(url, paths[(name, rows)], concurrency, seconds)
        result = Result(
            server=name,
            scenario=scenario,
            rows=rows,
            concurrency=concurrency,
            requests=measured["requests"],
            throughput=measured["requests"] / measured["seconds"],
            p50_ms=measured["p50_ms"],
            p99_ms=measured["p99_ms"],
            failed=measured["errors"] + measured["non_2xx"],
        )
        print(
            f"  {name:8} {scenario:16} c={concurrency:<3} {result.throughput:9.1f} req/s   "
            f"p50 {result.p50_ms:8.2f} ms   p99 {result.p99_ms:8.2f} ms   failed {result.failed}",
            flush=True,
        )
        results.append(result)
    return results


def bench_mlflow(
    settings: ApiSettings, paths: dict[tuple[str, int], Path], seconds: float
) -> list[Result]:
    port = free_port()
    uri = f"models:/{settings.model_name}@{settings.champion_alias}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.tracking_uri(),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    print(f"MLflow scoring server: {' '.join(command[1:])}", flush=True)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(f"http://127.0.0.1:{port}/ping", process)
            return run_scenarios("mlflow", f"http://127.0.0.1:{port}/invocations", paths, seconds)
        finally:
            process.terminate()
            process.wait(timeout=60)


def bench_cncwear(
    settings: ApiSettings, paths: dict[tuple[str, int], Path], seconds: float
) -> list[Result]:
    port = free_port()
    env = {
        **os.environ,
        "CNCWEAR_HOME": str(settings.home),
        "CNCWEAR_PORT": str(port),
        "CNCWEAR_HOST": "127.0.0.1",
    }
    print("cncwear API: cncwear-api (one process, INFO request log to a file)", flush=True)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [str(BIN / "cncwear-api")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/ready", process)
            runtime = httpx.get(f"http://127.0.0.1:{port}/model").json()["serving"]["runtime"]
            print(f"  serving through {runtime}", flush=True)
            return run_scenarios("cncwear", f"http://127.0.0.1:{port}/predict", paths, seconds)
        finally:
            process.terminate()
            process.wait(timeout=60)


def in_process(served: ServedModel, frame: pd.DataFrame) -> dict[str, float]:
    """Microseconds per call, median of repeated calls, in this process."""
    pipeline = served.pipeline
    timings: dict[str, float] = {}
    for rows in (1, 1000):
        part = frame.head(rows)
        request = PredictRequest(columns=list(part.columns), data=part.to_numpy().tolist())
        batch = to_batch(request, served.input_columns)
        runtime = served.runtime
        timings[f"{runtime} predict, {rows} row(s)"] = _median_us(served.probability_worn, batch)
        timings[f"validate + {runtime} predict, {rows} row(s)"] = _median_us(
            lambda r: served.probability_worn(to_batch(r, served.input_columns)), request
        )
        timings[f"scikit-learn predict_proba, {rows} row(s)"] = _median_us(
            pipeline.predict_proba, part, repeat=20
        )
    return timings


def _median_us(call: Any, argument: Any, repeat: int = 200) -> float:
    call(argument)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call(argument)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def verdicts(results: list[Result]) -> list[str]:
    def find(server: str, rows: int, concurrency: int) -> Result:
        return next(
            r for r in results if (r.server, r.rows, r.concurrency) == (server, rows, concurrency)
        )

    lines = []
    for concurrency in (8, 32):
        ours, theirs = find("cncwear", 1, concurrency), find("mlflow", 1, concurrency)
        ratio = ours.throughput / theirs.throughput
        lines.append(
            f"{_mark(ratio >= 20)}  single-row throughput at c={concurrency}: "
            f"{ratio:.0f}x MLflow's (target >= 20x)"
        )
    p99 = find("cncwear", 1, 8).p99_ms
    lines.append(f"{_mark(p99 <= 10)}  single-row p99 at c=8: {p99:.2f} ms (target <= 10 ms)")
    for concurrency in (1, 4):
        ours, theirs = find("cncwear", 1000, concurrency), find("mlflow", 1000, concurrency)
        share = ours.p50_ms / theirs.p50_ms
        lines.append(
            f"{_mark(share <= 0.5)}  1,000-row batch p50 at c={concurrency}: {ours.p50_ms:.1f} ms "
            f"vs MLflow's {theirs.p50_ms:.1f} ms = {share:.2f} of it (target <= 0.5)"
        )
    failed = sum(r.failed for r in results)
    lines.append(f"{_mark(failed == 0)}  failed requests: {failed}")
    return lines


def _mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--skip-mlflow", action="store_true", help="measure the cncwear API only")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = ApiSettings()
    store = ModelStore(settings)
    champion = store.champion_version()
    if champion is None:
        raise SystemExit(f"no champion in {settings.tracking_uri()}: run `cncwear train` first")
    served = load_served_model(store, champion)
    dataset = load_dataset(settings.data_dir).active()
    frame = dataset.rows.sample(n=1000, random_state=0)[served.input_columns]
    generator = "wrk" if shutil.which("wrk") else "asyncio client (install wrk for less skew)"
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; "
        f"load generator: {generator}; "
        f"{args.duration:.0f} s per measurement",
        flush=True,
    )

    floor = in_process(served, frame)
    print(
        f"in process: {served.name} version {served.version} "
        f"({type(served.pipeline[-1]).__name__}), median per call:"
    )
    for what, micros in floor.items():
        print(f"  {what:48} {micros:10.1f} us")

    results: list[Result] = []
    with tempfile.TemporaryDirectory() as folder:
        paths = bodies(frame, Path(folder))
        if not args.skip_mlflow:
            results += bench_mlflow(settings, paths, args.duration)
        results += bench_cncwear(settings, paths, args.duration)
    if not args.skip_mlflow:
        print("targets:")
        for line in verdicts(results):
            print(f"  {line}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other work on the machine skews)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps({"in_process_us": floor, "http": [asdict(r) for r in results]}, indent=2)
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
