"""The ``cncwear`` command line: train, and score a CSV of raw rows with the champion."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cncwear.core.choices import DEFAULT_CANDIDATES, Budget
from cncwear.core.errors import CncwearError, SchemaError
from cncwear.core.settings import get_settings
from cncwear.jobs.queue import make_celery
from cncwear.jobs.store import Job, JobState, JobStore, RetrainRequest
from cncwear.jobs.triggers import queue_if_new_data
from cncwear.registry.store import ModelStore
from cncwear.serving.batch import Rows, to_batch
from cncwear.serving.model import load_scoring_model
from cncwear.serving.scoring import labels

if TYPE_CHECKING:
    from cncwear.training.retrain import RetrainReport

app = typer.Typer(
    help="cncwear: tool-wear classification for CNC mills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.command()
def train(
    budget: Annotated[
        Budget | None, typer.Option(help="Search budget (default: CNCWEAR_BUDGET).")
    ] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            "-c",
            help="Candidate to train (repeatable): decision_tree, "
            "random_forest, automl, baseline. Default: the first three.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Training data folder (default: CNCWEAR_DATA_DIR).")
    ] = None,
    reason: Annotated[
        str, typer.Option(help="Why this retrain, recorded on the run.")
    ] = "on demand",
) -> None:
    """Train the candidates, log them to MLflow, register the best and promote it if it beats the
    champion on held-out experiments."""
    from cncwear.training.retrain import retrain  # noqa: PLC0415 (the training stack, FLAML: only here)

    settings = get_settings()
    with _progress_bar() as bar:
        task = bar.add_task("starting", total=100)
        report = retrain(
            settings,
            budget=budget,
            candidates=candidate or [c.value for c in DEFAULT_CANDIDATES],
            data_dir=data_dir,
            reason=reason,
            progress=lambda stage, percent: bar.update(task, description=stage, completed=percent),
        )
    _show_report(report)


@app.command()
def predict(
    rows: Annotated[
        Path, typer.Argument(help="CSV of raw sensor rows.", exists=True, dir_okay=False)
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Score a CSV of raw sensor rows with the champion: one class and wear probability per row."""
    champion = load_scoring_model(ModelStore(get_settings()))
    frame = pd.read_csv(rows, keep_default_na=False, dtype=str)
    probability = champion.probability_worn(to_batch(Rows.of_frame(frame), champion.input_columns))
    result = pd.DataFrame({"label": labels(probability), "probability_worn": probability})
    result.to_csv(output if output else sys.stdout, index=False)
    console.print(f"scored {len(result)} rows with {champion.name} version {champion.version}")


@app.command("retrain")
def queue_retrain(
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    budget: Annotated[Budget | None, typer.Option(help="Search budget.")] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Training data folder (under a data root).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why this retrain.")] = "on demand (cli)",
    if_new_data: Annotated[
        bool,
        typer.Option(
            help="Only when the data folder (--data-dir, default CNCWEAR_DATA_DIR) differs from "
            "the champion's training data (content hash); the reason is then 'new data'."
        ),
    ] = False,
) -> None:
    """Queue a retrain for the trainer workers (the same job as POST /retrain). A retrain already
    queued or running is returned instead of a second one."""
    settings = get_settings()
    jobs = JobStore(settings)
    if if_new_data:
        folder = None if data_dir is None else Path(data_dir)
        check = queue_if_new_data(settings, make_celery(settings), folder, budget=budget)
        if check.job is None:
            console.print(
                f"no new data: {check.data_dir} has the champion's training data "
                f"(hash {check.data_hash}); nothing queued"
            )
            return
        job, created = check.job, check.created
    else:
        request = RetrainRequest(budget=budget, data_dir=data_dir, reason=reason)
        job, created = jobs.enqueue(request, make_celery(settings))
    console.print(f"{'queued' if created else 'already queued or running'}: job {job.job_id}")
    if wait:
        job = _follow(jobs, job.job_id)
        if job.state is JobState.FAILED:
            console.print(f"[red]failed:[/red] {job.error}")
            raise SystemExit(1)
        result = job.result or {}
        verdict = "promoted" if result.get("promoted") else "not promoted"
        console.print(f"version {result.get('version')} {verdict}: {result.get('decision')}")


def _follow(jobs: JobStore, job_id: str) -> Job:
    with _progress_bar() as bar:
        task = bar.add_task("queued", total=100)
        while True:
            job = jobs.get(job_id)
            bar.update(task, description=job.stage or job.state.value, completed=job.percent or 0)
            if job.state in {JobState.SUCCEEDED, JobState.FAILED}:
                return job
            time.sleep(1.0)


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    )


def _show_report(report: RetrainReport) -> None:
    table = Table(
        title=f"Retrain {report.run_id} ({report.budget.value} budget, {report.seconds:.0f} s)"
    )
    for column in (
        "candidate",
        "grouped CV acc",
        "holdout acc",
        "holdout MCC",
        "ROC AUC",
        "experiments right",
        "leaky row-split acc",
        "fit s",
    ):
        table.add_column(column, justify="right" if column != "candidate" else "left")
    for c in report.candidates:
        if c.holdout is None:
            table.add_row(c.name, f"[red]failed: {c.error}[/red]", *[""] * 6)
            continue
        h = c.holdout
        table.add_row(
            c.name + (" *" if c.name == report.winner else ""),
            _fmt(c.cv_accuracy),
            _fmt(h.accuracy),
            _fmt(h.mcc),
            _fmt(h.roc_auc),
            f"{h.experiments_right}/{h.experiments}",
            f"{_fmt(c.leaky_accuracy)} (leaky)",
            f"{c.fit_seconds:.1f}",
        )
    console.print(table)
    console.print(
        f"held-out experiments: {report.split.holdout_experiments}; "
        f"winner: {report.winner}, registered as version {report.version}"
    )
    winner = next(c for c in report.candidates if c.name == report.winner)
    top = sorted(winner.importances.items(), key=lambda kv: -kv[1])[:5]
    console.print("features the winner leans on: " + ", ".join(f"{n} ({v:.2f})" for n, v in top))
    verdict = (
        "[green]promoted[/green]" if report.decision.promoted else "[yellow]not promoted[/yellow]"
    )
    console.print(f"{verdict}: {report.decision.reason}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SchemaError as error:
        console.print(f"[red]bad input:[/red] {error.total} problem(s)")
        for problem in error.problems[:50]:
            console.print(f"  {problem}")
        raise SystemExit(2) from None
    except CncwearError as error:
        console.print(f"[red]error:[/red] {error}")
        raise SystemExit(1) from None
