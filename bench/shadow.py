"""What a challenger in shadow costs ``/predict``, and how fast labelled runs decide about one.

    uv run python bench/shadow.py [--seconds 8] [--rounds 5] [--run-rows 150] [--alpha 0.05]
                                  [--skip-cost] [--skip-replay]

On a fresh ``CNCWEAR_HOME`` (a temporary folder) it trains four models with the fast budget (as
``cncwear train --data-dir FOLDER -c random_forest --budget fast`` does, in this process), each on
a data folder of the bundled format holding the chosen experiments only:

- the champion: a random forest on :data:`CHAMPION_EXPERIMENTS` (6 experiments);
- **better**: a random forest on :data:`BETTER_EXPERIMENTS` (14);
- **equal**: the champion's configuration retrained on the champion's data;
- **worse**: the baseline candidate (``-c baseline``) on the champion's data.

The challengers are trained with a promotion margin no score can pass, so their retrains only
register them, and each is given the challenger alias by ``install_challenger`` under the
promotion lock (as ``tests/api/test_shadow_live.py`` does): the offline gate is not what is
measured here, the live decision is.

1. **Cost.** Two ``cncwear-api`` processes on the same registry and champion, each with a runs
   store of its own: one under ``CNCWEAR_PROMOTION_POLICY=shadow`` with the better challenger
   loaded, one ``offline`` (no challenger). Each takes ``/predict`` at concurrency 8 in rotating
   blocks of ``--seconds`` (``--rounds`` each, the order alternating so the machine's other work
   weighs on both alike); every request names a run (a new one each block), so its rows are
   stored and, on the shadow server, offered to the challenger. Reported: the median over blocks
   of p50 and p99, the ratios shadow/plain (targets: p50 at most 1.10, p99 at most 1.20), the
   share of rows the challenger scored at that load (``cncwear_shadow_rows_total``), and, measured
   in this process, what each step of a request and of the challenger's work takes.
2. **Replay.** For each challenger, a fresh ``cncwear-api`` under the shadow policy with the default
   ``CNCWEAR_SHADOW_MIN_RUNS`` and ``CNCWEAR_SHADOW_ALPHA`` (or ``--alpha``), the same champion (its
   alias put back before each replay) and a fresh runs store. The rows of :data:`REPLAY_EXPERIMENTS`
   (trained on by no model) are cut into consecutive runs of ``--run-rows`` rows (a shorter tail is
   dropped), interleaved round-robin across the experiments so that the labels mix; each run is sent
   through ``/predict`` with its run id, then labelled (``POST /runs/{run}/label``) with its
   experiment's label and settings, and ``GET /model/challenger`` says whether it is still in
   shadow. Reported: after how many labelled runs each challenger was promoted or rejected, or that
   it was left in shadow, with the last decision's tally and p-value; and each model's verdict on
   each whole replay experiment (the majority of its rows' predictions).

Caveat: runs cut from one experiment are correlated (the same tool, part and settings; a model
that gets one wrong tends to get all of them wrong), so the McNemar p-value over them is
optimistic: it counts as independent what is closer to 4 observations, one per experiment (and 4
cannot decide: 4 wins of 4 give p = 0.125). The figures say how the decision machinery behaves on
real rows, not that a decision taken on them has the confidence its p-value claims.

Uses the Redis at CNCWEAR_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14, flushed) for the
promotion announcements.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import redis
from learning_curve import write_base
from loadgen import free_port, load, load_tool, ready
from prometheus_client.parser import text_string_to_metric_families
from scipy.stats import binomtest

from cncwear.core.choices import Budget
from cncwear.core.schema import EXPERIMENT_COLUMN, THRESHOLD, input_columns
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.data.runs.store import RunStore
from cncwear.monitoring.shadow import majority_verdict
from cncwear.registry.challenger import install_challenger
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.batch import to_batch
from cncwear.training.retrain import retrain
from cncwear_api.schemas.predict import PredictRequest
from cncwear_api.serving.holder import load_served_model

BIN = Path(sys.executable).parent
TOKEN = "bench-shadow-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONCURRENCY = 8
P50_TARGET, P99_TARGET = 1.10, 1.20

# The split was fixed by a seeded rule before any result was seen; it is not to be tuned.
CHAMPION_EXPERIMENTS = [5, 11, 12, 14, 16, 18]
BETTER_EXPERIMENTS = [1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15, 16, 18]
REPLAY_EXPERIMENTS = [2, 7, 13, 17]
"""Trained on by no model."""

COLUMNS = input_columns(use_identifying_columns=False)


@dataclass(frozen=True)
class Run:
    id: str
    experiment: int
    rows: pd.DataFrame
    label: dict[str, Any]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per load block")
    parser.add_argument("--rounds", type=int, default=5, help="load blocks per server")
    parser.add_argument("--rows", type=int, default=10, help="rows per /predict under load")
    parser.add_argument("--run-rows", type=int, default=150, help="rows per replayed run")
    parser.add_argument("--batch-rows", type=int, default=50, help="rows per replayed request")
    parser.add_argument(
        "--alpha",
        type=float,
        default=Settings.model_fields["shadow_alpha"].default,
        help="CNCWEAR_SHADOW_ALPHA of the replay (default: the setting's default)",
    )
    parser.add_argument("--skip-cost", action="store_true", help="no latency measurement")
    parser.add_argument("--skip-replay", action="store_true", help="no labelled-run replay")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers too
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    redis_url = os.environ.get("CNCWEAR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    redis.Redis.from_url(redis_url).flushdb()
    started = time.perf_counter()
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
        "(shared with other work: read ratios, not absolute times)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cncwear-bench-shadow-") as home:
        settings = Settings(
            home=Path(home), redis_url=redis_url, budget=Budget.FAST, shadow_alpha=args.alpha
        )
        models = train_models(settings)
        if not args.skip_cost:
            cost(args, settings, models)
        if not args.skip_replay:
            replay(args, settings, models)
    print(f"bench/shadow.py took {time.perf_counter() - started:.0f} s", flush=True)


# -- the models ------------------------------------------------------------------------------------


def train_models(settings: Settings) -> dict[str, str]:
    """Train the champion and the three challengers; their versions by role."""
    folders = settings.home / "data"
    champion_data = write_base(folders / "champion", CHAMPION_EXPERIMENTS)
    better_data = write_base(folders / "better", BETTER_EXPERIMENTS)
    register_only = settings.model_copy(update={"promotion_margin": 1.0})
    plan = [
        ("champion", settings, champion_data, "random_forest"),
        ("better", register_only, better_data, "random_forest"),
        ("equal", register_only, champion_data, "random_forest"),
        ("worse", register_only, champion_data, "baseline"),
    ]
    versions: dict[str, str] = {}
    log = settings.home / "training.log"
    print("training (fast budget, this process):", flush=True)
    for role, used, folder, candidate in plan:
        started = time.perf_counter()
        with log.open("a") as out, redirect_stdout(out), redirect_stderr(out):  # MLflow's chatter
            report = retrain(
                used,
                budget=Budget.FAST,
                candidates=[candidate],
                data_dir=folder,
                reason=f"bench/shadow.py: {role}",
            )
        versions[role] = report.version
        experiments = ",".join(str(e) for e in sorted(load_dataset(folder).experiments))
        print(
            f"  {role:8} version {report.version}: {candidate} on experiments [{experiments}], "
            f"{report.decision.outcome} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    store = ModelStore(settings)
    champion = store.champion_version()
    assert champion is not None and str(champion.version) == versions["champion"]
    return versions


def put_in_shadow(settings: Settings, champion: str, challenger: str) -> None:
    """The champion alias back on ``champion`` (a replay may have promoted its challenger) and
    ``challenger`` in shadow, under the promotion lock."""
    store = ModelStore(settings)
    with store.promotion_lock():
        store.set_champion(champion)
        if store.challenger_version() is not None:
            store.remove_challenger()
        install_challenger(store, challenger, "challenger: awaiting live evidence; bench/shadow.py")


# -- the servers -----------------------------------------------------------------------------------


@contextmanager
def api(settings: Settings, name: str, **env: str) -> Iterator[httpx.Client]:
    """A ``cncwear-api`` process on ``settings``' registry with a runs store of its own; yields a
    client on it once it is ready (and, under the shadow policy, has the challenger loaded)."""
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))},
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "CNCWEAR_HOME": str(settings.home),
        "CNCWEAR_REDIS_URL": settings.redis_url,
        "CNCWEAR_PORT": str(port),
        "CNCWEAR_HOST": "127.0.0.1",
        "CNCWEAR_API_TOKEN": TOKEN,
        "CNCWEAR_LOG_LEVEL": "WARNING",
        "CNCWEAR_RETRAIN_AFTER_RUNS": "0",
        "CNCWEAR_DATA_STORE_URL": f"sqlite:///{settings.home / f'runs-{name}.db'}",
        **env,
    }
    log = settings.home / f"api-{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "cncwear-api")],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base_url, timeout=60.0)
    try:
        deadline = time.monotonic() + 300
        shadow = environment.get("CNCWEAR_PROMOTION_POLICY") == "shadow"
        while not (ready(base_url) and (not shadow or challenger_loaded(client))):
            if process.poll() is not None:
                raise SystemExit(f"{name}: the API exited with {process.returncode}: see {log}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the API was not ready in 300 s")
            time.sleep(0.5)
        yield client
    finally:
        client.close()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def challenger_loaded(client: httpx.Client) -> bool:
    answer = client.get("/model/challenger")
    return answer.status_code == 200 and bool(answer.json().get("loaded"))


def metrics(client: httpx.Client) -> dict[str, float]:
    """/metrics, one value per series, keyed by name and sorted labels."""
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for s in family.samples
    }


def shadow_rows(client: httpx.Client) -> dict[str, float]:
    found = metrics(client)
    return {
        outcome: found.get(f"cncwear_shadow_rows_total[('outcome', '{outcome}')]", 0.0)
        for outcome in ("scored", "dropped", "failed")
    }


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.astype(object).to_dict("records")  # type: ignore[return-value]


# -- 1. the cost on /predict -----------------------------------------------------------------------


def cost(args: argparse.Namespace, settings: Settings, models: dict[str, str]) -> None:
    put_in_shadow(settings, models["champion"], models["better"])
    rows = load_dataset(settings.data_dir).rows
    sample = rows[rows[EXPERIMENT_COLUMN] == REPLAY_EXPERIMENTS[0]][COLUMNS].head(args.rows)
    bodies = settings.home / "bodies"
    bodies.mkdir()

    def body(server: str, block: int) -> Path:
        """A body naming a run of its own: each block appends to a new run."""
        path = bodies / f"{server}-{block}.json"
        run = f"bench/shadow-cost/{server}-{block}-{uuid.uuid4().hex[:6]}"
        path.write_text(json.dumps({"rows": records(sample), "run": run}))
        return path

    print(
        f"\n1. cost: /predict at concurrency {CONCURRENCY}, {args.rows} rows a request naming a "
        f"run, {args.rounds} rotating blocks of {args.seconds:g} s per server ({load_tool()}); "
        f"champion version {models['champion']}, challenger version {models['better']}",
        flush=True,
    )
    with (
        api(settings, "plain", CNCWEAR_PROMOTION_POLICY="offline") as plain,
        api(settings, "shadow", CNCWEAR_PROMOTION_POLICY="shadow") as shadow,
    ):
        clients = {"plain": plain, "shadow": shadow}
        for name, client in clients.items():  # warm up both, unmeasured
            load(f"{client.base_url}/predict", body(name, -1), CONCURRENCY, 2)
        before = shadow_rows(shadow)
        blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        names = list(clients)
        for block in range(args.rounds):
            for name in names[block % 2 :] + names[: block % 2]:
                url = f"{clients[name].base_url}/predict"
                blocks[name].append(load(url, body(name, block), CONCURRENCY, args.seconds))
            print(
                f"  block {block + 1}: p50/p99 ms "
                + ", ".join(
                    f"{name} {blocks[name][-1]['p50_ms']:.2f}/{blocks[name][-1]['p99_ms']:.2f}"
                    for name in names
                ),
                flush=True,
            )
        time.sleep(2.0)  # the challenger's queue drains
        after = shadow_rows(shadow)
    summary = {
        name: {
            "p50_ms": statistics.median(b["p50_ms"] for b in measured),
            "p99_ms": statistics.median(b["p99_ms"] for b in measured),
            "requests": sum(b["requests"] for b in measured),
            "seconds": sum(b["seconds"] for b in measured),
            "failed": sum(b["errors"] + b["non_2xx"] for b in measured),
        }
        for name, measured in blocks.items()
    }
    for name, s in summary.items():
        print(
            f"  {name:6}: p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms (medians over "
            f"blocks)  {s['requests'] / s['seconds']:6.1f} requests/s  failed {s['failed']}"
        )
    for what, target in (("p50", P50_TARGET), ("p99", P99_TARGET)):
        ratio = summary["shadow"][f"{what}_ms"] / summary["plain"][f"{what}_ms"]
        mark = "ok" if ratio <= target else "OVER"
        print(f"  {what} shadow/plain: {ratio:.3f} (target at most {target:.2f})  {mark}")
    steps = in_process(settings, models, sample)
    print(f"  in this process, median per request of {args.rows} rows (what each server adds):")
    for what, seconds in steps.items():
        print(f"    {what:66} {seconds * 1e6:6.0f} us")
    counted = {outcome: after[outcome] - before[outcome] for outcome in after}
    offered = sum(counted.values())
    share = counted["scored"] / offered if offered else float("nan")
    print(
        f"  rows the challenger scored at that load: {share:.1%} of {offered:.0f} offered "
        f"(scored {counted['scored']:.0f}, dropped {counted['dropped']:.0f}, "
        f"failed {counted['failed']:.0f})",
        flush=True,
    )


def in_process(
    settings: Settings, models: dict[str, str], sample: pd.DataFrame, requests: int = 300
) -> dict[str, float]:
    """Median seconds per request of each step, in this process on a runs store of its own: the
    plain server's work (validate and predict, store the rows with the run) and what the shadow
    adds off the request path (the challenger's prediction, its scores kept with the run)."""
    store = ModelStore(settings)
    champion, challenger = (
        load_served_model(store, store.client.get_model_version(settings.model_name, models[r]))
        for r in ("champion", "better")
    )
    runs = RunStore(
        settings.model_copy(
            update={"data_store_url": f"sqlite:///{settings.home / 'runs-in-process.db'}"}
        )
    )
    body = {"rows": records(sample), "run": "bench/shadow-in-process"}
    times: dict[str, list[float]] = {what: [] for what in STEPS}
    for i in range(requests):
        marks = [time.perf_counter()]
        batch = to_batch(PredictRequest.model_validate(body), champion.input_columns)
        probability = champion.probability_worn(batch)
        marks.append(time.perf_counter())
        runs.append(
            "bench/shadow-in-process",
            batch,
            input_columns=champion.input_columns,
            probability=probability,
            model_version=champion.version,
            request_id=f"in-process-{i}",
        )
        marks.append(time.perf_counter())
        scores = challenger.probability_worn(batch)
        marks.append(time.perf_counter())
        runs.record_shadow("bench/shadow-in-process", challenger.version, i * len(sample), scores)
        marks.append(time.perf_counter())
        for what, start, end in zip(STEPS, marks[:-1], marks[1:], strict=True):
            times[what].append(end - start)
    return {what: statistics.median(values) for what, values in times.items()}


STEPS = (
    "champion: validate and predict (both servers)",
    "rows stored with the run (both servers)",
    "challenger: predict (shadow only, its thread)",
    "challenger's scores stored with the run (shadow only, its thread)",
)


# -- 2. the replay of labelled runs ----------------------------------------------------------------


def replay_runs(settings: Settings, run_rows: int) -> list[Run]:
    """The replay experiments cut into consecutive runs of ``run_rows`` rows (a shorter tail
    dropped), interleaved round-robin across the experiments."""
    dataset = load_dataset(settings.data_dir)
    rows = dataset.rows
    cut: list[list[Run]] = []
    for experiment in REPLAY_EXPERIMENTS:
        own = rows[rows[EXPERIMENT_COLUMN] == experiment]
        label = dataset.run_label(experiment).as_dict()
        runs = [
            Run(
                id=f"bench/shadow/e{experiment:02d}-r{i:02d}",
                experiment=experiment,
                rows=own[COLUMNS].iloc[start : start + run_rows],
                label=label,
            )
            for i, start in enumerate(range(0, len(own) - run_rows + 1, run_rows))
        ]
        cut.append(runs)
    longest = max(len(runs) for runs in cut)
    return [runs[i] for i in range(longest) for runs in cut if i < len(runs)]


def replay(args: argparse.Namespace, settings: Settings, models: dict[str, str]) -> None:
    runs = replay_runs(settings, args.run_rows)
    by_experiment = {e: sum(r.experiment == e for r in runs) for e in REPLAY_EXPERIMENTS}
    print(
        f"\n2. replay: {len(runs)} labelled runs of {args.run_rows} rows from experiments "
        f"{REPLAY_EXPERIMENTS} (runs each: {by_experiment}), round-robin; "
        f"CNCWEAR_PROMOTION_POLICY=shadow, CNCWEAR_SHADOW_MIN_RUNS={settings.shadow_min_runs}, "
        f"CNCWEAR_SHADOW_ALPHA={settings.shadow_alpha}, CNCWEAR_SHADOW_MAX_AGE_SECONDS="
        f"{settings.shadow_max_age_seconds:.0f}; champion version {models['champion']}",
        flush=True,
    )
    for role in ("better", "equal", "worse"):
        put_in_shadow(settings, models["champion"], models[role])
        started = time.perf_counter()
        with api(
            settings,
            f"replay-{role}",
            CNCWEAR_PROMOTION_POLICY="shadow",
            CNCWEAR_SHADOW_ALPHA=str(settings.shadow_alpha),
        ) as client:
            outcome = replay_one(client, settings, models[role], runs, args.batch_rows)
        seconds = time.perf_counter() - started
        print(f"  {role:6} (version {models[role]}, {seconds:.0f} s): {outcome}", flush=True)
    verdicts = by_experiment_verdicts(settings, models)
    print(
        "  caveat: runs cut from one experiment are correlated, so these p-values are "
        f"optimistic; the honest unit is the experiment ({len(REPLAY_EXPERIMENTS)} here, where "
        f"even {len(REPLAY_EXPERIMENTS)} wins of {len(REPLAY_EXPERIMENTS)} give McNemar p = "
        f"{binomtest(len(REPLAY_EXPERIMENTS), len(REPLAY_EXPERIMENTS)).pvalue:.3g}). "
        "By experiment (the majority of all its rows' predictions):",
        flush=True,
    )
    for role, right in verdicts.items():
        marks = ", ".join(f"{e}: {'right' if ok else 'wrong'}" for e, ok in right.items())
        print(
            f"    {role:8} (version {models[role]}) {sum(right.values())} of {len(right)} right "
            f"({marks})"
        )


def by_experiment_verdicts(
    settings: Settings, models: dict[str, str]
) -> dict[str, dict[int, bool]]:
    """Whether each model's majority verdict on each replay experiment, all its rows, is right."""
    rows = load_dataset(settings.data_dir).rows
    store = ModelStore(settings)
    found: dict[str, dict[int, bool]] = {}
    for role, version in models.items():
        served = load_served_model(
            store, store.client.get_model_version(settings.model_name, version)
        )
        found[role] = {}
        for experiment in REPLAY_EXPERIMENTS:
            own = rows[rows[EXPERIMENT_COLUMN] == experiment]
            batch = to_batch(PredictRequest(rows=records(own[COLUMNS])), served.input_columns)
            predicted = (served.probability_worn(batch) >= THRESHOLD).astype(int)
            found[role][experiment] = majority_verdict(predicted) == int(own["label"].iloc[0])
    return found


def replay_one(
    client: httpx.Client, settings: Settings, version: str, runs: list[Run], batch_rows: int
) -> str:
    """Stream and label ``runs`` until the challenger leaves the shadow; what became of it."""
    evidence: dict[str, Any] | None = None
    for count, run in enumerate(runs, start=1):
        for start in range(0, len(run.rows), batch_rows):
            batch = run.rows.iloc[start : start + batch_rows]
            answer = client.post("/predict", json={"rows": records(batch), "run": run.id})
            if answer.status_code != 200:
                raise SystemExit(f"/predict answered {answer.status_code}: {answer.text[:300]}")
        labelled = client.post(f"/runs/{run.id}/label", json=run.label, headers=AUTH)
        if labelled.status_code != 200:
            raise SystemExit(f"label answered {labelled.status_code}: {labelled.text[:300]}")
        shown = client.get("/model/challenger")
        if shown.status_code == 200:
            evidence = shown.json().get("evidence") or evidence
            continue
        tags = ModelStore(settings).version_tags(version)
        return (
            f"{tags.get(Tag.SHADOW_STATE, '?')} after {count} labelled runs: "
            f"{tags.get(Tag.SHADOW_REASON, '?')}"
        )
    if evidence is None:
        return f"left in shadow after {len(runs)} runs, no decision shown"
    return (
        f"left in shadow after {len(runs)} labelled runs: {evidence['runs']} compared "
        f"({evidence['runs_by_label']}), challenger wins {evidence['challenger_wins']}, "
        f"champion wins {evidence['champion_wins']}, McNemar p = {evidence['p_value']:.4g}; "
        f"row accuracy champion {share(evidence['champion_accuracy'])}, challenger "
        f"{share(evidence['challenger_accuracy'])}, agreement {share(evidence['agreement'])}"
    )


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
