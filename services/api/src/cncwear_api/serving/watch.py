"""Noticing a new champion without a restart: poll the registry every few seconds, and at once when
a retrain announces a promotion on Redis. Redis is optional: while it is down, polling goes on."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cncwear.core.settings import Settings
from cncwear.registry.events import PromotionEvent, promotion_channel
from cncwear_api.serving.holder import ModelHolder

logger = logging.getLogger(__name__)

MAX_RECONNECT_SECONDS = 30.0


async def watch_registry(
    holder: ModelHolder,
    interval: float,
    wake: asyncio.Event,
    challenger: ModelHolder | None = None,
) -> None:
    """Refresh the served model (and the challenger, when this server loads one) now, then every
    ``interval`` seconds or when ``wake`` is set."""
    while True:
        wake.clear()
        await asyncio.to_thread(holder.refresh)
        if challenger is not None:
            await asyncio.to_thread(challenger.refresh)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=interval)


async def listen_for_promotions(settings: Settings, wake: asyncio.Event) -> None:
    """Set ``wake`` whenever a promotion of this model is announced; reconnect with backoff, and
    check the registry after each reconnection (announcements may have been missed meanwhile)."""
    channel = promotion_channel(settings)
    delay = 1.0
    outage_logged = False
    while True:
        client = aioredis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=2.0, health_check_interval=15
        )
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                logger.info("listening for promotions on Redis channel %s", channel)
                if outage_logged:
                    wake.set()
                delay, outage_logged = 1.0, False
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    event = PromotionEvent.from_json(message["data"])
                    if event is not None and event.model == settings.model_name:
                        logger.info("promotion of version %s announced", event.version)
                        wake.set()
        except (RedisError, OSError) as error:
            if not outage_logged:
                logger.warning(
                    "Redis unavailable (%s): new champions are noticed by polling only until it "
                    "is back",
                    type(error).__name__,
                )
                outage_logged = True
        finally:
            await client.aclose()
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RECONNECT_SECONDS)
