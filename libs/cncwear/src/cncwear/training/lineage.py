"""What a retrain trains on, and how that is recorded: a dataset version (the base data plus
accepted labelled runs, ``cncwear.data.runs``), built into the rows to fit, and logged on the
retrain's MLflow run so that every model can be traced back to the runs it learnt from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cncwear.core.choices import TrainOn
from cncwear.core.errors import DataError
from cncwear.core.schema import LABEL_COLUMN
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings
from cncwear.data.dataset import Dataset
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.records import DatasetVersion
from cncwear.data.runs.store import RunStore
from cncwear.data.runs.versions import build_dataset
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag

VERSION_ARTIFACT = "data_version.json"
"""The dataset version a retrain trained on, with every run it holds, among the run's artifacts."""

MAX_RUNS_IN_SOURCE = 300
"""Run ids listed in the dataset input's source (MLflow caps a source at 64 KB); the artifact
lists them all."""


@dataclass(frozen=True)
class TrainingData:
    version: DatasetVersion
    base: BaseData
    train_on: TrainOn
    dataset: Dataset
    """The rows to fit: active cutting only, each run one group."""

    @property
    def runs(self) -> list[str]:
        return [run.run for run in self.version.runs]


def training_data(
    settings: Settings, *, data_version: str | None = None, data_dir: Path | None = None
) -> TrainingData:
    """The data of a retrain: the named dataset version, else the latest one (made now if the
    accepted runs or the base changed). ``data_dir`` is the base folder (default
    ``CNCWEAR_DATA_DIR``). Raises ``DataVersionNotFoundError`` for an unknown version,
    ``NotEnoughRunsError`` when ``CNCWEAR_TRAIN_ON=runs`` lacks runs of both labels, ``DataError``
    when the named version was made on other base data than can be found here."""
    store = RunStore(settings)
    if data_version is None:
        base = BaseData.load(settings, data_dir)
        version = store.current_version(base)
    else:
        version = store.version(data_version)
        base = base_data_of(version, settings, data_dir)
    dataset = build_dataset(store, version, base, settings.train_on).active()
    return TrainingData(version=version, base=base, train_on=settings.train_on, dataset=dataset)


def base_data_of(
    version: DatasetVersion, settings: Settings, data_dir: Path | None = None
) -> BaseData:
    """The base data a named version was made on: the folder given, else ``CNCWEAR_DATA_DIR``, else
    the folder the version records; refused when its content is not the version's."""
    if data_dir is not None:
        folders = [data_dir]
    else:
        bundled = version.base_source == "bundled"
        folders = [settings.data_dir, BUNDLED_DATA_DIR if bundled else Path(version.base_source)]
    seen: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            seen.append(f"{folder} (missing)")
            continue
        base = BaseData.load(settings, folder)
        if base.content_hash == version.base_hash:
            return base
        seen.append(f"{base.source} (hash {base.content_hash})")
    raise DataError(
        f"dataset version {version.id} was made on base data {version.base_source} (hash "
        f"{version.base_hash}), which is not here: found {', '.join(seen)}"
    )


def log_lineage(store: ModelStore, data: TrainingData) -> None:
    """Record on the active retrain run what it trains on: the dataset version as an MLflow dataset
    input (digest = the version's id), the version with its runs as an artifact, and the tag."""
    version = data.version
    store.set_tags({Tag.DATA_VERSION: version.id})
    store.log_params(
        {"data_version": version.id, "train_on": data.train_on.value, "data_runs": len(data.runs)}
    )
    store.log_dataset_input(
        data.dataset.rows,
        name=version.id,
        digest=version.id,
        source=source_description(data),
        targets=LABEL_COLUMN,
    )
    store.log_json({"train_on": data.train_on.value, **version.as_dict()}, VERSION_ARTIFACT)


def source_description(data: TrainingData) -> dict[str, Any]:
    """Where a version's rows come from, as MLflow shows it with the run's dataset input."""
    runs = data.runs
    return {
        "data_version": data.version.id,
        "train_on": data.train_on.value,
        "base": data.version.base_source,
        "base_hash": data.version.base_hash,
        "runs": runs[:MAX_RUNS_IN_SOURCE],
        "runs_total": len(runs),
    }
