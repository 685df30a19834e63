"""Benchmark of the AutoML engines: auto-sklearn (in its sidecar) and FLAML, same budget, real data.

Each engine runs the AutoML candidate exactly as a retrain does: on the retrain's training
experiments (holdout split of ``CNCWEAR_SEED``), engineered features of every ``--stride``-th row
for the search, grouped folds, the same seed; auto-sklearn gets ``--seconds``, FLAML the full
budget's number of trials (``--flaml-iterations`` to change it), and both are timed; then the
configuration it found is refit inside the feature pipeline on all training rows. Printed for each
engine:

- grouped accuracy of the refit pipeline: rows of the held-out experiments, and experiments right
  by majority vote;
- the engine's own validation score (grouped cross-validation inside the training experiments) and,
  for auto-sklearn, the rebuilt estimator's score on the same folds;
- wall time of the candidate (search, rebuild, refit) and peak memory: the largest resident set of
  the engine's whole process tree (the sidecar and auto-sklearn's workers included), sampled.

Each engine runs in a fresh process, one after the other, so their memory does not mix.

Usage: uv run python bench/automl.py [--seconds 120] [--flaml-iterations 500] [--stride 4]
       [--n-jobs 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cncwear.core.choices import Budget
from cncwear.training.budget import BUDGETS

ENGINES = ("auto-sklearn", "flaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="auto-sklearn's budget")
    parser.add_argument(
        "--flaml-iterations",
        type=int,
        default=BUDGETS[Budget.FULL].flaml_iterations,
        help="FLAML's trials",
    )
    parser.add_argument("--stride", type=int, default=4, help="search rows: every n-th row")
    parser.add_argument("--n-jobs", type=int, default=1, help="auto-sklearn's parallel runs")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--output", type=Path, default=Path("bench/results/automl.json"))
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(
            json.dumps(
                run_engine(
                    args.worker, args.seconds, args.flaml_iterations, args.stride, args.n_jobs
                )
            )
        )
        return

    results: dict[str, Any] = {
        "seconds": args.seconds,
        "flaml_iterations": args.flaml_iterations,
        "stride": args.stride,
        "engines": {},
    }
    for engine in args.engines:
        print(f"running {engine} ...", file=sys.stderr, flush=True)
        results["engines"][engine] = measured(
            [
                *(sys.executable, __file__, "--worker", engine),
                *("--seconds", str(args.seconds), "--stride", str(args.stride)),
                *("--n-jobs", str(args.n_jobs)),
                *("--flaml-iterations", str(args.flaml_iterations)),
            ]
        )
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten to {args.output}")


def run_engine(
    name: str, seconds: float, flaml_iterations: int, stride: int, n_jobs: int
) -> dict[str, Any]:
    """One engine, as the AutoML candidate of a retrain runs it (in this worker process)."""
    import logging

    from cncwear.core.choices import AutoMLEngineName
    from cncwear.core.settings import Settings
    from cncwear.data.dataset import load_dataset
    from cncwear.training.automl.engines import get_engine
    from cncwear.training.candidates import AutoMLCandidate, FitContext
    from cncwear.training.evaluation import evaluate, holdout_split

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cncwear-bench-automl-") as home:
        settings = Settings(home=Path(home), n_jobs=n_jobs)
        dataset = load_dataset(settings.data_dir).active()
        split = holdout_split(dataset, settings.holdout_fraction, settings.seed)
        train = dataset.subset(split.train_experiments)
        holdout = dataset.subset(split.holdout_experiments)
        budget = replace(
            BUDGETS[Budget.FULL],
            autosklearn_seconds=seconds,
            flaml_iterations=flaml_iterations,
            search_row_stride=stride,
        )
        context = FitContext.from_settings(settings, budget)
        candidate = AutoMLCandidate(engine=get_engine(AutoMLEngineName(name), settings))
        started = time.perf_counter()
        fitted = candidate.fit(train, context)
        seconds_taken = time.perf_counter() - started
        scores = evaluate(fitted.pipeline, holdout)
    details = fitted.details
    return {
        "engine": details["engine"],
        "engine_version": details["engine_version"],
        "holdout_experiments": split.holdout_experiments,
        "holdout_accuracy": scores.accuracy,
        "holdout_experiments_right": f"{scores.experiments_right}/{scores.experiments}",
        "engine_validation_accuracy": details["engine_validation_accuracy"],
        "rebuilt_cv_accuracy": details.get("rebuilt_cv_accuracy"),
        "wall_seconds": seconds_taken,
        "model": type(fitted.pipeline[-1]).__name__,
        "rebuilt_estimator": details.get("rebuilt_estimator"),
        "configuration": details["configuration"],
        "trials": details.get("trials"),
        "statuses": details.get("statuses"),
        "budget_seconds": details.get("budget_seconds"),
    }


def measured(command: list[str]) -> dict[str, Any]:
    """Run a worker, sampling the resident memory of its whole process tree."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        return {"error": f"worker exited with {process.returncode}"}
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - started
    result["peak_memory_mb"] = peak / 2**20
    return result


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        pid = int(status.parent.name)
        parents[pid] = int(fields.get("PPid", "0").strip())
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        frontier = [pid for pid in children if pid not in tree]
        tree.update(frontier)
    return sum(rss.get(pid, 0) for pid in tree)


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\nAutoML engines: auto-sklearn {results['seconds']:.0f} s, FLAML "
        f"{results['flaml_iterations']} trials; search on every {results['stride']}th training "
        "row, grouped folds; refit on all training rows"
    )
    header = (
        f"{'engine':<22} {'holdout acc':>11} {'exp. right':>10} {'engine CV':>9} "
        f"{'rebuilt CV':>10} {'wall s':>7} {'peak MB':>8}  model"
    )
    print(header)
    print("-" * len(header))
    for name, r in results["engines"].items():
        if "error" in r:
            print(f"{name:<22} {r['error']}")
            continue
        rebuilt = r["rebuilt_cv_accuracy"]
        print(
            f"{name + ' ' + r['engine_version']:<22} {r['holdout_accuracy']:>11.3f} "
            f"{r['holdout_experiments_right']:>10} {r['engine_validation_accuracy']:>9.3f} "
            f"{'-' if rebuilt is None else f'{rebuilt:.3f}':>10} {r['wall_seconds']:>7.0f} "
            f"{r['peak_memory_mb']:>8.0f}  {describe(r)}"
        )
    print(
        "\nholdout acc: rows of the held-out experiments; exp. right: by majority vote; engine CV: "
        "the engine's own grouped validation score; rebuilt CV: the rebuilt estimator on "
        "auto-sklearn's folds"
    )


def describe(result: dict[str, Any]) -> str:
    configuration = result["configuration"]
    if "classifier:__choice__" in configuration:
        rescaling = configuration.get(
            "data_preprocessor:feature_type:numerical_transformer:rescaling:__choice__"
        )
        return (
            f"{configuration['classifier:__choice__']} (rescaling {rescaling}, "
            f"{configuration.get('feature_preprocessor:__choice__')}, balancing "
            f"{configuration.get('balancing:strategy')}); {result['trials']} evaluations "
            f"{result['statuses']}"
        )
    return f"{configuration.get('estimator')} ({result['model']})"


if __name__ == "__main__":
    main()
