"""``cncwear-bridge``: the MQTT bridge as a process, configured by environment variables alone."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from cncwear_bridge.api import Api
from cncwear_bridge.bridge import Bridge
from cncwear_bridge.mapping import Mapping
from cncwear_bridge.metrics import serve_metrics
from cncwear_bridge.settings import broker_for_logs, get_settings

logger = logging.getLogger(__name__)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )  # fmt: skip
    settings = get_settings()
    if settings.mqtt_url is None:
        sys.exit("cncwear-bridge: set CNCWEAR_MQTT_URL (mqtt://host:1883) to the broker to bridge")
    try:
        mapping = None if settings.mqtt_mapping is None else Mapping.load(settings.mqtt_mapping)
    except (OSError, ValueError) as error:
        sys.exit(f"cncwear-bridge: the mapping file: {error}")
    if settings.bridge_metrics_port:
        serve_metrics(settings.bridge_metrics_host, settings.bridge_metrics_port)
    bridge = Bridge(settings, Api(settings), mapping)

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info("stopping (signal %d): what is not acknowledged stays with the broker", signum)
        bridge.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info(
        "bridging %s (topics %s) to %s", broker_for_logs(settings.mqtt_url), settings.mqtt_topics,
        settings.bridge_api_url,
    )  # fmt: skip
    bridge.start()
    bridge.run()
