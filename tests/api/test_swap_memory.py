"""A swap lets go of the model it replaces before it freezes the heap (``settle_heap``): what is
alive then is moved out of reach of full garbage collections, so a replaced model still referenced
at that moment would keep whatever cycles it has until the next swap."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.serving.holder import ModelHolder

from .conftest import Registry


def test_after_a_swap_the_replaced_model_is_freed_before_the_heap_is_frozen(
    registry: Registry,
) -> None:
    name, (first, second) = registry.new_model(
        registry.compiled_version, registry.fallback_version, champion=registry.compiled_version
    )
    store = registry.store(name)
    holder = ModelHolder(store, ApiMetrics())
    gc.unfreeze()
    try:
        served = holder.refresh()
        assert served is not None and served.version == first
        old_model, old_pipeline = weakref.ref(served), weakref.ref(served.pipeline)
        del served
        store.set_champion(second)

        alive_at_full_collection: list[bool] = []

        def note(phase: str, info: dict[str, Any]) -> None:
            if phase == "stop" and info["generation"] == 2:
                alive_at_full_collection.append(old_pipeline() is not None)

        gc.callbacks.append(note)
        try:
            swapped = holder.refresh()
        finally:
            gc.callbacks.remove(note)
        assert swapped is not None and swapped.version == second
        # The last full collection of the swap is the one just before the freeze.
        assert alive_at_full_collection, "the swap did not collect before freezing"
        assert not alive_at_full_collection[-1], "the replaced model was alive when frozen"
        gc.collect()
        assert old_model() is None and old_pipeline() is None
    finally:
        gc.unfreeze()
