"""Announcing a new champion on Redis: a hint that never fails a retrain."""

from __future__ import annotations

import uuid

import pytest
import redis

from cncwear.core.settings import Settings
from cncwear.registry.events import PromotionEvent, promotion_channel, publish_promotion


def test_a_promotion_is_announced_on_the_models_channel() -> None:
    settings = Settings(model_name=f"events-{uuid.uuid4().hex[:8]}")
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"this test needs the Redis at {settings.redis_url}: {error}")
    pubsub = client.pubsub()
    pubsub.subscribe(promotion_channel(settings))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    assert publish_promotion(settings, "7", previous="6")
    message = pubsub.get_message(timeout=5)
    pubsub.close()
    client.close()
    assert message is not None
    assert PromotionEvent.from_json(message["data"]) == PromotionEvent(
        model=settings.model_name, version="7", alias="champion", previous="6"
    )


def test_announcing_with_redis_down_returns_false_instead_of_failing() -> None:
    assert not publish_promotion(Settings(redis_url="redis://127.0.0.1:9/0"), "3")


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b'{"model": "m"}', b"\xff"])
def test_a_message_that_is_not_an_announcement_is_ignored(data: bytes) -> None:
    assert PromotionEvent.from_json(data) is None
