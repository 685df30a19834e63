"""The learning curve: what the loop of issue 17 gives, measured end to end on real processes.

    .venv/bin/python bench/learning_curve.py [--steps 12] [--quick] [--skip-folder-check]

A temporary CNCWEAR_HOME; the base data is 6 of the 18 bundled experiments (3 of each label, chosen
by a fixed seed), written as a folder in the bundled format and named by CNCWEAR_DATA_DIR. The first
champion is trained on it by ``cncwear train``. Then a real API process and a real trainer worker
start, and the other 12 experiments follow one at a time in a fixed shuffled order, as a mill would
send them: each is streamed through ``POST /predict`` with ``"run"`` in 100-row batches, then
labelled with its true label and its ``train.csv`` metadata (``POST /runs/{run}/label``), and the
trigger (``CNCWEAR_RETRAIN_AFTER_RUNS=1``) queues the retrain the worker runs. A run the checks
reject (too few rows of active cutting, say) is shown rejected, with its reasons: the settings are
the defaults, not changed to avoid that.

After each step: the run's state, the accepted runs, the latest dataset version, the champion, the
champion's row accuracy and experiments right on the experiments not yet added (scored in this
process through ``load_scoring_model``, as ``cncwear predict`` does), and the seconds from the
label to the API serving the new champion ("vN lost" when the retrain registered vN, not promoted).

The folder check: each step's dataset version is exported with ``export_folder`` and trained on by
``retrain()`` in a separate CNCWEAR_HOME; the two registered models must give the same
probabilities (max abs diff <= 1e-9) on every row of active cutting of the 18 experiments.

The overhead of ``run`` on ``/predict``: p50 and p99 at concurrency 8 for 100-row batches with and
without ``run``, on the same server, alternating the two in rounds to cancel drift (wrk when
installed, else an asyncio client); reported as ratios (target: p50 within 10%, p99 within 20%).
The same at concurrency 1, for context: at c=8 the one API process is saturated and a request
mostly waits behind the seven others, so the ratio there is the append's share of the server's work
per request; at c=1 the milliseconds are a request's own.

Candidates: the defaults (decision tree, random forest, AutoML through FLAML), budget fast,
CNCWEAR_N_JOBS=1: a triggered retrain compares the default candidates, and the first champion is
trained on the same list. A measurement of the loop, not a target for the model: nothing is tuned
to its figures. Uses the Redis at CNCWEAR_BENCH_REDIS_URL (default redis://127.0.0.1:6379/10,
flushed). Writes bench/results/learning_curve.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import redis
from loadgen import free_port, load, load_tool, ready

from cncwear.core.choices import DEFAULT_CANDIDATES, AutoMLEngineName, Budget
from cncwear.core.schema import EXPERIMENT_COLUMN, LABEL_COLUMN
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings
from cncwear.data.dataset import Dataset, load_dataset
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.store import RunStore
from cncwear.data.runs.versions import export_folder
from cncwear.registry.store import ModelStore
from cncwear.serving.batch import of_validated
from cncwear.serving.model import load_scoring_model
from cncwear.training.evaluation import score_predictions
from cncwear.training.retrain import retrain

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"
SEED = 42
"""Chooses the base experiments and the order of the others (the project's default seed)."""
BASE_PER_LABEL = 3
BATCH_ROWS = 100
QUICK_STEPS = 3
CANDIDATES = [c.value for c in DEFAULT_CANDIDATES]
TOLERANCE = 1e-9
JOB_APPEARS_SECONDS = 30.0
"""How long after an accepted label the bench looks for the retrain it queued."""
JOB_TIMEOUT_SECONDS = 1800.0
SERVED_TIMEOUT_SECONDS = 120.0


@dataclass
class Step:
    step: int
    run: str | None
    experiment: int | None
    label: str | None
    state: str
    reasons: list[str]
    accepted_runs: int
    data_version: str | None
    job: str | None
    """What became of the retrain the label queued: succeeded, skipped, failed, none queued."""
    registered: str | None
    promoted: bool
    champion: str
    champion_data_version: str | None
    unseen_experiments: list[int]
    unseen_row_accuracy: float | None
    unseen_experiments_right: int | None
    registered_unseen_row_accuracy: float | None
    """The same for the model this step's retrain registered, promoted or not."""
    run_live_accuracy: float | None
    """The served champion's accuracy on this run's rows, before it learned from them."""
    label_to_served_seconds: float | None
    retrain_seconds: float | None
    stream_seconds: float | None = None
    """Streaming the run through /predict, batch after batch."""
    folder_max_abs_diff: float | None = None
    folder_same_data: bool | None = None


@dataclass
class Overhead:
    generator: str
    concurrency: int
    rows: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    p50_ms: dict[str, float] = field(default_factory=dict)
    """Median over rounds, with and without run."""
    p99_ms: dict[str, float] = field(default_factory=dict)
    p50_ratio: float | None = None
    p99_ratio: float | None = None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12, help="runs to stream (at most 12)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STEPS} steps, short rounds")
    parser.add_argument(
        "--skip-folder-check", action="store_true", help="do not retrain on exported folders"
    )
    parser.add_argument(
        "--folder-check-final-only",
        action="store_true",
        help="the folder check on the last retrain only (saves a retrain per step)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="overhead rounds per condition")
    parser.add_argument("--round-seconds", type=float, default=5.0, help="seconds per round")
    args = parser.parse_args()
    steps = min(QUICK_STEPS if args.quick else args.steps, 12)
    rounds, round_seconds = (2, 3.0) if args.quick else (args.rounds, args.round_seconds)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the API and worker too
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    redis_url = os.environ.get("CNCWEAR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
    redis.Redis.from_url(redis_url).flushdb()

    bundled = load_dataset(BUNDLED_DATA_DIR)
    base, order = choose(bundled.experiment_labels(), SEED)
    materials = BaseData.load(Settings(data_dir=BUNDLED_DATA_DIR)).materials
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n"
        f"base: experiments {base} (seed {SEED}); then, in this order: {order}\n"
        f"candidates: {', '.join(CANDIDATES)} (the defaults, which a triggered retrain compares); "
        f"budget fast, CNCWEAR_N_JOBS=1\n"
        f"streaming {steps} run(s) in {BATCH_ROWS}-row batches; folder check: "
        f"{'skipped' if args.skip_folder_check else 'final step' if args.folder_check_final_only else 'every step'}",  # noqa: E501
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cncwear-bench-curve-") as scratch:
        root = Path(scratch)
        data_dir = write_base(root / "base", base)
        settings = Settings(
            home=root / "home",
            data_dir=data_dir,
            redis_url=redis_url,
            n_jobs=1,
            budget=Budget.FAST,
            automl_engine=AutoMLEngineName.FLAML,
            retrain_after_runs=1,
        )
        folder_settings = settings.model_copy(
            update={"home": root / "folder-home", "model_name": "cncwear-folder-check"}
        )
        env = stack_env(settings)
        started = time.perf_counter()
        first_champion(env)
        print(f"first champion trained by `cncwear train` in {time.perf_counter() - started:.0f} s")
        results: list[Step] = []
        with (
            stack(env, root / "logs") as base_url,
            httpx.Client(base_url=base_url, timeout=60) as client,
        ):
            token = (settings.home / "api-token").read_text().strip()
            loop = Loop(
                client=client,
                headers={"Authorization": f"Bearer {token}"},
                settings=settings,
                bundled=bundled,
                active=bundled.active(),
                order=order,
                columns=list(client.get("/model").json()["input_columns"]),
                materials=materials,
            )
            print_header()
            results.append(observe(loop, 0, None, {}))
            print_step(results[-1])
            for index, experiment in enumerate(order[:steps], start=1):
                step = one_step(loop, index, experiment)
                check = not args.skip_folder_check and (
                    not args.folder_check_final_only or index == steps
                )
                if check and step.registered is not None and step.data_version is not None:
                    folder_check(settings, folder_settings, root, step, loop.active)
                results.append(step)
                print_step(step)
            overhead = measure_overhead(
                base_url, loop.active, loop.columns, rounds=rounds, seconds=round_seconds
            )
            serial = measure_overhead(
                base_url,
                loop.active,
                loop.columns,
                rounds=rounds,
                seconds=round_seconds,
                concurrency=1,
            )
        elapsed = time.perf_counter() - started
    print_summary(results, overhead, serial, elapsed, args.skip_folder_check)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "learning_curve.json"
    out.write_text(
        json.dumps(
            {
                "seed": SEED,
                "base": base,
                "order": order,
                "candidates": CANDIDATES,
                "budget": "fast",
                "steps": [asdict(s) for s in results],
                "overhead": asdict(overhead),
                "overhead_c1": asdict(serial),
                "seconds": elapsed,
            },
            indent=2,
        )
    )
    print(f"written to {out}")


def choose(labels: pd.Series, seed: int) -> tuple[list[int], list[int]]:
    """The base (``BASE_PER_LABEL`` experiments of each label) and the others in a shuffled
    order, both fixed by the seed."""
    rng = np.random.default_rng(seed)
    base: list[int] = []
    for label in sorted(labels.unique()):
        members = np.sort(labels.index[labels == label].to_numpy())
        base += [int(e) for e in rng.choice(members, size=BASE_PER_LABEL, replace=False)]
    others = [int(e) for e in labels.index if int(e) not in base]
    return sorted(base), [int(e) for e in rng.permutation(others)]


def write_base(folder: Path, experiments: list[int]) -> Path:
    """The chosen experiments as a folder in the bundled format: their ``train.csv`` rows and
    their files, read and written by pandas (uncompressed)."""
    folder.mkdir(parents=True)
    table = pd.read_csv(BUNDLED_DATA_DIR / "train.csv")
    table[table["No"].isin(experiments)].to_csv(folder / "train.csv", index=False)
    for number in experiments:
        raw = pd.read_csv(BUNDLED_DATA_DIR / f"experiment_{number:02d}.csv.xz")
        raw.to_csv(folder / f"experiment_{number:02d}.csv", index=False)
    return folder


def stack_env(settings: Settings) -> dict[str, str]:
    """The environment of every process the bench starts: the settings above, nothing inherited
    that could point them elsewhere. No CNCWEAR_API_TOKEN: the API writes its token file."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))},
        "CNCWEAR_HOME": str(settings.home),
        "CNCWEAR_DATA_DIR": str(settings.data_dir),
        "CNCWEAR_REDIS_URL": settings.redis_url,
        "CNCWEAR_N_JOBS": str(settings.n_jobs),
        "CNCWEAR_BUDGET": settings.budget.value,
        "CNCWEAR_AUTOML_ENGINE": settings.automl_engine.value,
        "CNCWEAR_RETRAIN_AFTER_RUNS": str(settings.retrain_after_runs),
        "CNCWEAR_LOG_LEVEL": "WARNING",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


def first_champion(env: dict[str, str]) -> None:
    command = [str(BIN / "cncwear"), "train", "--reason", "learning curve: base"]
    command += [part for name in CANDIDATES for part in ("--candidate", name)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cncwear train failed ({done.returncode}):\n{done.stderr[-3000:]}")


@contextmanager
def stack(env: dict[str, str], logs: Path) -> Iterator[str]:
    """A trainer worker and the API as processes; yields the API's URL once it is ready."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "worker": [str(BIN / "cncwear-trainer"), "worker", "--loglevel=WARNING"],
        "api": [str(BIN / "cncwear-api")],
    }
    processes = []
    for name, command in commands.items():
        with (logs / f"{name}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    command,
                    env={**env, "CNCWEAR_PORT": str(port), "CNCWEAR_HOST": "127.0.0.1"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while not ready(base_url):
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                raise SystemExit(f"the stack did not start:\n{tails(logs)}")
            time.sleep(0.5)
        yield base_url
    except BaseException:
        print(tails(logs), file=sys.stderr)
        raise
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def tails(logs: Path) -> str:
    return "\n".join(
        f"--- {path.name} (last lines)\n" + "\n".join(path.read_text().splitlines()[-30:])
        for path in sorted(logs.glob("*.log"))
    )


# -- one step ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loop:
    """What every step uses: the API, the settings of its home and the bundled experiments."""

    client: httpx.Client
    headers: dict[str, str]
    """The API token's header (``$CNCWEAR_HOME/api-token``)."""
    settings: Settings
    bundled: Dataset
    active: Dataset
    order: list[int]
    columns: list[str]
    """The champion's input columns: what a mill sends."""
    materials: dict[int, str]


@dataclass(frozen=True)
class Labelled:
    run: str
    experiment: int
    label: str
    record: dict[str, Any]
    """The run's record as the label answered it."""


def one_step(loop: Loop, index: int, experiment: int) -> Step:
    """Stream one experiment as a run, label it, follow the retrain it queues, then observe."""
    run = f"learning-curve/experiment-{experiment:02d}"
    rows = loop.bundled.rows[loop.bundled.rows[EXPERIMENT_COLUMN] == experiment]
    streaming = time.perf_counter()
    for start in range(0, len(rows), BATCH_ROWS):
        chunk = rows.iloc[start : start + BATCH_ROWS][loop.columns]
        data = chunk.astype(object).to_numpy().tolist()
        answer = loop.client.post(
            "/predict", json={"run": run, "columns": loop.columns, "data": data}
        )
        if answer.status_code != 200:
            raise SystemExit(f"/predict answered {answer.status_code}: {answer.text[:500]}")
    stream_seconds = time.perf_counter() - streaming
    label = loop.bundled.run_label(experiment, loop.materials.get(experiment, "wax")).as_dict()
    labelled_at, clock = time.time(), time.perf_counter()
    answer = loop.client.post(f"/runs/{run}/label", json=label, headers=loop.headers)
    if answer.status_code != 200:
        raise SystemExit(f"label answered {answer.status_code}: {answer.text[:500]}")
    record = answer.json()
    outcome: dict[str, Any] = {}
    if record["state"] == "accepted":
        outcome = follow_retrain(loop.client, labelled_at, clock)
    labelled = Labelled(run, experiment, str(label["tool_condition"]), record)
    step = observe(loop, index, labelled, outcome)
    step.stream_seconds = stream_seconds
    return step


def follow_retrain(client: httpx.Client, labelled_at: float, clock: float) -> dict[str, Any]:
    """The retrain the label queued: wait for it to end and, when its model was promoted, for the
    API to serve it. Seconds are counted from just before the label was sent."""
    deadline = time.monotonic() + JOB_APPEARS_SECONDS
    job: dict[str, Any] | None = None
    while job is None:
        jobs = client.get("/jobs", params={"limit": 5}).json()
        job = next((j for j in jobs if j["created_at"] >= labelled_at - 1.0), None)
        if job is None:
            if time.monotonic() > deadline:
                return {"job": "none queued"}
            time.sleep(0.2)
    deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
    while job["state"] not in ("succeeded", "failed"):
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job['job_id']} did not finish in {JOB_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.25)
        job = client.get(f"/jobs/{job['job_id']}").json()
    result = job.get("result") or {}
    if job["state"] == "failed":
        print(f"  retrain {job['job_id']} failed: {job.get('error')}", flush=True)
        return {"job": "failed"}
    if result.get("skipped"):
        return {"job": f"skipped: {result.get('reason')}"}
    version, promoted = str(result["version"]), bool(result.get("promoted"))
    outcome: dict[str, Any] = {
        "job": "succeeded",
        "registered": version,
        "promoted": promoted,
        "retrain_seconds": result.get("seconds"),
        "trained_on": result.get("data_version"),
    }
    if promoted:
        deadline = time.monotonic() + SERVED_TIMEOUT_SECONDS
        while str(client.get("/model").json()["version"]) != version:
            if time.monotonic() > deadline:
                raise SystemExit(f"version {version} was promoted but not served in time")
            time.sleep(0.1)
        outcome["served_seconds"] = time.perf_counter() - clock
    return outcome


def observe(loop: Loop, index: int, labelled: Labelled | None, outcome: dict[str, Any]) -> Step:
    """The step as the API shows it, and the served champion scored on the experiments not yet
    added."""
    client = loop.client
    model = client.get("/model").json()
    accepted = client.get("/runs", params={"state": "accepted", "limit": 1}).json()["total"]
    versions = client.get("/data/versions", params={"limit": 1}).json()
    unseen = loop.order[index:]
    accuracy, right = score_unseen(loop.settings, loop.active, unseen, str(model["version"]))
    registered = outcome.get("registered")
    if registered is not None and registered != str(model["version"]):
        registered_accuracy = score_unseen(loop.settings, loop.active, unseen, registered)[0]
    else:
        registered_accuracy = accuracy if registered is not None else None
    record = labelled.record if labelled is not None else {}
    return Step(
        step=index,
        run=None if labelled is None else labelled.run,
        experiment=None if labelled is None else labelled.experiment,
        label=None if labelled is None else labelled.label,
        state=record.get("state", "base"),
        reasons=list(record.get("reasons", [])),
        accepted_runs=int(accepted),
        data_version=outcome.get("trained_on") or (versions[0]["id"] if versions else None),
        job=outcome.get("job"),
        registered=outcome.get("registered"),
        promoted=bool(outcome.get("promoted")),
        champion=str(model["version"]),
        champion_data_version=model.get("data_version"),
        unseen_experiments=unseen,
        unseen_row_accuracy=accuracy,
        unseen_experiments_right=right,
        registered_unseen_row_accuracy=registered_accuracy,
        run_live_accuracy=(record.get("live") or {}).get("accuracy"),
        label_to_served_seconds=outcome.get("served_seconds"),
        retrain_seconds=outcome.get("retrain_seconds"),
    )


_scorers: dict[str, Any] = {}


def score_unseen(
    settings: Settings, active: Dataset, unseen: list[int], version: str
) -> tuple[float | None, int | None]:
    """Row accuracy (active cutting) and experiments right (majority vote) of the champion on the
    experiments not yet added, scored in this process the way ``cncwear predict`` scores (the
    version named: the champion the API serves, or a retrain's model that lost to it)."""
    if not unseen:
        return None, None
    scorer = _scorers.get(version)
    if scorer is None:
        scorer = load_scoring_model(ModelStore(settings), _model_version(settings, version))
        _scorers[version] = scorer
    rows = active.subset(unseen).rows
    probability = scorer.probability_worn(
        of_validated(rows[scorer.input_columns], scorer.input_columns)
    )
    evaluation = score_predictions(
        rows[LABEL_COLUMN].to_numpy(), probability, rows[EXPERIMENT_COLUMN].to_numpy()
    )
    return evaluation.accuracy, evaluation.experiments_right


def _model_version(settings: Settings, version: str) -> Any:
    return ModelStore(settings).client.get_model_version(settings.model_name, version)


# -- the folder check ---------------------------------------------------------------------------


def folder_check(
    settings: Settings, folder_settings: Settings, root: Path, step: Step, active: Dataset
) -> None:
    """Export the step's dataset version, train on the folder with ``retrain()`` in another home,
    and compare the two registered models' probabilities on every active row of the 18."""
    assert step.data_version is not None and step.registered is not None
    store = RunStore(settings)
    version = store.version(step.data_version)
    folder = export_folder(
        store, version, BaseData.load(settings), root / "folders" / f"step-{step.step:02d}"
    )
    chatter = io.StringIO()  # MLflow prints each registration; shown only if the retrain fails
    try:
        with redirect_stdout(chatter), redirect_stderr(chatter):
            report = retrain(
                folder_settings.model_copy(update={"data_dir": folder}),
                candidates=CANDIDATES,
                reason=f"learning curve: folder of step {step.step}",
            )
    except Exception:
        print(chatter.getvalue()[-3000:], file=sys.stderr)
        raise
    ours = ModelStore(settings).load_version(_model_version(settings, step.registered))
    theirs = ModelStore(folder_settings).load_version(
        _model_version(folder_settings, report.version)
    )
    rows = active.rows
    a = ours.pipeline.predict_proba(rows[list(ours.pipeline.feature_names_in_)])[:, 1]
    b = theirs.pipeline.predict_proba(rows[list(theirs.pipeline.feature_names_in_)])[:, 1]
    step.folder_max_abs_diff = float(np.max(np.abs(a - b)))
    trained_on = ModelStore(settings).client.get_model_version(settings.model_name, step.registered)
    step.folder_same_data = trained_on.tags.get("cncwear.data_hash") == report.data_hash


# -- the overhead of run ------------------------------------------------------------------------


def measure_overhead(
    base_url: str,
    active: Dataset,
    columns: list[str],
    *,
    rounds: int,
    seconds: float,
    concurrency: int = 8,
) -> Overhead:
    """p50 and p99 of 100-row ``/predict`` at c=8 with and without ``run``, alternating the two
    conditions round by round (each round its own run id, so no run nears its row cap)."""
    batch = active.rows.sample(n=BATCH_ROWS, random_state=SEED)[columns]
    data = batch.astype(object).to_numpy().tolist()
    overhead = Overhead(
        generator=load_tool(),
        concurrency=concurrency,
        rows=BATCH_ROWS,
    )
    print(
        f"\n/predict overhead of run: {BATCH_ROWS}-row batches at c={concurrency}, {rounds} "
        f"round(s) of {seconds:.0f} s per condition, alternating; {overhead.generator}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        url = f"{base_url}/predict"

        def body(name: str, run: str | None) -> Path:
            payload: dict[str, Any] = {"columns": columns, "data": data}
            if run is not None:
                payload["run"] = run
            path = Path(folder) / f"{name}.json"
            path.write_text(json.dumps(payload))
            return path

        load(url, body("warm-plain", None), concurrency, 2.0)
        load(url, body("warm-run", "bench-overhead/warm-up"), concurrency, 2.0)
        for number in range(rounds):
            conditions = ["without", "with"] if number % 2 == 0 else ["with", "without"]
            for condition in conditions:
                run = (
                    f"bench-overhead/c{concurrency}-round-{number}" if condition == "with" else None
                )
                measured = load(url, body(f"{condition}-{number}", run), concurrency, seconds)
                measured.update(round=number, run=condition == "with")
                overhead.rounds.append(measured)
                print(
                    f"  round {number} {condition:7} run: {measured['requests']:6d} requests  "
                    f"p50 {measured['p50_ms']:7.2f} ms  p99 {measured['p99_ms']:7.2f} ms  "
                    f"failed {measured['errors'] + measured['non_2xx']}",
                    flush=True,
                )

    def median(key: str, with_run: bool) -> float:
        return float(statistics.median(r[key] for r in overhead.rounds if r["run"] == with_run))

    overhead.p50_ms = {"with": median("p50_ms", True), "without": median("p50_ms", False)}
    overhead.p99_ms = {"with": median("p99_ms", True), "without": median("p99_ms", False)}
    overhead.p50_ratio = median("p50_ms", True) / median("p50_ms", False)
    overhead.p99_ratio = median("p99_ms", True) / median("p99_ms", False)
    return overhead


# -- printing -----------------------------------------------------------------------------------

HEADER = (
    f"{'step':>4}  {'run':28} {'state':9} {'accepted':>8}  {'dataset version':16}  "
    f"{'champion':>8}  {'unseen acc':>10}  {'unseen right':>12}  {'new model':>10}  "
    f"{'label->served':>15}  {'folder diff':>11}"
)


def print_header() -> None:
    print(f"\n{HEADER}\n{'-' * len(HEADER)}", flush=True)


def print_step(step: Step) -> None:
    print(step_line(step), flush=True)
    for reason in step.reasons:
        print(f"{'':6}rejected: {reason}", flush=True)
    if step.job not in (None, "succeeded"):
        print(f"{'':6}retrain: {step.job}", flush=True)


def step_line(step: Step) -> str:
    run = step.run or "(base only)"
    if step.label is not None:
        run = f"{run.removeprefix('learning-curve/')} ({step.label})"
    accuracy = "-" if step.unseen_row_accuracy is None else f"{step.unseen_row_accuracy:.3f}"
    right = (
        "-"
        if step.unseen_experiments_right is None
        else f"{step.unseen_experiments_right}/{len(step.unseen_experiments)}"
    )
    if step.label_to_served_seconds is not None:
        served = f"{step.label_to_served_seconds:.1f} s"
    elif step.registered is not None:
        served = f"v{step.registered} lost"
    elif step.state == "accepted":
        served = "no retrain"
    else:
        served = "-"
    diff = "-" if step.folder_max_abs_diff is None else f"{step.folder_max_abs_diff:.1e}"
    new = step.registered_unseen_row_accuracy
    new_model = "-" if new is None else f"{new:.3f}"
    champion = f"v{step.champion}" + ("*" if step.promoted else "")
    return (
        f"{step.step:>4}  {run:28} {step.state:9} {step.accepted_runs:>8}  "
        f"{step.data_version or '-':16}  {champion:>8}  {accuracy:>10}  {right:>12}  "
        f"{new_model:>10}  {served:>15}  {diff:>11}"
    )


def print_summary(
    steps: list[Step], overhead: Overhead, serial: Overhead, elapsed: float, skipped: bool
) -> None:
    print(
        f"\nsummary ({elapsed / 60:.1f} min in all). * = promoted at that step. unseen acc, unseen "
        f"right: the champion's row accuracy (rows of active cutting) and experiments right\n"
        f"(majority vote) on the experiments not yet added; new model: the unseen acc of the model "
        f"the step's retrain registered; 'vN lost' = registered, not promoted."
    )
    print(f"{HEADER}\n{'-' * len(HEADER)}")
    for step in steps:
        print(step_line(step))
    rejected = [s for s in steps if s.state == "rejected"]
    for step in rejected:
        print(f"  {step.run} rejected: {'; '.join(step.reasons)}")
    served = [s.label_to_served_seconds for s in steps if s.label_to_served_seconds is not None]
    if served:
        print(
            f"label -> new champion served: median {statistics.median(served):.1f} s, "
            f"max {max(served):.1f} s over {len(served)} promotion(s)"
        )
    diffs = [s for s in steps if s.folder_max_abs_diff is not None]
    if skipped:
        print("folder check: skipped (--skip-folder-check)")
    elif diffs:
        worst = max(s.folder_max_abs_diff or 0.0 for s in diffs)
        same = all(s.folder_same_data for s in diffs)
        print(
            f"{_mark(worst <= TOLERANCE and same)}  dataset version vs the same rows in a folder: "
            f"max abs diff of probabilities {worst:.1e} over {len(diffs)} retrain(s) "
            f"(tolerance {TOLERANCE:g}); same data hash: {same}"
        )
    if overhead.p50_ratio is not None and overhead.p99_ratio is not None:
        print(
            f"{_mark(overhead.p50_ratio <= 1.10)}  /predict p50 with run / without: "
            f"{overhead.p50_ratio:.3f} (target <= 1.10; {overhead.p50_ms['with']:.1f} ms vs "
            f"{overhead.p50_ms['without']:.1f} ms)\n"
            f"{_mark(overhead.p99_ratio <= 1.20)}  /predict p99 with run / without: "
            f"{overhead.p99_ratio:.3f} (target <= 1.20; {overhead.p99_ms['with']:.1f} ms vs "
            f"{overhead.p99_ms['without']:.1f} ms)\n      [{overhead.generator}, "
            f"c={overhead.concurrency}, {overhead.rows}-row batches, medians over rounds]"
        )
    if serial.p50_ratio is not None and serial.p99_ratio is not None:
        print(
            f"      for context, at c=1: p50 {serial.p50_ms['with']:.2f} ms with run vs "
            f"{serial.p50_ms['without']:.2f} ms without (ratio {serial.p50_ratio:.3f}); p99 "
            f"ratio {serial.p99_ratio:.3f}"
        )


def _mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


if __name__ == "__main__":
    main()
