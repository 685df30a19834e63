"""The champion over time: none yet, the first one, and swaps without a restart."""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
import pytest

from cncwear.core.settings import Settings
from cncwear.registry.events import publish_promotion
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.serving.holder import ModelHolder

from .conftest import Registry, RunningServer, records, serve, v2_inputs, wait_until

NO_REDIS = "redis://127.0.0.1:9/0"
"""Nothing listens there: Redis is down."""


def test_before_a_champion_exists_ready_says_no_and_predict_answers_503(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, _ = registry.new_model()  # registered, but no version holds the alias
    with serve(registry.settings(model_name=name)) as running, running.client() as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        response = client.post("/predict", json={"rows": records(real_rows.head(2))})
        assert response.status_code == 503
        assert "no champion" in response.json()["detail"]
        assert "Retry-After" in response.headers
        assert client.get("/model").status_code == 503


def test_a_model_name_unknown_to_the_registry_is_not_ready_either(registry: Registry) -> None:
    with (
        serve(registry.settings(model_name="never-registered")) as running,
        running.client() as client,
    ):
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503


def test_the_first_champion_is_served_without_a_restart(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, (version,) = registry.new_model(registry.compiled_version)
    with serve(registry.settings(model_name=name, poll_interval_seconds=0.2)) as running:
        with running.client() as client:
            assert client.get("/ready").status_code == 503
            registry.store(name).client.set_registered_model_alias(name, "champion", version)
            running.wait_ready(version)
            response = client.post("/predict", json={"rows": records(real_rows.head(2))})
        assert response.status_code == 200
        assert response.json()["model"] == {"name": name, "version": version}


@dataclass
class SteadyClient:
    """Sends single rows and small batches without pause, from a thread, recording every answer."""

    url: str
    rows: list[dict[str, Any]]
    statuses: Counter[int] = field(default_factory=Counter)
    versions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            sent = 0
            while not self.stop.is_set():
                batch = self.rows[:1] if sent % 4 else self.rows
                try:
                    response = self.send(client, batch)
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                self.statuses[response.status_code] += 1
                if response.status_code == 200:
                    self.versions.append(self.version_of(response.json()))
                sent += 1

    def send(self, client: httpx.Client, batch: list[dict[str, Any]]) -> httpx.Response:
        return client.post("/predict", json={"rows": batch})

    def version_of(self, answer: dict[str, Any]) -> str:
        return str(answer["model"]["version"])

    def seen(self, version: str, times: int = 1) -> bool:
        return self.versions.count(version) >= times


@pytest.mark.usefixtures("redis_available")
def test_an_announced_promotion_swaps_at_once_while_clients_keep_sending(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, (old, new) = registry.new_model(
        registry.fallback_version, registry.compiled_version, champion=registry.fallback_version
    )
    # Polling once an hour: only the announcement can explain a swap within the test.
    settings = registry.settings(model_name=name, poll_interval_seconds=3600.0)
    with serve(settings) as running:
        running.wait_ready(old)
        wait_until(lambda: _listening(settings), "the server to subscribe to promotions")
        steady = SteadyClient(running.url, records(real_rows.head(50)))

        def announce() -> None:
            registry.store(name).set_champion(new)
            assert publish_promotion(settings, new, previous=old)

        keep_sending_through_a_swap(steady, old, new, announce)
    assert_switched_once_without_failures(steady, old, new)


def keep_sending_through_a_swap(
    steady: SteadyClient, old: str, new: str, swap: Callable[[], object]
) -> None:
    """``steady`` sends from a thread of its own: 20 answers from ``old``, then ``swap``, then
    until 20 answers come from ``new``."""
    thread = threading.Thread(target=steady.run, daemon=True)
    thread.start()
    wait_until(
        lambda: steady.seen(old, 20), f"answers from the old champion ({type(steady).__name__})"
    )
    swap()
    wait_until(
        lambda: steady.seen(new, 20), f"answers from the new champion ({type(steady).__name__})"
    )
    steady.stop.set()
    thread.join(timeout=30)


def assert_switched_once_without_failures(steady: SteadyClient, old: str, new: str) -> None:
    assert steady.errors == []
    assert set(steady.statuses) == {200}
    switch = steady.versions.index(new)
    assert set(steady.versions[:switch]) == {old}
    assert set(steady.versions[switch:]) == {new}  # once switched, never back


@dataclass
class SteadyV2Client(SteadyClient):
    """The same, through the Open Inference Protocol's ``infer`` (one input per column)."""

    model: str = ""

    def send(self, client: httpx.Client, batch: list[dict[str, Any]]) -> httpx.Response:
        inputs = v2_inputs(batch)
        return client.post(f"/v2/models/{self.model}/infer", json={"inputs": inputs})

    def version_of(self, answer: dict[str, Any]) -> str:
        return str(answer["model_version"])


def test_a_swap_while_clients_keep_calling_the_v2_route_fails_no_request(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, (old, new) = registry.new_model(
        registry.fallback_version, registry.compiled_version, champion=registry.fallback_version
    )
    settings = registry.settings(model_name=name, poll_interval_seconds=0.2)
    with serve(settings) as running:
        running.wait_ready(old)
        steady = SteadyV2Client(running.url, records(real_rows.head(50)), model=name)
        keep_sending_through_a_swap(
            steady, old, new, lambda: registry.store(name).set_champion(new)
        )
    assert_switched_once_without_failures(steady, old, new)


def _listening(settings: Settings) -> bool:
    import redis

    from cncwear.registry.events import promotion_channel

    client = redis.Redis.from_url(settings.redis_url)
    try:
        subscribers = client.pubsub_numsub(promotion_channel(settings))
    finally:
        client.close()
    return bool(subscribers and subscribers[0][1] > 0)


def test_with_redis_down_a_new_champion_is_found_by_polling(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, (old, new) = registry.new_model(
        registry.fallback_version, registry.compiled_version, champion=registry.fallback_version
    )
    settings = registry.settings(model_name=name, poll_interval_seconds=0.5, redis_url=NO_REDIS)
    with serve(settings) as running:
        running.wait_ready(old)
        steady = SteadyClient(running.url, records(real_rows.head(10)))
        thread = threading.Thread(target=steady.run, daemon=True)
        thread.start()
        registry.store(name).set_champion(new)
        assert not publish_promotion(settings, new, previous=old)  # nobody to tell
        wait_until(lambda: steady.seen(new, 5), "answers from the new champion")
        steady.stop.set()
        thread.join(timeout=30)
    assert steady.errors == []
    assert set(steady.statuses) == {200}


def test_a_champion_that_cannot_be_loaded_leaves_the_current_one_serving(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, (good,) = registry.new_model(
        registry.compiled_version, champion=registry.compiled_version
    )
    client = registry.store(name).client
    broken = client.create_model_version(name, source=str(registry.home / "no-such-model"))
    with serve(registry.settings(model_name=name)) as running:
        running.wait_ready(good)
        client.set_registered_model_alias(name, "champion", str(broken.version))
        with running.client() as http:
            refreshed = http.post("/model/refresh", headers=_token(running))
            assert refreshed.status_code == 200
            assert refreshed.json()["version"] == good
            response = http.post("/predict", json={"rows": records(real_rows.head(2))})
            metrics = http.get("/metrics").text
        assert response.status_code == 200
        assert response.json()["model"]["version"] == good
        assert "cncwear_model_load_failures_total 1.0" in metrics


def _token(running: RunningServer) -> dict[str, str]:
    token = running.settings.token_path().read_text().strip()
    return {"Authorization": f"Bearer {token}"}


def test_after_a_swap_the_long_lived_heap_is_spared_full_garbage_collections(
    registry: Registry,
) -> None:
    """A full collection walking every object of a loaded service stopped requests for about
    300 ms; once a model is in, what is alive is frozen out of those walks."""
    compiled = registry.compiled_version
    name, (version,) = registry.new_model(compiled, champion=compiled)
    gc.unfreeze()
    try:
        served = ModelHolder(registry.store(name), ApiMetrics()).refresh()
        assert served is not None and served.version == version
        assert gc.get_freeze_count() > 100_000
    finally:
        gc.unfreeze()
