"""MTConnect observations (one data item a message, each with its timestamp) mapped to the
schema's columns and assembled into rows.

The mapping file (``CNCWEAR_MQTT_MAPPING``, YAML) names the column of each data item, optionally the
machine id of each device uuid, the items to ignore, and the tolerance within which observations
belong to one row::

    tolerance_ms: 20
    devices: {"OKUMA.123456": mill-3}
    ignore: [avail, mode]
    items: {Xact: X1_ActualPosition, Xvel: X1_ActualVelocity, ...}

Observations of one device whose timestamps lie within the tolerance of the row being assembled
make that row; it is complete once every mapped column has a value. A row still incomplete when a
later row completes never will be: its messages are rejected (``incomplete_row``, naming the
columns it lacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from cncwear.core.schema import PROCESS_COLUMN, input_columns
from cncwear_bridge.errors import Reason, RejectedError
from cncwear_bridge.messages import Row, decode

COLUMNS = input_columns(use_identifying_columns=False)
T = TypeVar("T")


@dataclass(frozen=True)
class Mapping:
    items: dict[str, str]
    """Data item id -> column."""
    devices: dict[str, str] = field(default_factory=dict)
    """Device uuid -> machine id; a device not named keeps its uuid."""
    ignore: frozenset[str] = frozenset()
    tolerance_ms: float = 20.0

    @classmethod
    def load(cls, path: Path) -> Mapping:
        """The mapping in ``path``; ValueError naming what is wrong (at start, not per message)."""
        body = yaml.safe_load(path.read_text())
        if not isinstance(body, dict) or not isinstance(body.get("items"), dict):
            raise ValueError(f"{path}: a mapping has 'items' (data item id: column)")
        items = {str(k): str(v) for k, v in body["items"].items()}
        unknown = sorted(set(items.values()) - set(COLUMNS))
        if unknown:
            raise ValueError(f"{path}: not columns of the schema: {unknown}")
        missing = [c for c in COLUMNS if c not in set(items.values())]
        if missing:
            raise ValueError(f"{path}: no data item for the columns {missing}")
        devices = {str(k): str(v) for k, v in (body.get("devices") or {}).items()}
        ignore = frozenset(str(i) for i in body.get("ignore") or [])
        tolerance = float(body.get("tolerance_ms", 20.0))
        if tolerance < 0:
            raise ValueError(f"{path}: tolerance_ms must be at least 0")
        return cls(items=items, devices=devices, ignore=ignore, tolerance_ms=tolerance)

    def machine(self, device: str) -> str:
        return self.devices.get(device, device)


@dataclass(frozen=True)
class Observation:
    column: str
    value: Any
    time: datetime
    timestamp: str


def parse_observation(mapping: Mapping, data_item: str, payload: bytes) -> Observation | None:
    """The observation in ``payload`` (None for an ignored item), or RejectedError."""
    if data_item in mapping.ignore:
        return None
    column = mapping.items.get(data_item)
    if column is None:
        raise RejectedError(Reason.UNKNOWN_DATA_ITEM, f"data item {data_item!r} is not mapped")
    body = decode(payload)
    if not isinstance(body, dict) or not isinstance(body.get("timestamp"), str):
        raise RejectedError(
            Reason.BAD_OBSERVATION, "an observation is an object with 'timestamp' and 'result'"
        )
    try:
        time = datetime.fromisoformat(body["timestamp"])
    except ValueError:
        raise RejectedError(Reason.BAD_OBSERVATION, "timestamp: not ISO 8601") from None
    result = body.get("result")
    if column == PROCESS_COLUMN:
        value: Any = str(result)
    else:
        try:
            value = float(result)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise RejectedError(
                Reason.BAD_OBSERVATION, f"{data_item} ({column}): result {result!r} is not a number"
            ) from None
    return Observation(column=column, value=value, time=time, timestamp=body["timestamp"])


@dataclass
class PartialRow(Generic[T]):
    time: datetime
    timestamp: str
    values: Row = field(default_factory=dict)
    messages: list[T] = field(default_factory=list)


class Assembler(Generic[T]):
    """Rows of one device assembled from its observations; ``T`` is what the caller keeps per
    message (to acknowledge it once the row is scored or rejected)."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.columns = frozenset(mapping.items.values())
        self.open: list[PartialRow[T]] = []

    def add(
        self, observation: Observation, message: T
    ) -> tuple[list[PartialRow[T]], list[PartialRow[T]]]:
        """Adds the observation; returns the rows it completed and the rows it made hopeless."""
        tolerance = self.mapping.tolerance_ms / 1000
        target = next(
            (
                row
                for row in self.open
                if abs((observation.time - row.time).total_seconds()) <= tolerance
                and observation.column not in row.values
            ),
            None,
        )
        if target is None:
            target = PartialRow(observation.time, observation.timestamp)
            self.open.append(target)
        target.values[observation.column] = observation.value
        target.messages.append(message)
        if set(target.values) != self.columns:
            return [], []
        self.open.remove(target)
        hopeless = [row for row in self.open if row.time < target.time]
        self.open = [row for row in self.open if row.time >= target.time]
        return [target], hopeless

    def missing(self, row: PartialRow[T]) -> list[str]:
        return [c for c in COLUMNS if c in self.columns and c not in row.values]
