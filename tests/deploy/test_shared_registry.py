"""What changes when the registry is shared (an MLflow server or a database that processes on
several machines reach): the artifact location is configurable, promotions take turns through
Redis instead of a lock file, and API replicas must be given their token."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from cncwear.core.settings import PromotionLock, Settings
from cncwear.registry.store import ModelStore
from cncwear_api.core.security import TokenNotConfiguredError, resolve_api_token
from cncwear_api.core.settings import ApiSettings

from .conftest import BIN, clean_environment

SHARED = ["http://mlflow:5000", "https://mlflow.example.com", "postgresql+psycopg://u@db/mlflow"]
LOCAL = [None, "sqlite:///tmp/mlflow.db", "file:///tmp/mlruns", "/tmp/mlruns"]


@pytest.mark.parametrize("uri", SHARED)
def test_a_server_or_a_database_is_a_shared_registry(uri: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=uri)
    assert settings.registry_is_shared()
    assert settings.uses_redis_promotion_lock()
    assert settings.artifact_location() is None  # the server decides


@pytest.mark.parametrize("uri", LOCAL)
def test_the_embedded_store_and_local_folders_are_not(uri: str | None, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", mlflow_tracking_uri=uri)
    assert not settings.registry_is_shared()
    assert not settings.uses_redis_promotion_lock()


def test_the_artifact_location_of_new_experiments_is_a_setting(tmp_path: Path) -> None:
    shared = Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri="http://mlflow:5000",
        mlflow_artifact_location="s3://models/cncwear",
    )
    assert shared.artifact_location() == "s3://models/cncwear"
    local = Settings(home=tmp_path / "home")
    assert local.artifact_location() == (tmp_path / "home" / "artifacts").resolve().as_uri()


def test_an_explicit_lock_choice_wins(tmp_path: Path) -> None:
    forced = Settings(home=tmp_path / "home", promotion_lock=PromotionLock.REDIS)
    assert forced.uses_redis_promotion_lock()
    kept = Settings(
        home=tmp_path / "home",
        mlflow_tracking_uri="http://mlflow:5000",
        promotion_lock=PromotionLock.FILE,
    )
    assert not kept.uses_redis_promotion_lock()


def test_promotions_on_a_shared_registry_take_turns_through_redis(
    redis_url: str, tmp_path: Path
) -> None:
    """Two stores (two workers' views) of one shared registry: the second waits for the first to
    leave the promotion lock, and neither writes a lock file."""
    settings = Settings(
        home=tmp_path / "home", mlflow_tracking_uri="http://127.0.0.1:9", redis_url=redis_url
    )
    first, second = ModelStore(settings), ModelStore(settings)
    events: list[str] = []
    inside = threading.Event()

    def hold() -> None:
        with first.promotion_lock():
            events.append("first in")
            inside.set()
            time.sleep(1.0)
            events.append("first out")

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(30)
    with second.promotion_lock():
        events.append("second in")
    holder.join()
    assert events == ["first in", "first out", "second in"]
    assert not settings.home.exists()


def test_api_replicas_of_a_shared_registry_must_be_given_the_token(tmp_path: Path) -> None:
    shared = ApiSettings(home=tmp_path / "home", mlflow_tracking_uri="http://mlflow:5000")
    with pytest.raises(TokenNotConfiguredError, match="CNCWEAR_API_TOKEN"):
        resolve_api_token(shared)
    given = shared.model_copy(update={"api_token": SecretStr("shared-secret")})
    assert resolve_api_token(given).get_secret_value() == "shared-secret"
    assert not shared.home.exists()
    # On one machine a token is still generated into the home folder.
    local = ApiSettings(home=tmp_path / "home")
    assert resolve_api_token(local).get_secret_value()
    assert (tmp_path / "home" / "api-token").is_file()


def test_the_worker_health_check_fails_when_no_worker_answers(redis_url: str) -> None:
    env = {**clean_environment(), "CNCWEAR_REDIS_URL": redis_url}
    result = subprocess.run(
        [str(BIN / "cncwear-trainer"), "ping"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no worker on this host answered" in result.stdout
