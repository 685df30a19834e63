"""One router per resource; below, the answers their OpenAPI declarations share."""

from __future__ import annotations

from typing import Any

from cncwear_api.schemas.errors import ErrorResponse

NO_CHAMPION: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "No champion model loaded yet"}
}
