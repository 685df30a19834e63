"""Giving a newly registered version its compiled form (training time): compile, check, store.

Apart from :mod:`~cncwear.serving.compiled.artifact` because it needs the converters
(:mod:`~cncwear.serving.compiled.export`: skl2onnx, onnx, LightGBM) that servers do not install; a
server imports ``artifact`` and ``runtime`` only."""

from __future__ import annotations

import logging

import pandas as pd
from sklearn.pipeline import Pipeline

from cncwear.core.errors import CompileError
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.compiled.artifact import (
    compiled_form_tags,
    compiled_tags,
    no_compiled_form_tags,
    upload_compiled_form,
)
from cncwear.serving.compiled.export import compile_and_check

logger = logging.getLogger(__name__)


def attach_compiled_form(
    store: ModelStore, version: str, pipeline: Pipeline, rows: pd.DataFrame
) -> dict[str, str]:
    """Compile a registered version, check parity on ``rows`` (held-out raw rows), store the ONNX
    file and a parity sample among the artifacts of the version's run, and record the outcome as
    version tags. A model that cannot be compiled gets ``cncwear.compiled.format = none`` and the
    reason: it is served by scikit-learn. Idempotent: a version already tagged is left as it is.
    Returns the version's compiled tags."""
    existing = compiled_tags(store, version)
    if Tag.COMPILED_FORMAT in existing:
        return existing
    run_id = store.version_run_id(version)
    try:
        data, converter, report, typed = compile_and_check(pipeline, rows)
        upload_compiled_form(store, run_id, data, typed)
    except Exception as error:  # a compiled form is an optimisation: never fail a retrain for it
        if not isinstance(error, CompileError):
            logger.exception("compiling version %s failed", version)
        logger.warning("version %s will be served by scikit-learn: %s", version, error)
        tags = no_compiled_form_tags(str(error))
        store.tag_version(version, tags)
        return tags
    tags = compiled_form_tags(data, converter, report)
    store.tag_version(version, tags)
    logger.info(
        "version %s compiled by %s: max |difference| %.3g over %d rows",
        version, converter, report.max_abs_diff, report.rows,
    )  # fmt: skip
    return tags
