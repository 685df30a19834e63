"""The bridge's settings: a broker password given in the URL never reaches the logs."""

from __future__ import annotations

import pytest

from cncwear_bridge.settings import BridgeSettings, broker_for_logs


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("mqtt://line-3:s3cret@broker.shop:1883", "mqtt://line-3:***@broker.shop:1883"),
        ("mqtts://line-3:s3cret@broker.shop", "mqtts://line-3:***@broker.shop"),
        ("mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
    ],
)
def test_the_broker_url_is_logged_without_its_password(url: str, logged: str) -> None:
    assert broker_for_logs(url) == logged


def test_a_broker_url_of_another_scheme_is_refused_naming_the_schemes() -> None:
    with pytest.raises(ValueError, match="scheme must be one of"):
        BridgeSettings(mqtt_url="http://broker.shop")
