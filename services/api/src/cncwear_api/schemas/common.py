"""What several resources' schemas share: a raw row's cell, a label, the model that answered."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import WithJsonSchema

JsonScalar = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]})
]
"""A cell of a raw row as sent: a number, text (the machining step) or null. Cells are checked by
``cncwear.serving.batch`` against the model's schema, not here: one pydantic error per bad cell (and
per type of a union) would let a body of a few megabytes cost minutes."""

Label = Literal["unworn", "worn"]


class ModelRef(BaseModel):
    name: str
    version: str
