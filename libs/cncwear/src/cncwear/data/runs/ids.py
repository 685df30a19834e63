"""What a run is called and what it can be: its id, its states, its label."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from cncwear.core.errors import InvalidRunIdError, Problem, SchemaError
from cncwear.core.schema import LABELS

RUN_ID_PATTERN = r"^[A-Za-z0-9._:/-]{1,128}$"
"""A run id: 1 to 128 letters, digits and ``._:/-`` (``mill-3/2026-12-01/job-1842``)."""
_RUN_ID = re.compile(RUN_ID_PATTERN)

MAX_MATERIAL_LENGTH = 64


def check_run_id(value: object) -> str:
    """The id, or :class:`InvalidRunIdError` saying what is wrong with it.

    Ids are keys in the store, never paths; ``..`` and empty segments are refused all the same, so
    an id stays safe wherever someone later puts it (a file name, a URL, an object key)."""
    if not isinstance(value, str):
        raise InvalidRunIdError("a run id is text")
    if not _RUN_ID.fullmatch(value):
        raise InvalidRunIdError(
            "a run id is 1 to 128 characters of letters, digits and . _ : / - "
            f"({len(value)} characters given)"
        )
    segments = value.split("/")
    if ".." in value or "" in segments:
        raise InvalidRunIdError("a run id may not contain '..' nor start, end or repeat '/'")
    return value


class RunState(StrEnum):
    """``collecting`` rows until labelled; then ``accepted`` (it may train models) or ``rejected``
    (with reasons; its rows are kept); ``withdrawn`` by a person (mislabelled, say)."""

    COLLECTING = "collecting"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class RunLabel:
    """What someone says of a run after inspecting the tool, with the job's settings as
    ``train.csv`` records them. The settings are optional here: a run without those a model needs
    is rejected by the checks, with the reason, rather than refused."""

    tool_condition: str
    feedrate: float | None = None
    clamp_pressure: float | None = None
    material: str | None = None

    @property
    def label(self) -> int:
        return LABELS[self.tool_condition]

    @classmethod
    def parse(cls, fields: Mapping[str, Any]) -> RunLabel:
        """From a request's fields; :class:`SchemaError` names each bad field."""
        problems: list[Problem] = []
        condition = fields.get("tool_condition")
        if condition is None:
            problems.append(Problem(column="tool_condition", problem="missing"))
        elif condition not in LABELS:
            known = " or ".join(repr(k) for k in LABELS)
            problems.append(Problem(column="tool_condition", problem=f"must be {known}"))
        numbers: dict[str, float | None] = {}
        for name in ("feedrate", "clamp_pressure"):
            value = fields.get(name)
            ok = value is None or (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value > 0
            )
            if not ok:
                problems.append(Problem(column=name, problem="must be a positive finite number"))
            numbers[name] = None if value is None or not ok else float(value)
        material = fields.get("material")
        if material is not None and not (
            isinstance(material, str)
            and 0 < len(material) <= MAX_MATERIAL_LENGTH
            and material.isprintable()
        ):
            problems.append(
                Problem(
                    column="material",
                    problem=f"must be 1 to {MAX_MATERIAL_LENGTH} printable characters",
                )
            )
        if problems:
            raise SchemaError(problems)
        return cls(
            tool_condition=str(condition),
            feedrate=numbers["feedrate"],
            clamp_pressure=numbers["clamp_pressure"],
            material=material,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
