"""The README's settings table names every environment variable the settings classes read, and
nothing else: a setting added without a row, or a row left behind by a removed setting, fails."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from cncwear.core.settings import Settings
from cncwear_api.core.settings import ApiSettings
from cncwear_bridge.settings import BridgeSettings
from cncwear_trainer.settings import TrainerSettings

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| variable | default | meaning |"
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]*)`")
EVERY_SETTINGS = (Settings, ApiSettings, TrainerSettings, BridgeSettings)


def environment_names(settings: type[BaseSettings]) -> set[str]:
    """The variables ``settings`` reads: ``<prefix><FIELD>``, or a field's own aliases."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {choice for choice in alias.choices if isinstance(choice, str)}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}")
    return {name.upper() for name in names}


def documented_names(text: str) -> list[str]:
    """The variables in the first column of the README's settings table (the table whose rows
    name ``CNCWEAR_*`` variables)."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != HEADER:
            continue
        rows = []
        for row in lines[start + 2 :]:
            if not row.startswith("|"):
                break
            rows.append(row.split("|")[1])
        names = [name for cell in rows for name in VARIABLE.findall(cell)]
        if any(name.startswith("CNCWEAR_") for name in names):
            return names
    raise AssertionError(f"no settings table ({HEADER}) in {README}")


def test_the_environment_names_include_prefixes_and_aliases() -> None:
    names = environment_names(Settings)
    assert {"CNCWEAR_HOME", "MLFLOW_TRACKING_URI", "CNCWEAR_MLFLOW_TRACKING_URI"} <= names
    assert "CNCWEAR_WORKER_METRICS_PORT" in environment_names(TrainerSettings) - names
    assert "CNCWEAR_LOG_FORMAT" in environment_names(ApiSettings) - names


def test_every_setting_has_a_row_in_the_readme() -> None:
    read = set().union(*(environment_names(s) for s in EVERY_SETTINGS))
    documented = set(documented_names(README.read_text()))
    missing = sorted(read - documented)
    assert missing == [], f"add these settings to the README's settings table: {missing}"


def test_every_row_of_the_readme_names_a_setting() -> None:
    read = set().union(*(environment_names(s) for s in EVERY_SETTINGS))
    documented = documented_names(README.read_text())
    unknown = sorted(set(documented) - read)
    assert unknown == [], f"the README's settings table names variables no setting reads: {unknown}"
    repeated = sorted({name for name in documented if documented.count(name) > 1})
    assert repeated == [], f"the README's settings table has more than one row for: {repeated}"
