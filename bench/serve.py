"""Serving speed: the cncwear API (``/predict`` and the Open Inference Protocol's ``infer``)
against two peers serving the same champion, MLflow's scoring server and MLServer, and against a
bare floor, in one run.

    CNCWEAR_HOME=var uv run python bench/serve.py [--duration 10] [--skip-mlflow] [--skip-mlserver]

Starts each server in turn (so they do not compete for cores), loads it with wrk (Debian package
``wrk``; an asyncio client when wrk is missing) and measures throughput and p50/p99 latency for
single-row requests at concurrency 1, 8 and 32 and 1,000-row batches (records and columnar) at
concurrency 1; plus scoring in process. The servers:

- ``mlflow``: ``mlflow models serve`` of the champion (``dataframe_split``, ``dataframe_records``).
- ``mlserver``: MLServer with ``mlserver-mlflow``, the champion over its V2 REST route (one input
  per column, ``content_type: pd``; V2 has no records form, so both batch lines send that). It is a
  peer, not a dependency: it is installed with uv into an environment of its own,
  ``bench/.venv-mlserver`` (not committed), made on first use: uvloop 0.21 (its inference worker
  fails with 0.23: "There is no current event loop"), the ``cncwear`` library (the champion's skops
  trusted types name ``cncwear.features.*``) and the scikit-learn, skops, numpy and pandas of this
  environment. It hangs on SIGTERM ("Waiting for background tasks"): its process group is killed
  after a grace period.
- ``floor``: ``bench/floor.py``, the same ASGI server and JSON parser as the API returning one
  constant answer, sent the bodies ``/predict`` gets.
- ``cncwear /predict`` (``rows``, or ``columns`` + ``data``) and ``cncwear /v2`` (one input per
  column; columnar: the compact ``numeric`` [N, K] tensor plus ``Machining_Process``), one
  ``cncwear-api`` process with its INFO request log on (to a file).

Results are printed, then the ratios against the targets, and written to ``bench/results/``.
Needs a champion: ``cncwear train`` first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
from loadgen import free_port, load

from cncwear.core.schema import PROCESS_COLUMN
from cncwear.data.dataset import load_dataset
from cncwear.registry.store import ModelStore
from cncwear.serving.batch import to_batch
from cncwear_api.core.settings import ApiSettings
from cncwear_api.schemas.predict import PredictRequest
from cncwear_api.serving.holder import ServedModel, load_served_model

BIN = Path(sys.executable).parent
HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MLSERVER_ENV = HERE / ".venv-mlserver"
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop==0.21.0"]
SAME_AS_HERE = [
    "scikit-learn", "skops", "numpy", "scipy", "pandas", "mlflow", "lightgbm", "xgboost",
]  # fmt: skip
"""Pinned in MLServer's environment to the versions of this one (the estimators the trainer may
pick among them): the same model, loaded alike."""
STOP_GRACE_SECONDS = 10.0
SCENARIOS = [
    ("single row", "one", 1),
    ("single row", "one", 8),
    ("single row", "one", 32),
    ("1,000 rows, records", "records", 1),
    ("1,000 rows, columnar", "columnar", 1),
]
SERVERS = ["mlflow", "mlserver", "floor", "cncwear /predict", "cncwear /v2"]


@dataclass
class Result:
    server: str
    scenario: str
    body: str
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


def bodies(frame: pd.DataFrame, folder: Path) -> dict[tuple[str, str], Path]:
    """Request bodies for each server and scenario, as files for the load generator."""
    one, batch = frame.head(1), frame.head(1000)

    def split(part: pd.DataFrame) -> dict[str, Any]:
        return {"columns": list(part.columns), "data": part.astype(object).to_numpy().tolist()}

    def records(part: pd.DataFrame) -> list[dict[str, Any]]:
        return [dict(zip(part.columns, row, strict=True)) for row in split(part)["data"]]

    def per_column(part: pd.DataFrame) -> dict[str, Any]:
        return {
            "parameters": {"content_type": "pd"},
            "inputs": [
                {
                    "name": column,
                    "shape": [len(part)],
                    "datatype": "BYTES" if column == PROCESS_COLUMN else "FP64",
                    "data": part[column].tolist(),
                }
                for column in part.columns
            ],
        }

    numeric = [c for c in batch.columns if c != PROCESS_COLUMN]
    compact = {
        "inputs": [
            {
                "name": "numeric",
                "shape": [len(batch), len(numeric)],
                "datatype": "FP64",
                "data": batch[numeric].to_numpy().tolist(),
            },
            {
                "name": PROCESS_COLUMN,
                "shape": [len(batch)],
                "datatype": "BYTES",
                "data": batch[PROCESS_COLUMN].tolist(),
            },
        ]
    }
    predict = {
        "one": {"rows": records(one)},
        "records": {"rows": records(batch)},
        "columnar": split(batch),
    }
    payloads: dict[tuple[str, str], Any] = {
        ("mlflow", "one"): {"dataframe_split": split(one)},
        ("mlflow", "records"): {"dataframe_records": records(batch)},
        ("mlflow", "columnar"): {"dataframe_split": split(batch)},
        ("mlserver", "one"): per_column(one),
        ("mlserver", "records"): per_column(batch),
        ("mlserver", "columnar"): per_column(batch),
        ("cncwear /v2", "one"): per_column(one),
        ("cncwear /v2", "records"): per_column(batch),
        ("cncwear /v2", "columnar"): compact,
    }
    for body, payload in predict.items():
        payloads[("cncwear /predict", body)] = payload
        payloads[("floor", body)] = payload
    paths = {}
    for (server, body), payload in payloads.items():
        path = folder / f"{server.replace(' /', '-')}-{body}.json"
        path.write_text(json.dumps(payload))
        paths[(server, body)] = path
    return paths


def run_scenarios(
    name: str, url: str, paths: dict[tuple[str, str], Path], seconds: float
) -> list[Result]:
    results = []
    for scenario, body, concurrency in SCENARIOS:
        load(url, paths[(name, body)], concurrency, min(3.0, seconds))  # warm up
        measured = load(url, paths[(name, body)], concurrency, seconds)
        result = Result(
            server=name,
            scenario=scenario,
            body=body,
            concurrency=concurrency,
            requests=measured["requests"],
            throughput=measured["requests"] / measured["seconds"],
            p50_ms=measured["p50_ms"],
            p99_ms=measured["p99_ms"],
            failed=measured["errors"] + measured["non_2xx"],
        )
        print(
            f"  {name:16} {scenario:20} c={concurrency:<3} {result.throughput:9.1f} req/s   "
            f"p50 {result.p50_ms:8.2f} ms   p99 {result.p99_ms:8.2f} ms   failed {result.failed}",
            flush=True,
        )
        results.append(result)
    return results


def bench_mlflow(
    settings: ApiSettings, paths: dict[tuple[str, str], Path], seconds: float
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
    settings: ApiSettings, paths: dict[tuple[str, str], Path], seconds: float
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
            base = f"http://127.0.0.1:{port}"
            results = run_scenarios("cncwear /predict", f"{base}/predict", paths, seconds)
            infer = f"{base}/v2/models/{settings.model_name}/infer"
            return results + run_scenarios("cncwear /v2", infer, paths, seconds)
        finally:
            process.terminate()
            process.wait(timeout=60)


def bench_floor(paths: dict[tuple[str, str], Path], seconds: float) -> list[Result]:
    port = free_port()
    command = [
        str(BIN / "python"), "-m", "uvicorn", "floor:app", "--app-dir", str(HERE),
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    print("floor: bench/floor.py (uvicorn + jiter, a constant answer)", flush=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(url, content=b"{}", timeout=2.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the floor server did not start") from None
                time.sleep(0.2)
        return run_scenarios("floor", url, paths, seconds)
    finally:
        process.terminate()
        process.wait(timeout=60)


def mlserver_environment() -> Path:
    """MLServer's own environment (made with uv on first use); its ``mlserver`` command."""
    command = MLSERVER_ENV / "bin" / "mlserver"
    marker = MLSERVER_ENV / "cncwear-bench-packages.txt"
    from importlib.metadata import version

    same = [f"{name}=={version(name)}" for name in SAME_AS_HERE]
    wanted = "\n".join(MLSERVER_PACKAGES + same)
    if command.exists() and marker.exists() and marker.read_text() == wanted:
        return command
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is needed to make MLServer's environment (bench/.venv-mlserver)")
    print(f"making {MLSERVER_ENV} ({', '.join(MLSERVER_PACKAGES + same)})", flush=True)
    python = MLSERVER_ENV / "bin" / "python"
    subprocess.run(
        [uv, "venv", "-q", "--allow-existing", "--python", sys.executable, str(MLSERVER_ENV)],
        check=True,
    )
    install = [uv, "pip", "install", "-q", "--python", str(python)]
    subprocess.run([*install, *MLSERVER_PACKAGES, *same], check=True)
    subprocess.run([*install, "--no-deps", str(ROOT / "libs" / "cncwear")], check=True)
    marker.write_text(wanted)
    return command


def bench_mlserver(
    settings: ApiSettings, paths: dict[tuple[str, str], Path], seconds: float
) -> list[Result]:
    command = mlserver_environment()
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile() as log:
        mlflow.set_tracking_uri(settings.tracking_uri())
        model = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{settings.model_name}@{settings.champion_alias}",
            dst_path=str(Path(folder) / "model"),
        )
        port = free_port()
        config = {
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "parallel_workers": 1,
        }
        (Path(folder) / "settings.json").write_text(json.dumps(config))
        model_settings = {
            "name": settings.model_name,
            "implementation": "mlserver_mlflow.MLflowRuntime",
            "parameters": {"uri": model},
        }
        (Path(folder) / "model-settings.json").write_text(json.dumps(model_settings))
        print(f"MLServer: {command} start (mlserver-mlflow, one inference worker)", flush=True)
        env = {**os.environ, "PATH": f"{command.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        process = subprocess.Popen(
            [str(command), "start", folder],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its workers are stopped with it
        )
        base = f"http://127.0.0.1:{port}/v2/models/{settings.model_name}"
        try:
            try:
                wait_for(f"{base}/ready", process)
            except SystemExit:
                log.seek(0)
                print(log.read().decode()[-3000:])
                raise
            return run_scenarios("mlserver", f"{base}/infer", paths, seconds)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:  # "Waiting for background tasks": stop its workers
                os.killpg(process.pid, signal.SIGKILL)
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
        timings[f"scikit-learn feature step, {rows} row(s)"] = _median_us(
            pipeline[:-1].transform, part, repeat=20
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


def verdicts(results: list[Result], floor: dict[str, float]) -> list[str]:
    def find(server: str, body: str, concurrency: int) -> Result | None:
        return next(
            (
                r
                for r in results
                if (r.server, r.body, r.concurrency) == (server, body, concurrency)
            ),
            None,
        )

    lines = []

    def ratio(theirs: str, body: str, c: int, target: float) -> None:
        """``cncwear /predict``'s throughput over ``theirs``, against ``target``."""
        a, b = find("cncwear /predict", body, c), find(theirs, body, c)
        if a is None or b is None:
            return
        value = a.throughput / b.throughput
        shown = f"{value:.2f}x" if value < 10 else f"{value:.0f}x"
        lines.append(
            f"{_mark(value >= target)}  {body} throughput at c={c}: cncwear /predict = {shown} "
            f"{theirs}'s (target >= {target:g}x)"
        )

    for c in (1, 8, 32):
        ratio("floor", "one", c, 0.5)
    ratio("floor", "columnar", 1, 0.5)
    ratio("floor", "records", 1, 0.5)
    for c in (8, 32):
        ratio("mlserver", "one", c, 30)
        ratio("mlflow", "one", c, 20)
    for body, c in (("one", 8), ("one", 32), ("columnar", 1)):
        a, b = find("cncwear /v2", body, c), find("cncwear /predict", body, c)
        if a is not None and b is not None:
            value = a.throughput / b.throughput
            lines.append(
                f"{_mark(value >= 0.9)}  {body} throughput at c={c}: /v2 = {value:.2f} of "
                "/predict's (target >= 0.9)"
            )
    for server in ("cncwear /predict", "cncwear /v2"):
        found = find(server, "one", 8)
        if found is not None:
            lines.append(
                f"{_mark(found.p99_ms <= 5)}  single-row p99 at c=8, {server}: "
                f"{found.p99_ms:.2f} ms (target <= 5 ms)"
            )
    per_row = floor["scikit-learn feature step, 1000 row(s)"] / 1000
    one = floor["scikit-learn feature step, 1 row(s)"]
    lines.append(
        f"{_mark(one <= 1000)}  scikit-learn feature step: {one / 1000:.2f} ms for one row, "
        f"{per_row / 1000:.3f} ms a row of 1,000 (target <= 1 ms a row)"
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
    parser.add_argument("--skip-mlflow", action="store_true", help="leave MLflow's server out")
    parser.add_argument("--skip-mlserver", action="store_true", help="leave MLServer out")
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
        if not args.skip_mlserver:
            results += bench_mlserver(settings, paths, args.duration)
        results += bench_floor(paths, args.duration)
        results += bench_cncwear(settings, paths, args.duration)
    print("throughput (req/s) by server:")
    print("  " + " " * 26 + "".join(f"{server:>18}" for server in SERVERS))
    for scenario, body, concurrency in SCENARIOS:
        cells = []
        for server in SERVERS:
            found = [
                r
                for r in results
                if (r.server, r.body, r.concurrency) == (server, body, concurrency)
            ]
            cells.append(f"{found[0].throughput:18.1f}" if found else f"{'-':>18}")
        print(f"  {scenario:20} c={concurrency:<3}" + "".join(cells))
    print("targets:")
    for line in verdicts(results, floor):
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
