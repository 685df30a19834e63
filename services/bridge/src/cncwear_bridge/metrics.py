"""The bridge's Prometheus metrics, served on its own port (``CNCWEAR_BRIDGE_METRICS_PORT``)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds from a message's arrival to its verdict: a batch waits up to CNCWEAR_BRIDGE_BATCH_MS."""

MESSAGES = Counter(
    "cncwear_bridge_messages", "Messages received from the broker, by kind.", ["kind"]
)
ROWS = Counter("cncwear_bridge_rows_scored", "Rows scored through the API.")
BATCHES = Counter("cncwear_bridge_batches", "Batches scored through the API.")
REJECTED = Counter(
    "cncwear_bridge_rejected_messages",
    "Messages published on a rejected topic, by reason (not_json, invalid_rows, ...).",
    ["reason"],
)
LATENCY = Histogram(
    "cncwear_bridge_latency_seconds",
    "From a message's arrival at the bridge to the publication of the verdict that scored it.",
    buckets=LATENCY_BUCKETS,
)
PENDING = Gauge(
    "cncwear_bridge_pending_messages",
    "Messages received and not yet acknowledged (bounded by CNCWEAR_BRIDGE_MAX_PENDING).",
)
RECONNECTS = Counter("cncwear_bridge_reconnects", "Connections to the broker after the first.")
CONNECTED = Gauge("cncwear_bridge_connected", "1 while the bridge is connected to the broker.")
API_RETRIES = Counter(
    "cncwear_bridge_api_retries",
    "Requests to the API tried again because it was unavailable (refused, timed out, 503).",
)


def serve_metrics(host: str, port: int) -> bool:
    """Serve the metrics on ``host:port``; False (logged) when the port is taken."""
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        logger.warning("bridge metrics not served on %s:%d: %s", host, port, error)
        return False
    logger.info("bridge metrics on http://%s:%d/metrics", host, port)
    return True
