"""``cncwear runs`` and ``cncwear data``: labelled runs and dataset versions from the command line,
through the same library (validation, store, retrain trigger) as the API.

The upload runs the installed ``cncwear`` command; the other commands run its ``main`` in this
process (each new process spends seconds importing the stack), with the environment and the
output streams a process would have."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cncwear import cli
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings, get_settings
from cncwear.data.dataset import load_dataset
from cncwear.data.runs.store import RunStore
from cncwear.jobs.store import JobStore
from cncwear.serving.batch import Rows, to_batch
from tests.helpers import emptied_redis

from .conftest import CLI
from .runs_helpers import LEFT_OUT, RUN_COLUMNS, all_but, base_folder, experiment_rows

UPLOADED = "mill-2/2026-12-01/job-7"
STREAMED = "mill-2/2026-12-01/job-8"
WORN_FILE = BUNDLED_DATA_DIR / f"experiment_{LEFT_OUT[1]:02d}.csv.xz"
WORN = ("--label", "worn", "--feedrate", "3", "--clamp-pressure", "2.5", "--material", "wax")


@dataclass(frozen=True)
class Answer:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Shop:
    settings: Settings

    def environment(self) -> dict[str, str]:
        return {
            "CNCWEAR_HOME": str(self.settings.home),
            "CNCWEAR_DATA_DIR": str(self.settings.data_dir),
            "CNCWEAR_REDIS_URL": self.settings.redis_url,
            "CNCWEAR_RETRAIN_AFTER_RUNS": str(self.settings.retrain_after_runs),
            "CNCWEAR_N_JOBS": "1",
        }

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The installed ``cncwear`` command, in a process of its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))}
        env.update(self.environment(), COLUMNS="200")
        return subprocess.run(
            [str(CLI), *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    def cli(self, *args: str) -> Answer:
        """``cncwear *args`` through its ``main``, here: its exit code and what it wrote."""
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.environment().items():
                patch.setenv(name, value)
            patch.setattr(sys, "argv", ["cncwear", *args])
            patch.setattr(cli, "out", Console(file=out, width=200))
            patch.setattr(cli, "console", Console(file=err, width=200))
            get_settings.cache_clear()
            try:
                cli.main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            finally:
                get_settings.cache_clear()
        return Answer(code, out.getvalue(), err.getvalue())

    def show(self, run: str) -> dict[str, object]:
        result = self.cli("runs", "show", run)
        assert result.returncode == 0, result.stderr
        answer: dict[str, object] = json.loads(result.stdout)
        return answer


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A home whose base data lacks experiment 18, which the tests upload as a run."""
    root = tmp_path_factory.mktemp("shop")
    with emptied_redis() as redis_url:
        yield Shop(
            Settings(
                home=root / "home",
                data_dir=base_folder(root / "base", all_but(*LEFT_OUT)),
                redis_url=redis_url,
                retrain_after_runs=1,
                n_jobs=1,
            )
        )


def test_runs_add_uploads_a_run_that_is_accepted_queues_a_retrain_and_joins_a_version(
    shop: Shop, tmp_path: Path
) -> None:
    result = shop.command("runs", "add", str(WORN_FILE), "--run", UPLOADED, *WORN)
    assert result.returncode == 0, result.stderr
    assert f"run {UPLOADED}: accepted" in result.stderr
    (job,) = JobStore(shop.settings).recent()
    assert job.request.reason == "1 new labelled run" and job.request.if_new_data
    assert f"job {job.job_id}" in result.stderr

    record = shop.show(UPLOADED)
    assert record["state"] == "accepted" and record["source"] == "upload"
    assert record["rows"] == len(experiment_rows(LEFT_OUT[1]))
    listed = json.loads(shop.cli("runs", "list", "--json", "--state", "accepted").stdout)
    assert [r["run"] for r in listed["runs"]] == [UPLOADED] and listed["total"] == 1

    versions = shop.cli("data", "versions", "--json")
    assert versions.returncode == 0, versions.stderr
    (latest,) = [v for v in json.loads(versions.stdout) if v["current"]]
    assert [r["run"] for r in latest["parts"]["runs"]] == [UPLOADED]
    assert latest["model_versions"] == []
    exported = shop.cli("data", "export", latest["id"], str(tmp_path / "exported"))
    assert exported.returncode == 0, exported.stderr
    rows = load_dataset(tmp_path / "exported").rows
    base_rows = load_dataset(shop.settings.data_dir).rows
    assert len(rows) == len(base_rows) + record["rows"]
    assert rows["experiment"].nunique() == base_rows["experiment"].nunique() + 1


def test_runs_label_closes_a_streamed_run_and_withdraw_takes_it_out(shop: Shop) -> None:
    rows = experiment_rows(LEFT_OUT[0])
    store = RunStore(shop.settings)
    for start in range(0, len(rows), 500):  # as /predict appends them, batch by batch
        chunk = rows.iloc[start : start + 500]
        batch = to_batch(Rows.of_frame(chunk), RUN_COLUMNS)
        store.append(
            STREAMED,
            batch,
            input_columns=RUN_COLUMNS,
            probability=np.zeros(len(chunk)),
            model_version="1",
            request_id=f"request-{start}",
        )
    assert shop.show(STREAMED)["state"] == "collecting"
    unworn = ("--label", "unworn", "--feedrate", "3", "--clamp-pressure", "2.5")
    labelled = shop.cli("runs", "label", STREAMED, *unworn, "--material", "wax")
    assert labelled.returncode == 0, labelled.stderr
    assert shop.show(STREAMED)["state"] == "accepted"
    listed = json.loads(shop.cli("data", "versions", "--json").stdout)
    (with_it,) = [v for v in listed if v["current"]]
    assert STREAMED in [r["run"] for r in with_it["parts"]["runs"]]

    withdrawn = shop.cli("runs", "withdraw", STREAMED)
    assert withdrawn.returncode == 0, withdrawn.stderr
    assert shop.show(STREAMED)["state"] == "withdrawn"
    listed = json.loads(shop.cli("data", "versions", "--json").stdout)
    (without,) = [v for v in listed if v["current"]]
    assert STREAMED not in [r["run"] for r in without["parts"]["runs"]]
    assert without["id"] != with_it["id"] and with_it["id"] in [v["id"] for v in listed]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("runs", "show", "job 1 with spaces"), "run"),
        (("runs", "show", "../etc/passwd"), "run"),
        (("runs", "show", "x" * 129), "run"),
        (("runs", "show", "mill-9/never-seen"), "mill-9/never-seen"),
        (("runs", "label", "mill-9/never-seen", *WORN), "mill-9/never-seen"),
        (("runs", "withdraw", "mill-9/never-seen"), "mill-9/never-seen"),
        (("runs", "add", str(WORN_FILE), "--run", "bad id", *WORN), "run"),
        (("data", "export", "0123456789abcdef", "/tmp/cncwear-never-written"), "0123456789abcdef"),
    ],
)
def test_bad_ids_and_unknown_runs_or_versions_exit_2_with_a_message(
    shop: Shop, args: tuple[str, ...], says: str
) -> None:
    result = shop.cli(*args)
    assert result.returncode == 2, result.stderr
    assert "error" in result.stderr and says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_closed_run_takes_no_second_upload_or_label(shop: Shop) -> None:
    shop.cli("runs", "add", str(WORN_FILE), "--run", "mill-2/closed", *WORN)
    again = shop.cli("runs", "add", str(WORN_FILE), "--run", "mill-2/closed", *WORN)
    assert again.returncode == 2 and "mill-2/closed" in again.stderr
    relabel = shop.cli("runs", "label", "mill-2/closed", *WORN)
    assert relabel.returncode == 2 and "mill-2/closed" in relabel.stderr


def test_rows_and_labels_are_validated_before_anything_is_stored(
    shop: Shop, tmp_path: Path
) -> None:
    rows = experiment_rows(LEFT_OUT[1]).astype(object)
    rows.loc[2100, "X1_OutputPower"] = "twelve"  # past the first chunk: the file's row number
    bad = tmp_path / "bad.csv"
    rows.to_csv(bad, index=False)
    result = shop.cli("runs", "add", str(bad), "--run", "mill-2/bad-rows", *WORN)
    assert result.returncode == 2, result.stderr
    assert "row 2100, column 'X1_OutputPower'" in result.stderr and "twelve" not in result.stderr
    blunt = ("--label", "blunt", "--feedrate", "3", "--clamp-pressure", "2.5", "--material", "wax")
    unknown = shop.cli("runs", "add", str(WORN_FILE), "--run", "mill-2/bad-label", *blunt)
    assert unknown.returncode == 2 and "tool_condition" in unknown.stderr
    for run in ("mill-2/bad-rows", "mill-2/bad-label"):
        assert shop.cli("runs", "show", run).returncode == 2  # never stored
