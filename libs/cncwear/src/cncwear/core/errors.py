"""Domain errors. They carry what went wrong in domain terms; the HTTP layer and the CLI decide how
to show them. No web framework is imported here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class CncwearError(Exception):
    """Base of every error cncwear raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a batch of rows. ``row`` is None for column-level problems."""

    column: str
    problem: str
    row: int | None = None

    def __str__(self) -> str:
        where = (
            f"row {self.row}, column {self.column!r}" if self.row is not None else repr(self.column)
        )
        return f"{where}: {self.problem}"


class SchemaError(CncwearError):
    """Rows that do not match the raw sensor-row schema. Lists every problem found (up to a cap),
    never the offending values, so logs and responses do not echo client data back."""

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.problems = problems
        self.total = total if total is not None else len(problems)
        shown = "; ".join(str(p) for p in problems[:10])
        more = f" (and {self.total - 10} more)" if self.total > 10 else ""
        super().__init__(f"{self.total} problem(s) in the rows: {shown}{more}")


class DataError(CncwearError):
    """A training data folder that cannot be used (missing files, unknown labels, no rows)."""


class NoChampionError(CncwearError):
    """The registry has no model under the champion alias yet."""


class ModelLoadError(CncwearError):
    """A registered model version that cannot be loaded or does not behave like a cncwear model."""


class NoChallengerError(CncwearError):
    """No version holds the challenger alias: nothing is in shadow to promote or reject."""


class ChallengerChangedError(NoChallengerError):
    """The challenger a decision was about no longer holds the alias (another replica decided, or
    a newer retrain replaced it): the decision is dropped."""


class PromotionLockError(CncwearError):
    """Another retrain held the promotion lock for too long."""


class TrainingError(CncwearError):
    """A retrain that could not produce any candidate."""


class CompileError(CncwearError):
    """A model that cannot be compiled, or whose compiled form does not match scikit-learn."""


# -- raised by the auto-sklearn engine, the job store and the explainers ---------------------------


class AutoSklearnError(TrainingError):
    """The auto-sklearn sidecar failed: it crashed, timed out, answered nonsense, or returned a
    configuration that cannot be rebuilt."""


class SidecarUnavailableError(AutoSklearnError):
    """No usable auto-sklearn sidecar in this installation."""


class UnsupportedConfigurationError(AutoSklearnError):
    """An auto-sklearn configuration outside what ``rebuild`` reproduces faithfully."""


class QueueUnavailableError(CncwearError):
    """Redis (the broker and job store) cannot be reached."""


class JobNotFoundError(CncwearError):
    """No job with that id (never queued, or expired)."""


class NoReferenceError(CncwearError):
    """A model version whose logged profile lacks the training sample explainers start from."""


class UnknownExplainMethodError(CncwearError):
    """An explanation method cncwear does not have; ``valid`` lists the ones it has."""

    def __init__(self, value: str, valid: Sequence[str]) -> None:
        self.value = value
        self.valid = list(valid)
        super().__init__(f"unknown explanation method {value!r}: valid methods are {self.valid}")


# -- raised by the labelled runs' store ----------------------------------------------------------


class InvalidRunIdError(CncwearError):
    """A run id outside the allowed form (1 to 128 of ``[A-Za-z0-9._:/-]``, no ``..`` segment)."""


class RunNotFoundError(CncwearError):
    """No run with that id in the store (never seen, or dropped unlabelled after its TTL)."""


class RunClosedError(CncwearError):
    """A change a run no longer takes: rows or a label for a run that is not collecting any more,
    or an upload under an id that is taken."""


class DataVersionNotFoundError(CncwearError):
    """No dataset version with that id."""


class NotEnoughRunsError(TrainingError):
    """Training on the labelled runs alone without enough runs of both labels to hold some out."""
