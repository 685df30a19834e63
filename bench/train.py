"""Benchmark of a retrain: time and grouped quality against the thesis pipeline, in one run.

Prints, for the cncwear retrain at the chosen budget (``full`` by default) and for a
re-implementation of the thesis pipeline (the same features; its grids and search sizes: decision
tree 200 draws x 5 folds, random forest 10 draws x 3 folds, plain row-shuffled folds as in the
thesis), on the same cores:
- wall time per candidate and in total, and the ratio (target: cncwear at most 1/3 of the thesis);
- accuracy on the held-out experiments of the retrain's split (grouped), next to the leaky random
  80/20 row-split figure the thesis reported;
- leave-one-experiment-out (LOEO) accuracy of each winner's configuration: refitted on 17
  experiments and scored on the 18th, for all 18, pooled over rows with a 95% interval from
  resampling experiments, and the number of experiments right by majority vote.

The configurations are chosen inside the training experiments only (grouped CV, then the holdout);
LOEO refits them without looking at any score on the left-out experiment. The winner's
configuration was still chosen on a holdout made of experiments that LOEO later leaves out, so
``--nested`` also runs the whole retrain procedure (searches, holdout, choice of the winner) on
each 17 experiments and scores the 18th with what it chose: the estimate that shares nothing with
the experiment it scores (18 retrains; about 30 minutes on 2 cores at the full budget).

Usage: uv run python bench/train.py [--budget full|fast] [--skip-thesis] [--nested] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import KFold, RandomizedSearchCV
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.choices import DEFAULT_CANDIDATES, Budget
from cncwear.core.schema import EXPERIMENT_COLUMN
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset, load_dataset
from cncwear.data.features import build_pipeline
from cncwear.training.budget import BUDGETS
from cncwear.training.candidates import DECISION_TREE_GRID, RANDOM_FOREST_GRID, FitContext
from cncwear.training.evaluation import (
    bootstrap_over_experiments,
    evaluate,
    holdout_split,
    leaky_row_split_accuracy,
    score_predictions,
)
from cncwear.training.retrain import CandidateReport, choose_winner, make_candidate, retrain

THESIS_SEARCHES = {"decision_tree": (200, 5), "random_forest": (10, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=Budget, default=Budget.FULL)
    parser.add_argument("--skip-thesis", action="store_true")
    parser.add_argument("--nested", action="store_true", help="also the nested LOEO (slow)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("bench/results/train.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cncwear-bench-") as home:
        settings = Settings(home=Path(home), budget=args.budget, n_jobs=args.n_jobs)
        dataset = load_dataset(settings.data_dir).active()
        split = holdout_split(dataset, settings.holdout_fraction, settings.seed)
        print(f"held-out experiments: {split.holdout_experiments}; cores: {args.n_jobs}")

        report = retrain(settings, budget=args.budget, reason="benchmark")
        ours = {c.name: c for c in report.candidates}
        winner = ours[report.winner]
        assert winner.pipeline is not None and winner.holdout is not None
        result: dict[str, Any] = {
            "budget": args.budget.value,
            "cncwear": {
                "total_seconds": report.seconds,
                "candidates": {
                    c.name: {
                        "seconds": c.fit_seconds,
                        "holdout_accuracy": None if c.holdout is None else c.holdout.accuracy,
                        "leaky_row_split_accuracy": c.leaky_accuracy,
                        "params": c.params,
                    }
                    for c in report.candidates
                },
                "winner": report.winner,
                "loeo": loeo(winner.pipeline, dataset, seed=settings.seed),
            },
        }
        print_ours(result["cncwear"])
        if args.nested:
            result["cncwear"]["nested_loeo"] = nested_loeo(dataset, settings, args.budget)
            print_nested(result["cncwear"]["nested_loeo"])
        if not args.skip_thesis:
            result["thesis"] = thesis(dataset, split.train_experiments, settings, args.n_jobs)
            print_thesis(result["thesis"])
            ratio = result["cncwear"]["total_seconds"] / result["thesis"]["total_seconds"]
            result["time_ratio"] = ratio
            ours_loeo, thesis_loeo = result["cncwear"]["loeo"], result["thesis"]["loeo"]
            print(
                f"\ntime: cncwear {result['cncwear']['total_seconds']:.0f} s vs thesis "
                f"{result['thesis']['total_seconds']:.0f} s = {ratio:.2f}x (target <= 0.33)\n"
                f"LOEO row accuracy: cncwear {ours_loeo['accuracy']:.3f} vs thesis "
                f"{thesis_loeo['accuracy']:.3f}; experiments right: "
                f"{ours_loeo['experiments_right']}/18 vs {thesis_loeo['experiments_right']}/18"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwritten to {args.output}")


def loeo(pipeline: Pipeline, dataset: Dataset, *, seed: int) -> dict[str, Any]:
    """Refit a configuration on 17 experiments and score the 18th, for each experiment."""
    probability = np.empty(len(dataset.rows))
    started = time.perf_counter()
    for experiment in dataset.experiments:
        held = dataset.groups == experiment
        train = dataset.subset([e for e in dataset.experiments if e != experiment])
        model = clone(pipeline).fit(train.rows[list(pipeline.feature_names_in_)], train.labels)
        probability[held] = worn_probability(model, dataset.subset([experiment]))
    return loeo_summary(dataset, probability, seed=seed, started=started)


def nested_loeo(dataset: Dataset, settings: Settings, budget: Budget) -> dict[str, Any]:
    """The whole retrain procedure on 17 experiments (its own holdout split of them, searches,
    choice of the winner, without MLflow), scoring the 18th with the winner, for each experiment."""
    context = FitContext.from_settings(settings, BUDGETS[budget])
    probability = np.empty(len(dataset.rows))
    folds: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()
    for experiment in (int(e) for e in dataset.experiments):
        rest = dataset.subset([e for e in dataset.experiments if e != experiment])
        split = holdout_split(rest, settings.holdout_fraction, settings.seed)
        train = rest.subset(split.train_experiments)
        holdout = rest.subset(split.holdout_experiments)
        reports = []
        for name in DEFAULT_CANDIDATES:
            fitted = make_candidate(name, settings).fit(train, context)
            reports.append(
                CandidateReport(
                    name=name.value,
                    cv_accuracy=fitted.cv_accuracy,
                    holdout=evaluate(fitted.pipeline, holdout),
                    fit_seconds=fitted.fit_seconds,
                    pipeline=fitted.pipeline,
                )
            )
        winner = choose_winner(reports, settings.promotion_metric)
        assert winner.pipeline is not None
        probability[dataset.groups == experiment] = worn_probability(
            winner.pipeline, dataset.subset([experiment])
        )
        folds[experiment] = {
            "winner": winner.name,
            "seconds": {r.name: round(r.fit_seconds, 1) for r in reports},
        }
        print(f"  nested fold {experiment:>2}: {folds[experiment]}", flush=True)
    summary = loeo_summary(dataset, probability, seed=settings.seed, started=started)
    return {**summary, "folds": folds}


def worn_probability(model: Pipeline, dataset: Dataset) -> np.ndarray:
    rows = dataset.rows[list(model.feature_names_in_)]
    return np.asarray(model.predict_proba(rows)[:, 1])


def loeo_summary(
    dataset: Dataset, probability: np.ndarray, *, seed: int, started: float
) -> dict[str, Any]:
    groups = dataset.groups
    scores = score_predictions(dataset.labels, probability, groups)
    sizes = dataset.rows.groupby(EXPERIMENT_COLUMN).size()
    rows_per = dict(zip(sizes.index.astype(int).tolist(), sizes.tolist(), strict=True))
    interval = bootstrap_over_experiments(scores.per_experiment, rows_per, seed=seed)
    return {
        "accuracy": scores.accuracy,
        "interval_95": [interval.low, interval.high],
        "mean_of_experiments": float(np.mean(list(scores.per_experiment.values()))),
        "experiments_right": scores.experiments_right,
        "per_experiment": scores.per_experiment,
        "seconds": time.perf_counter() - started,
    }


def thesis(
    dataset: Dataset, train_experiments: list[int], settings: Settings, n_jobs: int
) -> dict[str, Any]:
    """The thesis's searches on the same training experiments, timed on the same cores. As in the
    thesis, the feature steps are fitted once before the searches, which tune the bare model."""
    train = dataset.subset(train_experiments)
    holdout = dataset.subset([e for e in dataset.experiments if e not in train_experiments])
    x = train.features(use_identifying_columns=False)
    found: dict[str, Any] = {}
    best_name, best_score, best_pipeline = "", -1.0, None
    total = 0.0
    for name, estimator in (
        ("decision_tree", DecisionTreeClassifier(random_state=settings.seed)),
        ("random_forest", RandomForestClassifier(random_state=settings.seed, n_jobs=1)),
    ):
        iterations, folds = THESIS_SEARCHES[name]
        grid = DECISION_TREE_GRID if name == "decision_tree" else RANDOM_FOREST_GRID
        started = time.perf_counter()
        pipeline = build_pipeline(estimator, use_identifying_columns=False, seed=settings.seed)
        engineered = pipeline[:-1].fit_transform(x, train.labels)
        search = RandomizedSearchCV(
            estimator,
            grid,
            n_iter=iterations,
            cv=KFold(folds, shuffle=True, random_state=settings.seed),
            scoring="accuracy",
            random_state=settings.seed,
            n_jobs=n_jobs,
        )
        search.fit(engineered, train.labels)
        seconds = time.perf_counter() - started
        total += seconds
        model = clone(pipeline).set_params(
            **{f"model__{k}": v for k, v in search.best_params_.items()}
        )
        model.fit(x, train.labels)
        found[name] = {
            "seconds": seconds,
            "search": f"{iterations} draws x {folds} folds",
            "own_cv_accuracy (leaky)": float(search.best_score_),
            "holdout_accuracy": evaluate(model, holdout).accuracy,
            "leaky_row_split_accuracy": leaky_row_split_accuracy(
                model, dataset, seed=settings.seed
            ),
            "params": search.best_params_,
        }
        if search.best_score_ > best_score:  # the thesis chose on its own (leaky) CV score
            best_name, best_score, best_pipeline = name, float(search.best_score_), model
    assert best_pipeline is not None
    return {
        "total_seconds": total,
        "candidates": found,
        "winner": best_name,
        "loeo": loeo(best_pipeline, dataset, seed=settings.seed),
    }


def print_ours(ours: dict[str, Any]) -> None:
    print(f"\ncncwear retrain: {ours['total_seconds']:.0f} s in total (with MLflow logging)")
    for name, c in ours["candidates"].items():
        print(
            f"  {name:<14} {c['seconds']:7.1f} s  holdout acc {c['holdout_accuracy']:.3f}  "
            f"leaky row-split acc {c['leaky_row_split_accuracy']:.3f}"
        )
    print_loeo(ours["winner"], ours["loeo"])


def print_thesis(found: dict[str, Any]) -> None:
    print(f"\nthesis pipeline: {found['total_seconds']:.0f} s in total (searches only)")
    for name, c in found["candidates"].items():
        print(
            f"  {name:<14} {c['seconds']:7.1f} s  ({c['search']})  holdout acc "
            f"{c['holdout_accuracy']:.3f}  leaky row-split acc {c['leaky_row_split_accuracy']:.3f}"
        )
    print_loeo(found["winner"], found["loeo"])


def print_nested(result: dict[str, Any]) -> None:
    print(f"\nnested LOEO: the whole retrain on each 17 experiments, {result['seconds']:.0f} s")
    winners = Counter(fold["winner"] for fold in result["folds"].values())
    print(f"  winners chosen: {dict(winners)}")
    print_loeo("of each fold", result)


def print_loeo(winner: str, result: dict[str, Any]) -> None:
    low, high = result["interval_95"]
    print(
        f"  winner {winner}: LOEO row accuracy {result['accuracy']:.3f} "
        f"(95% interval over experiments {low:.3f}-{high:.3f}), "
        f"{result['experiments_right']}/18 experiments right by majority vote"
    )
    wrong = {e: round(a, 2) for e, a in result["per_experiment"].items() if a <= 0.5}
    if wrong:
        print(f"  experiments wrong (row accuracy): {wrong}")


if __name__ == "__main__":
    main()
