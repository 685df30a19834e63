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
