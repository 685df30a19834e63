"""One set of explainers per model version, rebuilt when the served version changes."""

from __future__ import annotations

import threading
from typing import Any

from sklearn.pipeline import Pipeline

from cncwear.core.settings import Settings
from cncwear.explain.explainers import Explainers


class ExplainerCache:
    """Holds the explainers of the last version asked for. ``get`` returns them when the version
    is the same and builds new ones otherwise (one build at a time; the old set keeps serving
    callers that already hold it). Building takes well under a second for tree models; call it
    off the event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._current: Explainers | None = None
        self._lock = threading.Lock()

    def get(self, pipeline: Pipeline, profile: dict[str, Any], version: str) -> Explainers:
        current = self._current
        if current is not None and current.version == version:
            return current
        with self._lock:
            if self._current is None or self._current.version != version:
                self._current = Explainers.build(pipeline, profile, version, self.settings)
            return self._current

    @property
    def current(self) -> Explainers | None:
        return self._current
