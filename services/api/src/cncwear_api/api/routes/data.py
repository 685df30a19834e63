"""``/data``: the dataset versions (the base data plus accepted runs, named by a content hash) and
the model versions trained on each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from cncwear.data.runs.records import DatasetVersion
from cncwear.registry.store import ModelStore
from cncwear_api.api.deps import HolderDep
from cncwear_api.api.routes.runs import RunsDep
from cncwear_api.schemas.data import DataVersionPublic
from cncwear_api.schemas.errors import ErrorResponse
from cncwear_api.serving.runs import Runs

router = APIRouter(prefix="/data", tags=["data"])

VERSION_ID = r"^[0-9a-f]{8,64}$"


@router.get(
    "/versions",
    response_model=list[DataVersionPublic],
    summary="Dataset versions, newest first",
    description=(
        "Each version's id (a content hash), its parts (the base data: bundled or "
        "`CNCWEAR_DATA_DIR`; and the accepted runs), its counts by label, when it was made, and "
        "the registered model versions trained on it. The current one (made now if the runs or "
        "the base changed), which a retrain would train on, is marked `current`."
    ),
)
async def list_versions(
    runs: RunsDep, holder: HolderDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[DataVersionPublic]:
    return await run_in_threadpool(_versions, runs, holder.store, limit)


@router.get(
    "/versions/{version_id}",
    response_model=DataVersionPublic,
    summary="One dataset version",
    responses={404: {"model": ErrorResponse, "description": "No such dataset version"}},
)
async def get_version(
    runs: RunsDep,
    holder: HolderDep,
    version_id: Annotated[str, Path(pattern=VERSION_ID)],
) -> DataVersionPublic:
    return await run_in_threadpool(_version, runs, holder.store, version_id)


def _versions(runs: Runs, models: ModelStore, limit: int) -> list[DataVersionPublic]:
    current = runs.store.current_version(runs.base()).id
    return [_public(version, models, current) for version in runs.store.versions(limit=limit)]


def _version(runs: Runs, models: ModelStore, version_id: str) -> DataVersionPublic:
    version = runs.store.version(version_id)
    return _public(version, models, runs.store.current_version(runs.base()).id)


def _public(version: DatasetVersion, models: ModelStore, current: str) -> DataVersionPublic:
    return DataVersionPublic.of(
        version, models.versions_trained_on(version.id), current=version.id == current
    )
