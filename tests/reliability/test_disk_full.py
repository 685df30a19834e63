"""The artifact folder's disk full during a retrain: the retrain fails saying so, the champion and
the registry are untouched (the API goes on serving the champion), and once there is room again
the next retrain works.

The full disk is real: a small tmpfs mounted on the artifact folder and filled up (the tests run
as root; mounting needs it)."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from cncwear.registry.store import ModelStore
from cncwear.training.retrain import retrain
from cncwear_api.core.settings import ApiSettings
from tests.api.conftest import records

from .conftest import serve

DISK_BYTES = 64 * 1024 * 1024


@pytest.fixture
def artifact_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs on the artifact folder of a fresh home."""
    folder = tmp_path / "home" / "artifacts"
    folder.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, f"cannot mount a tmpfs (root needed): {mounted.stderr}"
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk says it is full; returns it."""
    filler = folder / "filler"
    chunk = b"\0" * (1024 * 1024)
    with filler.open("wb") as out:
        while True:
            try:
                out.write(chunk)
                out.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break
    return filler


def chain(error: BaseException | None) -> str:
    text = ""
    while error is not None:
        text += f"{type(error).__name__}: {error}\n"
        error = error.__cause__ or error.__context__
    return text


def test_a_retrain_on_a_full_disk_fails_and_leaves_the_champion_serving(
    artifact_disk: Path, real_rows: pd.DataFrame
) -> None:
    settings = Settings(home=artifact_disk.parent, budget=Budget.FAST, n_jobs=1)
    seed = retrain(settings, candidates=["baseline"], reason="champion before the disk fills")
    store = ModelStore(settings)
    payload = {"rows": records(real_rows.head(3))}
    api = ApiSettings(**{**settings.model_dump(), "poll_interval_seconds": 1.0, "api_token": "t"})
    with serve(api) as running, running.client() as http:
        running.wait_ready(seed.version)
        filler = fill(artifact_disk)

        with pytest.raises(Exception) as failed:  # whatever MLflow wraps it in
            retrain(settings, candidates=["decision_tree"], reason="on a full disk")
        assert "No space left on device" in chain(failed.value)

        champion = store.champion_version()
        assert champion is not None and str(champion.version) == seed.version
        versions = MlflowClient(
            settings.tracking_uri(), settings.tracking_uri()
        ).search_model_versions(f"name = '{settings.model_name}'")
        assert [str(v.version) for v in versions] == [seed.version]
        assert store.load_champion().version == seed.version  # its artifacts are intact
        answer = http.post("/predict", json=payload)
        assert answer.status_code == 200 and answer.json()["model"]["version"] == seed.version

        filler.unlink()
        again = retrain(settings, candidates=["baseline"], reason="room again")
        assert again.version != seed.version
        assert http.post("/predict", json=payload).status_code == 200
        assert http.get("/ready").status_code == 200
