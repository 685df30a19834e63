"""``/data``: the dataset versions models are trained on."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cncwear.data.runs.records import DatasetVersion
from cncwear_api.schemas.runs import RunLabelPublic


class BaseDataPublic(BaseModel):
    source: str = Field(description="`bundled`, or the CNCWEAR_DATA_DIR folder")
    content_hash: str
    experiments: int


class VersionRunPublic(BaseModel):
    run: str
    group: int = Field(description="Its group (experiment number) in training")
    label: RunLabelPublic
    content_hash: str
    rows: int


class DataPartsPublic(BaseModel):
    base: BaseDataPublic
    runs: list[VersionRunPublic]


class DataVersionPublic(BaseModel):
    id: str = Field(description="Content hash of the base data and the runs")
    made_at: float
    parts: DataPartsPublic
    counts: dict[str, dict[str, int]] = Field(
        description="Groups by label: of the base (`base`), of the runs (`runs`), in all (`all`)"
    )
    model_versions: list[str] = Field(description="Registered model versions trained on it")
    current: bool = Field(
        description="The version of the base data and the runs accepted now: what a retrain "
        "trains on unless told otherwise"
    )

    @classmethod
    def of(
        cls, version: DatasetVersion, model_versions: list[str], *, current: bool
    ) -> DataVersionPublic:
        fields = {**version.as_dict(), "model_versions": model_versions, "current": current}
        return cls.model_validate(fields)
