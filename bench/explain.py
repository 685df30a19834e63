"""Benchmark of per-row explanations: SHAP, LIME and anchors against the thesis's KernelExplainer.

Fits the two kinds of champion on the training experiments of the retrain's split (a 300-tree
random forest and a histogram gradient boosting, each inside the one feature pipeline), and, when
``--home`` holds one, also takes the registered champion. For each, it explains the same held-out
rows one at a time, as ``/explain`` would (a validated raw row in, an answer out), and prints the
median, p95 and max wall time per method against the issue's targets:

- SHAP (exact tree algorithm): at most 50 ms for gradient-boosted trees, 300 ms for forests;
- LIME: at most 1 s;
- anchors: at most 3 s median, with the hard cap (``CNCWEAR_EXPLAIN_ANCHOR_MAX_SECONDS`` and
  ``..._MAX_SAMPLES``) returning the best rule so far, marked partial;
- the thesis's approach, shap's KernelExplainer with 100 background rows on the estimator's
  ``predict_proba`` (timed on fewer rows: it takes seconds each), and the ratio to tree SHAP.

It also checks what the answers claim: SHAP's additivity (largest error), how many anchors were
partial or ended below their threshold, LIME's fit. The machine's load average is printed: the
machine is shared, and timings scale with it.

Usage: uv run python bench/explain.py [--rows 50] [--thesis-rows 10] [--home var]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shap
from sklearn.base import ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from cncwear.core.errors import NoChampionError
from cncwear.core.schema import input_columns, validate_rows
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.data.features import build_pipeline
from cncwear.data.profile import build_profile
from cncwear.explain import (
    AnchorExplanation,
    Explainers,
    ExplainMethod,
    LimeExplanation,
    ShapExplanation,
)
from cncwear.registry.store import ModelStore
from cncwear.training.evaluation import holdout_split

TARGETS = {
    ("forest", "shap"): 0.300,
    ("boosting", "shap"): 0.050,
    ("any", "lime"): 1.0,
    ("any", "anchor"): 3.0,
}
KERNEL_BACKGROUND_ROWS = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--thesis-rows", type=int, default=10)
    parser.add_argument("--home", type=Path, default=None, help="CNCWEAR_HOME with a champion")
    parser.add_argument("--output", type=Path, default=Path("bench/results/explain.json"))
    args = parser.parse_args()

    settings = Settings() if args.home is None else Settings(home=args.home)
    print(
        f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.2f}; anchor cap: "
        f"{settings.explain_anchor_max_seconds} s / {settings.explain_anchor_max_samples} rows; "
        f"LIME samples: {settings.explain_lime_samples}"
    )
    columns = input_columns(use_identifying_columns=False)
    dataset = load_dataset(settings.data_dir).active()
    split = holdout_split(dataset, settings.holdout_fraction, settings.seed)
    train = dataset.subset(split.train_experiments)
    held_out = dataset.subset(split.holdout_experiments)
    rows = validate_rows(
        held_out.rows[columns].sample(args.rows, random_state=settings.seed), columns
    )

    results: dict[str, Any] = {}
    fitted: list[tuple[str, str, ClassifierMixin]] = [
        (
            "random_forest_300",
            "forest",
            RandomForestClassifier(n_estimators=300, random_state=settings.seed, n_jobs=1),
        ),
        (
            "hist_gradient_boosting",
            "boosting",
            HistGradientBoostingClassifier(
                max_iter=100, early_stopping=False, random_state=settings.seed
            ),
        ),
    ]
    for name, kind, estimator in fitted:
        started = time.perf_counter()
        pipeline = build_pipeline(estimator, use_identifying_columns=False, seed=settings.seed)
        pipeline.fit(train.rows[columns], train.labels)
        profile = build_profile(
            pipeline,
            train.rows[columns],
            train.labels,
            pipeline.predict_proba(held_out.rows[columns])[:, 1],
        )
        print(f"\n{name}: fitted in {time.perf_counter() - started:.0f} s")
        results[name] = bench_model(
            name,
            kind,
            pipeline=pipeline,
            profile=profile,
            version="bench",
            rows=rows,
            settings=settings,
            args=args,
        )

    if args.home is not None:
        try:
            champion = ModelStore(settings).load_champion()
        except NoChampionError:
            print(f"\nno champion in {args.home}: skipped")
        else:
            estimator = type(champion.pipeline[-1]).__name__
            name = f"champion v{champion.version} ({estimator})"
            kind = "boosting" if "Boosting" in estimator else "forest"
            print(f"\n{name}")
            results[name] = bench_model(
                name,
                kind,
                pipeline=champion.pipeline,
                profile=champion.profile,
                version=champion.version,
                rows=rows,
                settings=settings,
                args=args,
            )

    print_summary(results)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    print(f"written to {args.output}")


def bench_model(
    name: str,
    kind: str,
    *,
    pipeline: Pipeline,
    profile: dict[str, Any],
    version: str,
    rows: pd.DataFrame,
    settings: Settings,
    args: argparse.Namespace,
) -> dict[str, Any]:
    explainers = Explainers.build(pipeline, profile, version, settings)
    print(
        f"  explainers built in {explainers.build_seconds:.2f} s: SHAP {explainers.shap.algorithm} "
        f"({explainers.shap.output_space}), sampling path {explainers.model.path}"
    )
    seconds: dict[str, list[float]] = {m.value: [] for m in ExplainMethod}
    additivity, anchors, lime_scores = [], [], []
    for i in range(len(rows)):
        row = rows.iloc[[i]]
        for method in ExplainMethod:
            started = time.perf_counter()
            answer = explainers.explain(row, method, validated=True)
            seconds[method.value].append(time.perf_counter() - started)
            if isinstance(answer, ShapExplanation):
                expected = explainers.shap.model_output(explainers.engineered(row, validated=True))
                total = answer.base_value + sum(c.contribution for c in answer.contributions)
                additivity.append(abs(total - float(expected[0])))
            elif isinstance(answer, AnchorExplanation):
                anchors.append(answer)
            elif isinstance(answer, LimeExplanation):
                lime_scores.append(answer.score)
    print(f"  peak memory of the process so far: {peak_mb():.0f} MB")

    started = time.perf_counter()
    view = explainers.global_view()
    global_seconds = time.perf_counter() - started

    thesis = kernel_explainer_seconds(explainers, rows.iloc[: args.thesis_rows])
    result = {
        "kind": kind,
        "estimator": type(pipeline[-1]).__name__,
        "features": len(explainers.reference.columns),
        "build_seconds": explainers.build_seconds,
        "seconds": {method: summary(values) for method, values in seconds.items()},
        "thesis_kernel_explainer": summary(thesis),
        "shap_additivity_max_error": max(additivity),
        "lime_median_score": float(np.median(lime_scores)),
        "anchor": {
            "partial": sum(a.partial for a in anchors),
            "stopped_by_time": sum(a.stopped_by == "time" for a in anchors),
            "stopped_by_samples": sum(a.stopped_by == "samples" for a in anchors),
            "meets_threshold": sum(a.meets_threshold for a in anchors),
            "median_precision": float(np.median([a.precision for a in anchors])),
            "median_coverage": float(np.median([a.coverage for a in anchors])),
            "median_conditions": float(np.median([len(a.conditions) for a in anchors])),
            "rows": len(anchors),
        },
        "global_view": {
            "seconds": global_seconds,
            "top_features": [f.feature for f in view.importance[:3]],
            "surrogate_fidelity": view.surrogate.fidelity_accuracy,
        },
        "peak_memory_mb": peak_mb(),
    }
    return result


def kernel_explainer_seconds(explainers: Explainers, rows: pd.DataFrame) -> list[float]:
    """The thesis's explainer: shap's KernelExplainer on the estimator's ``predict_proba`` with
    100 background rows, one row at a time, default number of samples."""
    estimator = explainers.pipeline[-1]
    columns = list(explainers.reference.columns)

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(estimator.predict_proba(pd.DataFrame(x, columns=columns)))

    background = explainers.reference.sample(KERNEL_BACKGROUND_ROWS, random_state=0).to_numpy()
    kernel = shap.KernelExplainer(predict, background)
    times = []
    for i in range(len(rows)):
        engineered = explainers.engineered(rows.iloc[[i]], validated=True).to_numpy()
        started = time.perf_counter()
        kernel.shap_values(engineered, silent=True)
        times.append(time.perf_counter() - started)
    return times


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "max": float(np.max(values)),
        "rows": len(values),
    }


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def target(kind: str, method: str) -> float:
    return TARGETS.get((kind, method), TARGETS.get(("any", method), float("nan")))


def print_summary(results: dict[str, Any]) -> None:
    print(f"\n{'model':<46} {'method':<8} {'median':>9} {'p95':>9} {'max':>9} {'target':>9}  rows")
    for name, result in results.items():
        kind = result["kind"]
        for method, stats in result["seconds"].items():
            goal = target(kind, method)
            within = stats["median"] <= goal and (method == "anchor" or stats["p95"] <= goal)
            verdict = "ok" if within else "MISSED"
            print(
                f"{name:<46} {method:<8} {ms(stats['median'])} {ms(stats['p95'])} "
                f"{ms(stats['max'])} {ms(goal)}  {stats['rows']}  {verdict}"
            )
        thesis = result["thesis_kernel_explainer"]
        ratio = thesis["median"] / result["seconds"]["shap"]["median"]
        print(
            f"{name:<46} {'thesis':<8} {ms(thesis['median'])} {ms(thesis['p95'])} "
            f"{ms(thesis['max'])} {'':>9}  {thesis['rows']}  KernelExplainer, 100 background "
            f"rows: {ratio:.0f}x tree SHAP's median"
        )
        anchor = result["anchor"]
        print(
            f"{'':<46} anchors: {anchor['partial']}/{anchor['rows']} partial "
            f"({anchor['stopped_by_time']} by time, {anchor['stopped_by_samples']} by samples), "
            f"{anchor['meets_threshold']}/{anchor['rows']} at or above the precision threshold; "
            f"median precision {anchor['median_precision']:.2f}, coverage "
            f"{anchor['median_coverage']:.2f}, {anchor['median_conditions']:.0f} condition(s)"
        )
        print(
            f"{'':<46} SHAP additivity: largest error {result['shap_additivity_max_error']:.1e}; "
            f"LIME median R2 {result['lime_median_score']:.2f}; global view "
            f"{result['global_view']['seconds']:.1f} s (surrogate fidelity "
            f"{result['global_view']['surrogate_fidelity']:.2f}); explainers built in "
            f"{result['build_seconds']:.1f} s; peak memory {result['peak_memory_mb']:.0f} MB"
        )


def ms(seconds: float) -> str:
    if np.isnan(seconds):
        return f"{'-':>9}"
    return f"{seconds * 1000:>6.0f} ms" if seconds < 10 else f"{seconds:>7.1f} s"


if __name__ == "__main__":
    main()
