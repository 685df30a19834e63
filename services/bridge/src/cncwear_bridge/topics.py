"""The bridge's topics: what a received topic carries and for which machine, and where answers go.

Rows, job boundaries and labels arrive on ``cncwear/{machine}/rows|job|label`` (any prefix: the
last level names the kind, the one before it the machine); MTConnect observations on
``MTConnect/Devices/{uuid}/Observations/{dataItemId}``, as the reference agent's MQTT entity sink
publishes them. Answers go to ``cncwear/{machine}/verdict|predictions|rejected``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PREFIX = "cncwear"
CONTROL_FILTERS = (f"{PREFIX}/+/job", f"{PREFIX}/+/label")
"""Read whatever the configured topics: run boundaries and labels."""


class Kind(StrEnum):
    ROWS = "rows"
    JOB = "job"
    LABEL = "label"
    OBSERVATION = "observation"


@dataclass(frozen=True)
class Route:
    kind: Kind
    machine: str
    """The machine id; for an observation, the device uuid (the mapping may rename it)."""
    data_item: str | None = None


def route(topic: str) -> Route | None:
    """What ``topic`` carries, or None for a topic the bridge does not read."""
    levels = topic.split("/")
    if len(levels) >= 5 and levels[-2] == "Observations" and levels[-4] == "Devices":
        return Route(Kind.OBSERVATION, levels[-3], levels[-1])
    if len(levels) >= 2 and levels[-2]:
        try:
            kind = Kind(levels[-1])
        except ValueError:
            return None
        if kind is not Kind.OBSERVATION:
            return Route(kind, levels[-2])
    return None


def verdict_topic(machine: str) -> str:
    return f"{PREFIX}/{machine}/verdict"


def predictions_topic(machine: str) -> str:
    return f"{PREFIX}/{machine}/predictions"


def rejected_topic(machine: str) -> str:
    return f"{PREFIX}/{machine}/rejected"
