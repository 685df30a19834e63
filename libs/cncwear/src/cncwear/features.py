"""The feature steps under the name that models registered before the layered layout use.

A registered pipeline (skops) names each step's class by its module: versions trained before the
feature steps moved to :mod:`cncwear.data.features` say ``cncwear.features``, and a registry keeps
them for as long as it is used. This name keeps them loadable; new versions name the new module.
"""

from cncwear.data.features import (
    ColumnDropper,
    CommandActualDifference,
    CumulativeImportanceSelector,
)

__all__ = ["ColumnDropper", "CommandActualDifference", "CumulativeImportanceSelector"]
