"""What several resources' schemas share: a raw row's cell, a label, a run id, the model that
answered."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel
from pydantic.json_schema import WithJsonSchema

from cncwear.core.errors import InvalidRunIdError
from cncwear.data.runs.ids import RUN_ID_PATTERN, check_run_id

JsonScalar = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]})
]
"""A cell of a raw row as sent: a number, text (the machining step) or null. Cells are checked by
``cncwear.serving.batch`` against the model's schema, not here: one pydantic error per bad cell (and
per type of a union) would let a body of a few megabytes cost minutes."""

Label = Literal["unworn", "worn"]


def _run_id(value: str) -> str:
    """The library's rule (``check_run_id``), as a pydantic error: a 422 naming the field."""
    try:
        return check_run_id(value)
    except InvalidRunIdError as error:
        raise ValueError(str(error)) from None


RunId = Annotated[
    str,
    AfterValidator(_run_id),
    WithJsonSchema({"type": "string", "pattern": RUN_ID_PATTERN, "maxLength": 128}),
]
"""A run id: 1 to 128 of ``[A-Za-z0-9._:/-]``, no ``..`` nor empty segment."""


class ModelRef(BaseModel):
    name: str
    version: str


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A request model's JSON schema for a route that reads its body itself, with the models it
    nests written in place: pydantic refers to them as ``#/$defs/...``, a place the OpenAPI
    document does not have."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node and node["$ref"].startswith("#/$defs/"):
                return inline(definitions[node["$ref"].removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined
