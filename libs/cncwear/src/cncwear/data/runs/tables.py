"""The store's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Their names start with ``cncwear_``: the store may share a database with MLflow's (which has a
``runs`` table of its own), as the compose stack's PostgreSQL does.

A run's rows are kept a batch to a database row, as the batch was answered: its readings as one
float64 matrix (the schema's sensor columns, row-major) and its machining steps as JSON. One insert
per ``/predict`` keeps the append cheap, and the batch's autoincrement id orders the run's rows as
they were answered, whichever replica answered them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

RUN_KEY = String(128)
VERSION_KEY = String(32)
# SQLite makes only INTEGER PRIMARY KEY an alias of its rowid (autoincrementing).
BATCH_ID = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "cncwear_runs",
    metadata,
    Column("run", RUN_KEY, primary_key=True),
    Column("state", String(16), nullable=False, index=True),
    Column("source", String(16), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False, index=True),
    Column("labelled_at", Float),
    Column("rows", Integer, nullable=False, default=0),
    Column("active_rows", Integer, nullable=False, default=0),
    Column("truncated", Boolean, nullable=False, default=False),
    Column("tool_condition", String(16)),
    Column("feedrate", Float),
    Column("clamp_pressure", Float),
    Column("material", String(64)),
    Column("content_hash", String(32), index=True),
    Column("reasons", JSON, nullable=False, default=list),
    # Confusion counts of the predictions served for the run, by model version, once labelled.
    Column("live", JSON),
    Column("withdrawn_at", Float),
)

batches = Table(
    "cncwear_run_batches",
    metadata,
    Column("id", BATCH_ID, primary_key=True, autoincrement=True),
    Column("run", RUN_KEY, ForeignKey("cncwear_runs.run", ondelete="CASCADE"), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("numeric", LargeBinary, nullable=False),
    Column("process", Text, nullable=False),
    Column("probability", LargeBinary),
    Column("model_version", String(32)),
    Column("request_id", String(64)),
    Index("ix_cncwear_run_batches_run_id", "run", "id"),
)

versions = Table(
    "cncwear_dataset_versions",
    metadata,
    Column("id", VERSION_KEY, primary_key=True),
    Column("made_at", Float, nullable=False, index=True),
    Column("base_hash", String(32), nullable=False),
    Column("base_source", Text, nullable=False),
    Column("base_experiments", JSON, nullable=False),
    Column("counts", JSON, nullable=False),
)

version_runs = Table(
    "cncwear_dataset_version_runs",
    metadata,
    Column("version", VERSION_KEY, ForeignKey("cncwear_dataset_versions.id"), primary_key=True),
    Column("run", RUN_KEY, primary_key=True, index=True),
    Column("group", Integer, nullable=False),
    Column("tool_condition", String(16), nullable=False),
    Column("feedrate", Float),
    Column("clamp_pressure", Float),
    Column("material", String(64)),
    Column("content_hash", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
)

drift = Table(
    "cncwear_run_drift",
    metadata,
    Column("run", RUN_KEY, ForeignKey("cncwear_runs.run", ondelete="CASCADE"), primary_key=True),
    Column("model_version", String(32), primary_key=True),
    Column("judged_at", Float, nullable=False, index=True),
    Column("rows", Integer, nullable=False),
    Column("drifted", Boolean, nullable=False),
    Column("drifted_features", JSON, nullable=False, default=list),
)
"""Each run's latest drift verdict by the model version that judged it (its null)."""

shadow = Table(
    "cncwear_run_shadow",
    metadata,
    Column("run", RUN_KEY, ForeignKey("cncwear_runs.run", ondelete="CASCADE"), primary_key=True),
    Column("model_version", VERSION_KEY, primary_key=True),
    Column("first_row", Integer, primary_key=True),
    Column("rows", Integer, nullable=False),
    Column("probability", LargeBinary, nullable=False),
    Column("scored_at", Float, nullable=False),
)
"""What a challenger in shadow predicted for a run's rows: one database row per ``/predict``
batch it scored, ``first_row`` its position in the run (rows as answered, from 0)."""

counters = Table(
    "cncwear_counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
