"""A real broker, a real API and real bridge processes.

The broker is a ``mosquitto`` of the tests' own on a free port (``scripts/test-packages.apt``),
with persistence on, so that one test may SIGKILL and restart it: the machine's Mosquitto on 1883
is never touched. The API is the ``cncwear-api`` console script serving the session's trained
champion (tests/api's registry, trained once per session), one process for the whole package; the
bridge is the ``cncwear-bridge`` console script, one per test, configured by environment only.
"""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.api.conftest import Registry, registry  # noqa: F401  (the session's champion)
from tests.deploy.conftest import BIN, Process, answers, clean_environment, start, wait_until
from tests.helpers import TEST_REDIS_URL, free_port

TOKEN = "bridge-test-token-5d1e"
WAIT_SECONDS = 120.0
"""A bound for things that happen in the background on a loaded machine, not a measured figure."""


class Broker:
    """``mosquitto`` on a free port, its database saved to ``folder`` after every change (a broker
    SIGKILLed keeps what it saved). ``max_queued_messages 0``: it queues whatever a session's
    client has not taken yet (the bridge's backpressure leaves the backlog here)."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto")
        assert binary, "these tests need mosquitto (scripts/test-packages.apt)"
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\n"
            "autosave_interval 1\nautosave_on_changes true\n"
            "max_queued_messages 0\n"
            # Run as root, mosquitto would drop to its own user, who cannot write ``folder``.
            f"user {getpass.getuser()}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = (self.folder / f"mosquitto-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        wait_until(self.answers, "mosquitto to listen", WAIT_SECONDS)

    def answers(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    server = Broker(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Api:
    """The ``cncwear-api`` process; :meth:`stop` and :meth:`start` again on the same port."""

    env: dict[str, str]
    log_folder: Path
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        index = len(list(self.log_folder.glob("api*.log")))
        env = {**self.env, "CNCWEAR_PORT": str(self.port)}
        process = start([str(BIN / "cncwear-api")], env, self.log_folder / f"api{index}.log", "api")
        self.process = process
        wait_until(lambda: answers(f"{self.url}/ready") or not process.running(), "the API")
        assert process.running(), process.output()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=60.0, headers={"Authorization": f"Bearer {TOKEN}"}
        )


@pytest.fixture(scope="package")
def api(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:  # noqa: F811
    """The API serving the session's champion, with a runs store of its own."""
    folder = tmp_path_factory.mktemp("bridge-api")
    env = {
        **clean_environment(),
        "CNCWEAR_HOME": str(registry.home),
        "CNCWEAR_MODEL_NAME": registry.model_name,
        "CNCWEAR_API_TOKEN": TOKEN,
        "CNCWEAR_POLL_INTERVAL_SECONDS": "3600",
        "CNCWEAR_REDIS_URL": TEST_REDIS_URL,
        "CNCWEAR_DATA_STORE_URL": f"sqlite:///{folder}/runs.db",
        "CNCWEAR_RETRAIN_AFTER_RUNS": "0",
        "CNCWEAR_RUN_MIN_ROWS": "1",
    }
    server = Api(env, folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class BridgeProcess:
    process: Process
    metrics_url: str

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample of the bridge's /metrics (0 when absent)."""
        text = httpx.get(self.metrics_url, timeout=5).text
        key = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture
def bridge(broker: Broker, api: Api, tmp_path: Path) -> Iterator[Callable[..., BridgeProcess]]:
    """Starts ``cncwear-bridge`` processes (settings as keyword arguments), stopped at the end."""
    started: list[Process] = []

    def run(**settings: str) -> BridgeProcess:
        port = free_port()
        env = {
            **clean_environment(),
            "CNCWEAR_MQTT_URL": broker.url,
            "CNCWEAR_BRIDGE_API_URL": api.url,
            "CNCWEAR_API_TOKEN": TOKEN,
            "CNCWEAR_MQTT_CLIENT_ID": f"bridge-{uuid.uuid4().hex[:8]}",
            "CNCWEAR_BRIDGE_METRICS_PORT": str(port),
            **{f"CNCWEAR_{k.upper()}": v for k, v in settings.items()},
        }
        log = tmp_path / f"bridge{len(started)}.log"
        process = start([str(BIN / "cncwear-bridge")], env, log, "bridge")
        started.append(process)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: answers(url) or not process.running(), "the bridge's metrics")
        bridge = BridgeProcess(process, url)
        wait_until(
            lambda: bridge.metric("cncwear_bridge_connected") == 1 or not process.running(),
            "the bridge to connect",
        )
        assert process.running(), process.output()
        return bridge

    try:
        yield run
    finally:
        for process in started:
            process.stop()


class Mqtt:
    """A test's own MQTT client: publishes with QoS 1 (waiting for the broker's acknowledgment) and
    collects what arrives on the topics it subscribes to (again at each connection). A
    ``persistent`` one keeps its session at the broker, so what is published for it while it is
    away (the broker restarting) is queued for it."""

    def __init__(self, broker: Broker, *filters: str, persistent: bool = False) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )  # fmt: skip
        self.filters = filters
        self.received: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        properties = None
        if persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self.client.connect(
            "127.0.0.1", broker.port, clean_start=not persistent, properties=properties
        )
        self.client.loop_start()
        if filters:
            assert self.subscribed.wait(30), "no SUBACK"  # what is published next is not missed

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        if self.filters:
            client.subscribe([(f, 1) for f in self.filters])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.received.setdefault(message.topic, []).append(json.loads(message.payload))

    def wait_connected(self) -> None:
        wait_until(self.client.is_connected, "the test client to reconnect", WAIT_SECONDS)

    def publish(self, topic: str, body: Any, *, wait: bool = True) -> int:
        payload = body if isinstance(body, bytes) else json.dumps(body)
        info = self.client.publish(topic, payload, qos=1)
        if wait:
            info.wait_for_publish(timeout=30)
            assert info.is_published(), f"the broker did not acknowledge {topic}"
        return info.mid

    def messages(self, topic: str) -> list[Any]:
        with self.lock:
            return list(self.received.get(topic, []))

    def wait_for(self, topic: str, count: int = 1, timeout: float = WAIT_SECONDS) -> list[Any]:
        wait_until(lambda: len(self.messages(topic)) >= count, f"{count} on {topic}", timeout)
        return self.messages(topic)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def mqtt_client(broker: Broker) -> Iterator[Callable[..., Mqtt]]:
    clients: list[Mqtt] = []

    def connect(*filters: str, persistent: bool = False) -> Mqtt:
        client = Mqtt(broker, *filters, persistent=persistent)
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            client.close()


def machine_id() -> str:
    """A machine of the test's own: retained verdicts of other tests are not read."""
    return f"mill-{uuid.uuid4().hex[:6]}"
