"""Why a message is refused. A refused message is published on the machine's rejected topic with
its reason and acknowledged: it is never retried, and never stops the bridge."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """The reasons, as the ``reason`` of a rejected message and the label of the rejects metric."""

    NOT_JSON = "not_json"
    BAD_SHAPE = "bad_shape"
    INVALID_ROWS = "invalid_rows"
    UNKNOWN_DATA_ITEM = "unknown_data_item"
    BAD_OBSERVATION = "bad_observation"
    INCOMPLETE_ROW = "incomplete_row"
    BAD_JOB = "bad_job"
    BAD_LABEL = "bad_label"
    REFUSED = "refused"
    """The API answered with an error that retrying cannot mend (a 4xx other than 422, a 500)."""


class RejectedError(Exception):
    """A message the bridge will not score, and why."""

    def __init__(self, reason: Reason, detail: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.problems = problems or []


class ApiUnavailableError(Exception):
    """The API could not answer now (connection refused, a timeout, 502/503/504, 429): the same
    request is tried again after a pause, and the messages stay unacknowledged until then."""
