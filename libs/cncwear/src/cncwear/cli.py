"""The ``cncwear`` command line: train, score a CSV of raw rows with the champion, and manage the
labelled runs (``cncwear runs``) and the dataset versions made of them (``cncwear data``).

The runs' commands talk to the runs' store directly through the library, the same code path as the
API's routes: the same validation, the same store, the same retrain trigger."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import httpx
import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cncwear.core.choices import DEFAULT_CANDIDATES, Budget
from cncwear.core.errors import (
    CncwearError,
    DataVersionNotFoundError,
    InvalidRunIdError,
    Problem,
    QueueUnavailableError,
    RunClosedError,
    RunNotFoundError,
    SchemaError,
)
from cncwear.core.schema import input_columns
from cncwear.core.settings import Settings, get_settings
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.ids import RunLabel, RunState, check_run_id
from cncwear.data.runs.records import RunRecord
from cncwear.data.runs.store import RunStore
from cncwear.data.runs.versions import export_folder
from cncwear.serving.batch import Batch, Rows, to_batch

# The registry (MLflow, skops) and the queue (Celery, Redis) take seconds to import: they are
# imported in the commands that use them, so that the runs' commands answer quickly.
if TYPE_CHECKING:
    from cncwear.jobs.store import Job, JobStore
    from cncwear.training.retrain import RetrainReport

app = typer.Typer(
    help="cncwear: tool-wear classification for CNC mills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(
    help="Labelled runs: a job's rows and the tool's condition after it, validated for training.",
    no_args_is_help=True,
)
data_app = typer.Typer(
    help="Dataset versions: the base data plus the accepted runs, as retrains see them.",
    no_args_is_help=True,
)
app.add_typer(runs_app, name="runs")
app.add_typer(data_app, name="data")
console = Console(stderr=True)
"""Messages, progress and errors (stderr)."""
out = Console()
"""What a command answers: tables and JSON (stdout)."""

DataVersionOption = Annotated[
    str | None,
    typer.Option(
        "--data-version",
        help="Dataset version to train on (cncwear data versions); default: the latest.",
    ),
]


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
    data_version: DataVersionOption = None,
) -> None:
    """Train the candidates, log them to MLflow, register the best and promote it if it beats the
    champion on held-out experiments."""
    from cncwear.training.retrain import retrain  # noqa: PLC0415 (the training stack, FLAML: only here)

    settings = get_settings()
    with _progress_bar() as bar:
        task = bar.add_task("starting", total=100)
        report = retrain(
            settings,
            data_version=data_version,
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
    from cncwear.registry.store import ModelStore  # noqa: PLC0415 (see the imports)
    from cncwear.serving.model import load_scoring_model  # noqa: PLC0415
    from cncwear.serving.scoring import labels  # noqa: PLC0415

    champion = load_scoring_model(ModelStore(get_settings()))
    frame = pd.read_csv(rows, keep_default_na=False, dtype=str)
    probability = champion.probability_worn(to_batch(Rows.of_frame(frame), champion.input_columns))
    result = pd.DataFrame({"label": labels(probability), "probability_worn": probability})
    result.to_csv(output if output else sys.stdout, index=False)
    console.print(f"scored {len(result)} rows with {champion.name} version {champion.version}")


@app.command("retrain")
def queue_retrain(
    *,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    budget: Annotated[Budget | None, typer.Option(help="Search budget.")] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Training data folder (under a data root).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why this retrain.")] = "on demand (cli)",
    if_new_data: Annotated[
        bool,
        typer.Option(
            help="Only when the latest dataset version (the base data in --data-dir, default "
            "CNCWEAR_DATA_DIR, plus the accepted runs) is new to the champion; the reason is then "
            "'new data'."
        ),
    ] = False,
    data_version: DataVersionOption = None,
) -> None:
    """Queue a retrain for the trainer workers (the same job as POST /retrain). A retrain already
    queued or running is returned instead of a second one."""
    from cncwear.jobs.queue import make_celery  # noqa: PLC0415 (see the imports)
    from cncwear.jobs.store import JobState, JobStore, RetrainRequest  # noqa: PLC0415
    from cncwear.jobs.triggers import queue_if_new_data  # noqa: PLC0415

    settings = get_settings()
    jobs = JobStore(settings)
    if if_new_data:
        folder = None if data_dir is None else Path(data_dir)
        check = queue_if_new_data(settings, make_celery(settings), folder, budget=budget)
        if check.job is None:
            console.print(f"no new data: {check.explain()}; nothing queued")
            return
        job, created = check.job, check.created
    else:
        request = RetrainRequest(
            budget=budget, data_dir=data_dir, reason=reason, data_version=data_version
        )
        job, created = jobs.enqueue(request, make_celery(settings))
    console.print(f"{'queued' if created else 'already queued or running'}: job {job.job_id}")
    if wait:
        job = _follow(jobs, job.job_id)
        if job.state is JobState.FAILED:
            console.print(f"[red]failed:[/red] {job.error}")
            raise SystemExit(1)
        result = job.result or {}
        if result.get("skipped"):
            console.print(f"skipped: {result.get('reason')} ({result.get('detail')})")
            return
        verdict = (
            "promoted"
            if result.get("promoted")
            else "in shadow as challenger"
            if result.get("challenger")
            else "not promoted"
        )
        console.print(
            f"version {result.get('version')} {verdict} (dataset version "
            f"{result.get('data_version')}): {result.get('decision')}"
        )


# -- labelled runs -----------------------------------------------------------------------------

UPLOAD_CHUNK_ROWS = 2000
"""Rows validated at a time while a run is read for upload (the progress bar's step)."""

RunArgument = Annotated[str, typer.Argument(help="The run's id, e.g. mill-3/2026-12-01/job-1842.")]
LabelOption = Annotated[str, typer.Option("--label", help="The tool's condition: worn or unworn.")]
FeedrateOption = Annotated[float, typer.Option(help="Feed rate of the job (as in train.csv).")]
ClampOption = Annotated[float, typer.Option(help="Clamp pressure of the job (as in train.csv).")]
MaterialOption = Annotated[
    str | None, typer.Option(help="Material machined (as in train.csv), e.g. wax.")
]


def _run_label(
    label: str, feedrate: float, clamp_pressure: float, material: str | None
) -> RunLabel:
    return RunLabel.parse(
        {
            "tool_condition": label,
            "feedrate": feedrate,
            "clamp_pressure": clamp_pressure,
            "material": material,
        }
    )


@runs_app.command("list")
def runs_list(
    state: Annotated[RunState | None, typer.Option(help="Only runs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Runs per page.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Runs to skip (newest first).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The runs, newest first: state, label, rows, why rejected, the dataset versions using them."""
    page = RunStore(get_settings()).list(state=state, limit=limit, offset=offset)
    if as_json:
        out.print_json(json.dumps({"runs": [r.as_dict() for r in page.runs], "total": page.total}))
        return
    table = Table(title=f"Runs {offset + 1}-{offset + len(page.runs)} of {page.total}")
    for column in ("run", "state", "label", "rows", "active", "last seen", "why / datasets"):
        table.add_column(column, justify="right" if column in {"rows", "active"} else "left")
    for run in page.runs:
        why = "; ".join(run.reasons) if run.reasons else ", ".join(run.dataset_versions)
        table.add_row(
            run.run,
            run.state.value,
            run.label.tool_condition if run.label else "-",
            str(run.rows) + (" (truncated)" if run.truncated else ""),
            str(run.active_rows),
            _when(run.last_seen),
            why,
        )
    out.print(table)


@runs_app.command("show")
def runs_show(run: RunArgument) -> None:
    """One run's record, as JSON (the same as GET /runs/{run})."""
    out.print_json(json.dumps(RunStore(get_settings()).get(check_run_id(run)).as_dict()))


@runs_app.command("add")
def runs_add(
    file: Annotated[
        Path,
        typer.Argument(
            help="The run's rows in the bundled experiment_NN.csv format (may be compressed).",
            exists=True,
            dir_okay=False,
        ),
    ],
    *,
    run: Annotated[str, typer.Option("--run", help="The run's id (new).")],
    label: LabelOption,
    feedrate: FeedrateOption,
    clamp_pressure: ClampOption,
    material: MaterialOption = None,
) -> None:
    """Upload a whole labelled run recorded elsewhere (the same as POST /runs): its rows are
    validated like /predict's, then the run like a labelled one; accepted, it may queue a
    retrain (CNCWEAR_RETRAIN_AFTER_RUNS)."""
    settings = get_settings()
    run_id = check_run_id(run)
    run_label = _run_label(label, feedrate, clamp_pressure, material)
    columns = input_columns(use_identifying_columns=False)
    store = RunStore(settings)
    with _progress_bar() as bar:
        task = bar.add_task(f"reading {file.name}", total=None)
        frame = pd.read_csv(file, keep_default_na=False, dtype=str)
        bar.update(task, total=2 * len(frame), description="validating rows")
        batch = _validated_batch(frame, columns, lambda done: bar.update(task, completed=done))
        reference = BaseData.load(settings).reference
        bar.update(task, description=f"storing {len(frame)} rows")
        record = store.upload(
            run_id,
            batch,
            input_columns=columns,
            label=run_label,
            reference=reference,
            progress=lambda stored: bar.advance(task, stored),
        )
        bar.update(task, description="stored", completed=2 * len(frame))
    _report_run(settings, store, record)


def _validated_batch(
    frame: pd.DataFrame, columns: list[str], progress: Callable[[int], object] | None = None
) -> Batch:
    """The rows of a file as one batch, validated by ``to_batch`` (as /predict validates them) a
    chunk at a time; problems name the file's row numbers (from 0, as /predict's do)."""
    numeric: list[np.ndarray] = []
    process: list[str] = []
    for start in range(0, max(len(frame), 1), UPLOAD_CHUNK_ROWS):
        chunk = frame.iloc[start : start + UPLOAD_CHUNK_ROWS]
        try:
            batch = to_batch(Rows.of_frame(chunk), columns)
        except SchemaError as error:
            raise SchemaError(
                [_shifted(problem, start) for problem in error.problems], total=error.total
            ) from None
        numeric.append(batch.numeric)
        process += batch.process
        if progress is not None:
            progress(start + len(chunk))
    return Batch(np.vstack(numeric), process)


def _shifted(problem: Problem, offset: int) -> Problem:
    row = None if problem.row is None else problem.row + offset
    return Problem(column=problem.column, problem=problem.problem, row=row)


@runs_app.command("stream")
def runs_stream(
    file: Annotated[
        Path,
        typer.Argument(
            help="A job's rows in the bundled experiment_NN.csv format (may be compressed).",
            exists=True,
            dir_okay=False,
        ),
    ],
    *,
    run: Annotated[str, typer.Option("--run", help="The run's id.")],
    url: Annotated[
        str, typer.Option(envvar="CNCWEAR_API_URL", help="The cncwear API to send the rows to.")
    ] = "http://127.0.0.1:8000",
    batch_rows: Annotated[int, typer.Option(min=1, max=10_000, help="Rows a request.")] = 100,
    token: Annotated[
        str | None,
        typer.Option(envvar="CNCWEAR_API_TOKEN", help="API token, when reads are protected."),
    ] = None,
) -> None:
    """Send a recorded job to a running API's /predict under a run id, a batch at a time, as a
    mill streams it: the champion scores each batch, and its rows join the run."""
    run_id = check_run_id(run)
    frame = pd.read_csv(file)
    columns = [str(c) for c in frame.columns]
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    answer: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client, _progress_bar() as bar:
        task = bar.add_task(f"streaming {file.name} to {url}", total=len(frame))
        for start in range(0, len(frame), batch_rows):
            chunk = frame.iloc[start : start + batch_rows].astype(object)
            data = chunk.where(chunk.notna(), None).to_numpy().tolist()
            try:
                response = client.post(
                    "/predict", json={"run": run_id, "columns": columns, "data": data}
                )
            except httpx.HTTPError as error:
                _fail(f"cannot reach the API at {url}: {error}", code=1)
            if response.status_code != 200:
                _fail(
                    f"rows {start} to {start + len(chunk) - 1}: the API answered "
                    f"{response.status_code}: {response.text[:2000]}",
                    code=2 if response.status_code < 500 else 1,
                )
            answer = response.json()
            bar.advance(task, len(chunk))
    kept = answer.get("run", {})
    console.print(
        f"run {run_id}: {len(frame)} rows sent, {kept.get('run_rows', '?')} in the run"
        f"{' (truncated)' if kept.get('truncated') else ''}; model version "
        f"{answer.get('model', {}).get('version', '?')}. Label it after inspecting the tool: "
        f"cncwear runs label {run_id} --label worn|unworn --feedrate F --clamp-pressure P"
    )


@runs_app.command("label")
def runs_label(
    run: RunArgument,
    label: LabelOption,
    feedrate: FeedrateOption,
    clamp_pressure: ClampOption,
    material: MaterialOption = None,
) -> None:
    """Label a run streamed through /predict: closes it and validates it (the same as POST
    /runs/{run}/label); accepted, it may queue a retrain (CNCWEAR_RETRAIN_AFTER_RUNS)."""
    settings = get_settings()
    run_id = check_run_id(run)
    run_label = _run_label(label, feedrate, clamp_pressure, material)
    store = RunStore(settings)
    record = store.label(run_id, run_label, BaseData.load(settings).reference)
    _report_run(settings, store, record)


@runs_app.command("withdraw")
def runs_withdraw(run: RunArgument) -> None:
    """Withdraw a mislabelled run (the same as DELETE /runs/{run}): it stays listed, withdrawn,
    and the next dataset version leaves it out."""
    record = RunStore(get_settings()).withdraw(check_run_id(run))
    console.print(f"run {record.run} withdrawn; the next dataset version leaves it out")


def _report_run(settings: Settings, store: RunStore, record: RunRecord) -> None:
    """Say what became of a labelled run; an accepted one may queue a retrain."""
    label = record.label.tool_condition if record.label else "?"
    console.print(
        f"run {record.run}: {record.state.value} ({label}, {record.rows} rows, "
        f"{record.active_rows} active)"
    )
    for reason in record.reasons:
        console.print(f"  [yellow]rejected:[/yellow] {reason}")
    if record.state is not RunState.ACCEPTED:
        if record.state is RunState.REJECTED:
            raise SystemExit(1)
        return
    from cncwear.jobs.queue import make_celery  # noqa: PLC0415 (see the imports)
    from cncwear.jobs.triggers import queue_after_accepted_runs  # noqa: PLC0415

    try:
        job = queue_after_accepted_runs(settings, make_celery(settings), store)
    except QueueUnavailableError as error:
        console.print(f"[yellow]no retrain queued:[/yellow] {error}")
        return
    if job is not None:
        console.print(f"retrain {job.state.value}: job {job.job_id} ({job.request.reason})")


# -- dataset versions --------------------------------------------------------------------------


@data_app.command("versions")
def data_versions(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Versions to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """The dataset versions, newest first: their parts, counts by label, when they were made and
    the model versions trained on them (the same as GET /data/versions). The current one (made
    now if the runs or the base changed), which a retrain would train on, is marked."""
    settings = get_settings()
    store = RunStore(settings)
    current = store.current_version(BaseData.load(settings)).id
    versions = store.versions(limit=limit)
    from cncwear.registry.store import ModelStore  # noqa: PLC0415 (see the imports)

    models = ModelStore(settings)
    listed = [
        {
            **version.as_dict(),
            "current": version.id == current,
            "model_versions": models.versions_trained_on(version.id),
        }
        for version in versions
    ]
    if as_json:
        out.print_json(json.dumps(listed))
        return
    table = Table(title="Dataset versions")
    for column in ("id", "made", "base", "runs", "groups by label", "model versions"):
        table.add_column(column)
    for version, entry in zip(versions, listed, strict=True):
        table.add_row(
            version.id + (" (current)" if entry["current"] else ""),
            _when(version.made_at),
            version.base_source,
            str(len(version.runs)),
            json.dumps(version.counts()["all"]),
            ", ".join(entry["model_versions"]) or "-",
        )
    out.print(table)


@data_app.command("export")
def data_export(
    version: Annotated[str, typer.Argument(help="The dataset version's id.")],
    folder: Annotated[Path, typer.Argument(help="Where to write it (train.csv + experiments).")],
) -> None:
    """Write a dataset version in the bundled format, e.g. to train on it elsewhere or to use as
    CNCWEAR_DATA_DIR: load_dataset gives exactly the rows a retrain on the version sees."""
    from cncwear.training.lineage import base_data_of  # noqa: PLC0415 (the training package)

    settings = get_settings()
    store = RunStore(settings)
    dataset_version = store.version(version)
    written = export_folder(store, dataset_version, base_data_of(dataset_version, settings), folder)
    console.print(f"dataset version {dataset_version.id} written to {written}")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _follow(jobs: JobStore, job_id: str) -> Job:
    from cncwear.jobs.store import JobState  # noqa: PLC0415 (see the imports)

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
        f"dataset version {report.data_version} ({len(report.data_runs)} labelled runs); "
        f"held-out experiments: {report.split.holdout_experiments}; "
        f"winner: {report.winner}, registered as version {report.version}"
    )
    winner = next(c for c in report.candidates if c.name == report.winner)
    top = sorted(winner.importances.items(), key=lambda kv: -kv[1])[:5]
    console.print("features the winner leans on: " + ", ".join(f"{n} ({v:.2f})" for n, v in top))
    verdict = (
        "[green]promoted[/green]"
        if report.decision.promoted
        else "[cyan]in shadow as challenger[/cyan]"
        if report.decision.challenger
        else "[yellow]not promoted[/yellow]"
    )
    console.print(f"{verdict}: {report.decision.reason}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fail(message: str, *, code: int) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise SystemExit(code)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SchemaError as error:
        console.print(f"[red]bad input:[/red] {error.total} problem(s)")
        for problem in error.problems[:50]:
            console.print(f"  {problem}")
        raise SystemExit(2) from None
    except (
        InvalidRunIdError,
        RunNotFoundError,
        RunClosedError,
        DataVersionNotFoundError,
    ) as error:
        console.print(f"[red]error:[/red] {error}")
        raise SystemExit(2) from None
    except CncwearError as error:
        console.print(f"[red]error:[/red] {error}")
        raise SystemExit(1) from None
