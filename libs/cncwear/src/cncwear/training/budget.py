"""Search budgets: how much a retrain may spend on each candidate. How the figures were chosen:
``docs/automl.md``, "Lab notes"."""

from __future__ import annotations

from dataclasses import dataclass

from cncwear.core.choices import Budget


@dataclass(frozen=True)
class SearchBudget:
    tree_iterations: int
    """Randomized-search draws for the decision tree."""
    forest_iterations: int
    """Randomized-search draws for the random forest."""
    cv_folds: int
    """Grouped cross-validation folds inside the training experiments."""
    max_trees: int | None
    """Cap on the forest's n_estimators grid (None: the thesis grid up to 2000): past a few hundred
    trees a forest's votes no longer change, while its refit, its artifact and every served
    prediction grow with each tree."""
    search_row_stride: int
    """Searches see every n-th row of each experiment: rows 100 ms apart are near duplicates, so
    thinning them costs little signal and divides search time. The winner is refit on all rows."""
    flaml_iterations: int
    """Trials of FLAML's search. A count, not a time: bounded by wall time, how far FLAML got
    depended on the machine's load, so two retrains on the same data and seed could promote
    different models. Counted trials make the search repeatable."""
    autosklearn_seconds: float
    """Time budget of auto-sklearn, whose search only a time bounds; each evaluation grows 512
    trees on every fold, so a short budget finishes none."""


BUDGETS: dict[Budget, SearchBudget] = {
    Budget.FAST: SearchBudget(
        tree_iterations=6,
        forest_iterations=2,
        cv_folds=3,
        max_trees=40,
        search_row_stride=8,
        flaml_iterations=60,
        autosklearn_seconds=30.0,
    ),
    Budget.FULL: SearchBudget(
        tree_iterations=60,
        forest_iterations=6,
        cv_folds=4,
        max_trees=400,
        search_row_stride=8,
        flaml_iterations=500,
        autosklearn_seconds=120.0,
    ),
}
