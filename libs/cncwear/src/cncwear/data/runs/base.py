"""The base data of every dataset version: the bundled experiments or ``CNCWEAR_DATA_DIR``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from cncwear.core.schema import LABELS
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings
from cncwear.data.dataset import Dataset, load_dataset
from cncwear.data.runs.checks import Reference

CONDITIONS = {number: name for name, number in LABELS.items()}


@dataclass(frozen=True)
class BaseData:
    dataset: Dataset
    """Every row of the base, validated (active cutting or not)."""
    source: str
    """``bundled``, or the folder it was read from."""
    reference: Reference
    materials: dict[int, str]
    """The material of each experiment, as its ``train.csv`` says (kept for exports)."""

    @property
    def content_hash(self) -> str:
        return self.dataset.content_hash

    def experiment_labels(self) -> dict[int, str]:
        labels = self.dataset.experiment_labels()
        return {int(str(e)): CONDITIONS[int(label)] for e, label in labels.items()}

    @classmethod
    def load(cls, settings: Settings, data_dir: Path | None = None) -> BaseData:
        """The base in ``data_dir`` (default ``CNCWEAR_DATA_DIR``), read once per content of the
        folder's files: a process that asks again gets the same object until a file changes."""
        folder = (data_dir or settings.data_dir).resolve()
        return _load(folder, _fingerprint(folder))


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    if not folder.is_dir():
        return ()
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()))


@lru_cache(maxsize=4)
def _load(folder: Path, fingerprint: tuple[tuple[str, int, int], ...]) -> BaseData:
    dataset = load_dataset(folder)
    source = "bundled" if folder == BUNDLED_DATA_DIR.resolve() else str(folder)
    table = pd.read_csv(folder / "train.csv")
    materials = (
        {int(n): str(m) for n, m in zip(table["No"], table["material"], strict=True)}
        if "material" in table.columns
        else {}
    )
    return BaseData(
        dataset=dataset, source=source, reference=Reference.of(dataset), materials=materials
    )
