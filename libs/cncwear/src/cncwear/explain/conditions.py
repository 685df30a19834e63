"""Conditions on a feature from the quartile bins LIME and anchors discretise features into.

lime's discretiser names its bins with two decimals (``Z1_ActualPosition <= 0.00``), which erases
the 0.2 mm offsets this model leans on; the bounds here are the exact bin edges, and the text shows
them with enough digits to tell them apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cncwear.explain.results import Condition


def bin_edges(discretizer: Any, feature: int) -> np.ndarray:
    """Inner edges of a feature's bins in a fitted lime discretiser: bin ``k`` is
    ``edges[k-1] < x <= edges[k]`` (``np.searchsorted`` on the edges, as lime discretises)."""
    return np.asarray(discretizer.maxs[feature][:-1], dtype=float)


def condition(name: str, lower: float | None, upper: float | None) -> Condition:
    if lower is not None and upper is not None:
        text = f"{lower:.6g} < {name} <= {upper:.6g}"
    elif lower is not None:
        text = f"{name} > {lower:.6g}"
    elif upper is not None:
        text = f"{name} <= {upper:.6g}"
    else:
        text = f"{name} is any value"
    return Condition(feature=name, lower=lower, upper=upper, text=text)


def holds(item: Condition, value: float) -> bool:
    above = item.lower is None or value > item.lower
    below = item.upper is None or value <= item.upper
    return above and below


def inside(item: Condition, values: np.ndarray) -> np.ndarray:
    """Which of ``values`` the condition holds for."""
    mask = np.ones(len(values), dtype=bool)
    if item.lower is not None:
        mask &= values > item.lower
    if item.upper is not None:
        mask &= values <= item.upper
    return mask


def coverage(conditions: list[Condition], reference: np.ndarray, columns: list[str]) -> float:
    """Share of the reference rows (columns named by ``columns``) that every condition holds for."""
    covered = np.ones(len(reference), dtype=bool)
    for item in conditions:
        covered &= inside(item, reference[:, columns.index(item.feature)])
    return float(np.mean(covered))


def draw_under(
    reference: np.ndarray,
    columns: list[str],
    conditions: list[Condition],
    rows: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Reference rows drawn at random with the conditions imposed: a value outside a condition is
    replaced by a reference value inside it (as anchor-exp's sampler does)."""
    drawn = reference[rng.integers(0, len(reference), rows)].copy()
    for item in conditions:
        column = columns.index(item.feature)
        values = reference[:, column]
        options = values[inside(item, values)]
        outside = ~inside(item, drawn[:, column])
        if not len(options):  # no reference value inside: a value of the interval
            if item.upper is not None:
                options = np.array([item.upper])
            elif item.lower is not None:
                options = np.array([np.nextafter(item.lower, np.inf)])
        drawn[outside, column] = rng.choice(options, int(outside.sum()))
    return drawn
