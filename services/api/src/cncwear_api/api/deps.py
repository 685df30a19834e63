"""Dependencies of the routes, as ``Annotated`` aliases.

Everything lives in the lifespan state (shallow-copied per request); the served model sits in the
mutable :class:`ModelHolder`, so a swap is seen by the next request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cncwear_api.api.errors import ModelNotReadyError, UnauthorizedError
from cncwear_api.api.json_body import refuse_duplicate_keys
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.security import token_matches
from cncwear_api.core.settings import ApiSettings
from cncwear_api.serving.holder import ModelHolder, ServedModel

NOT_READY = (
    "no champion model is loaded yet: the registry has no version under the alias {alias!r} of "
    "{name!r} (or it could not be loaded). Train and promote one (`cncwear train`); this server "
    "picks it up without a restart."
)


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.state.settings
    return settings


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.state.holder
    return holder


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.state.metrics
    return metrics


async def get_challenger_holder(request: Request) -> ModelHolder | None:
    """The challenger's holder; None when this server loads no challenger (``offline``)."""
    holder: ModelHolder | None = request.state.challenger
    return holder


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
ChallengerHolderDep = Annotated[ModelHolder | None, Depends(get_challenger_holder)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]


async def current_model(request: Request) -> ServedModel:
    """The model serving this request (503 before there is one). It is also named in the request's
    log line. (No sub-dependencies: this is on the hot path of every prediction.)"""
    state = request.state
    served: ServedModel | None = state.holder.current
    if served is None:
        settings: ApiSettings = state.settings
        raise ModelNotReadyError(
            NOT_READY.format(alias=settings.champion_alias, name=settings.model_name)
        )
    state.model_version = served.version
    return served


CurrentModel = Annotated[ServedModel, Depends(current_model)]

bearer = HTTPBearer(auto_error=False, description="The API token (CNCWEAR_API_TOKEN).")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def require_token(request: Request, credentials: Credentials) -> None:
    """Mutating endpoints: a valid ``Authorization: Bearer <token>`` or 401."""
    if credentials is None:
        raise UnauthorizedError("this endpoint needs 'Authorization: Bearer <API token>'")
    if not token_matches(request.state.api_token, credentials.credentials):
        raise UnauthorizedError("invalid API token")


WriteAccess = Depends(require_token)
"""On mutating endpoints. (With ``protect_reads`` set, the app factory also puts it on the
read-only routers when it includes them: open reads then carry no dependency at all.)"""

NoDuplicateKeys = Depends(refuse_duplicate_keys)
"""For routes whose body FastAPI parses: a key given twice gets 422, as on every route."""
