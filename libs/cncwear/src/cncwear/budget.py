"""Search budgets: how much a retrain may spend on each candidate."""

from __future__ import annotations

from dataclasses import dataclass

from cncwear.settings import AutoMLEngineName, Budget


@dataclass(frozen=True)
class SearchBudget:
    tree_iterations: int
    """Randomized-search draws for the decision tree."""
    forest_iterations: int
    """Randomized-search draws for the random forest."""
    cv_folds: int
    """Grouped cross-validation folds inside the training experiments."""
    max_trees: int | None
    """Cap on the forest's n_estimators grid (None: the thesis grid up to 2000). The full budget
    caps it at 400: past a few hundred trees a forest's votes no longer change, while its refit,
    its artifact and every served prediction grow with each tree (uncapped, the forest took eight
    of a full retrain's sixteen minutes)."""
    search_row_stride: int
    """Searches see every n-th row of each experiment: rows 100 ms apart are near duplicates, so
    thinning them costs little signal and divides search time. The winner is refit on all rows."""
    automl_seconds: float
    """Time budget of FLAML, on all cores. The full budget gives it 40 s on 2 cores: searching the
    training experiments alone on one core for 120 s, FLAML found its best configuration at 63 s,
    and the whole retrain must stay within a third of the thesis pipeline's time
    (``bench/train.py``)."""
    autosklearn_seconds: float
    """Time budget of auto-sklearn, which needs more: at 45 s on a busy 2-core machine it finished
    none of its evaluations (each grows 512 trees on every fold), at 120 s six."""

    def automl_seconds_for(self, engine: str) -> float:
        """The time budget of the AutoML engine called ``engine``."""
        if engine == AutoMLEngineName.AUTO_SKLEARN:
            return self.autosklearn_seconds
        return self.automl_seconds


BUDGETS: dict[Budget, SearchBudget] = {
    Budget.FAST: SearchBudget(
        tree_iterations=6,
        forest_iterations=2,
        cv_folds=3,
        max_trees=40,
        search_row_stride=8,
        automl_seconds=5.0,
        autosklearn_seconds=30.0,
    ),
    Budget.FULL: SearchBudget(
        tree_iterations=60,
        forest_iterations=6,
        cv_folds=4,
        max_trees=400,
        search_row_stride=8,
        automl_seconds=40.0,
        autosklearn_seconds=120.0,
    ),
}
