"""Announcing a new champion on Redis pub/sub, so that prediction servers swap at once instead of at
their next poll of the registry.

An announcement is only a hint: a server that hears one re-reads the champion alias from the
registry, which stays the one source of truth. So a lost, late, repeated or foreign message does no
harm, and everything keeps working (by polling) while Redis is down.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import redis

from cncwear.core.settings import Settings

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 1.0


def promotion_channel(settings: Settings) -> str:
    """The pub/sub channel of a registered model's promotions."""
    return f"cncwear:{settings.model_name}:promotions"


@dataclass(frozen=True)
class PromotionEvent:
    model: str
    version: str
    alias: str
    previous: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: str | bytes) -> PromotionEvent | None:
        """The event in a message, or None when the message is not one."""
        try:
            payload = json.loads(data)
            return cls(
                model=str(payload["model"]),
                version=str(payload["version"]),
                alias=str(payload["alias"]),
                previous=None if payload.get("previous") is None else str(payload["previous"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


def publish_promotion(settings: Settings, version: str, *, previous: str | None = None) -> bool:
    """Announce that ``version`` now holds the champion alias. Never raises: returns False (and logs
    a warning) when Redis cannot be reached, since servers notice the new champion by polling."""
    event = PromotionEvent(
        model=settings.model_name,
        version=version,
        alias=settings.champion_alias,
        previous=previous,
    )
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    try:
        listeners = client.publish(promotion_channel(settings), event.to_json())
    except redis.RedisError as error:
        logger.warning(
            "could not announce champion %s on Redis (%s): servers will notice at their next poll",
            version, type(error).__name__,
        )  # fmt: skip
        return False
    finally:
        client.close()
    logger.info("announced champion %s to %d listening server(s)", version, listeners)
    return True
