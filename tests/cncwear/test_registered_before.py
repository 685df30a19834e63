"""Models registered before the layered layout name their feature steps ``cncwear.features``: a
registry written then must still load under the layout."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import skops.io
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.schema import input_columns
from cncwear.data.dataset import Dataset
from cncwear.data.features import build_pipeline


def as_saved_before_the_layout(data: bytes) -> bytes:
    """A skops file with every class of the feature steps named as before the move."""
    source, target = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            content = source.read(item)
            if item.filename == "schema.json":
                schema = content.decode().replace('"cncwear.data.features"', '"cncwear.features"')
                assert '"cncwear.features"' in schema
                content = schema.encode()
            out.writestr(item, content)
    return target.getvalue()


def test_a_pipeline_saved_under_the_old_module_names_loads_and_scores_the_same(
    dataset: Dataset,
) -> None:
    rows = dataset.active().rows
    columns = input_columns(use_identifying_columns=False)
    pipeline = build_pipeline(
        DecisionTreeClassifier(max_depth=3), use_identifying_columns=False, seed=0
    )
    pipeline.fit(rows[columns], rows["label"])
    old = as_saved_before_the_layout(skops.io.dumps(pipeline))
    trusted = skops.io.get_untrusted_types(data=old)
    assert any(name.startswith("cncwear.features.") for name in trusted), trusted
    loaded = skops.io.loads(old, trusted=trusted)
    sample = pd.DataFrame(rows[columns].head(50))
    assert (loaded.predict_proba(sample) == pipeline.predict_proba(sample)).all()
