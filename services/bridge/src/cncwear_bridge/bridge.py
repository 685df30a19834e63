"""The bridge: reads the broker, batches each machine's rows, scores each batch through the API,
publishes the verdict, and only then acknowledges the messages that made it.

Delivery is at least once. The bridge subscribes with QoS 1 on a persistent session (a stable
client id, ``clean_start`` off, a session expiry), and acknowledges a message by hand once the API
has answered for it (scored, or refused and published on the rejected topic). A message not yet
acknowledged when the connection or the bridge dies is delivered again by the broker. While the API
is unavailable the bridge retries the same batch, backing off; it holds at most
``CNCWEAR_BRIDGE_MAX_PENDING`` unacknowledged messages (announced to the broker as MQTT 5's receive
maximum, so the broker keeps the rest), which stops it consuming rather than growing or dropping.

Two threads: paho's network loop receives messages into an inbox; one worker takes them in order,
so a machine's rows, job boundaries and labels keep the order the broker gave them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cncwear_bridge import metrics
from cncwear_bridge.api import Api, InvalidRowsError
from cncwear_bridge.errors import ApiUnavailableError, Reason, RejectedError
from cncwear_bridge.mapping import Assembler, Mapping, parse_observation
from cncwear_bridge.messages import Row, parse_job, parse_label, parse_rows
from cncwear_bridge.settings import MQTT_SCHEMES, BridgeSettings
from cncwear_bridge.topics import (
    CONTROL_FILTERS,
    Kind,
    predictions_topic,
    rejected_topic,
    route,
    verdict_topic,
)

logger = logging.getLogger(__name__)

Answer = TypeVar("Answer")
MAX_ECHOED_BYTES = 64 * 1024
"""A rejected message's payload is echoed on the rejected topic up to this size."""
IDLE_WAIT_SECONDS = 0.5
OUTGOING_IN_FLIGHT = 1000


class StoppedError(Exception):
    """The bridge is stopping: what is not acknowledged stays with the broker."""


@dataclass
class Held:
    """A received message, held until it is acknowledged."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    """Which connection delivered it: a message id is only valid on its own connection."""
    arrived: float
    arrived_wall: float


@dataclass
class Entry:
    """Rows to score and the messages they came from (one rows message, or the observations that
    made one row)."""

    rows: list[Row]
    messages: list[Held]
    timestamp: str


@dataclass
class Batch:
    run: str | None
    opened: float
    entries: list[Entry] = field(default_factory=list)
    rows: int = 0


class Bridge:
    def __init__(self, settings: BridgeSettings, api: Api, mapping: Mapping | None) -> None:
        if settings.mqtt_url is None:
            raise ValueError("CNCWEAR_MQTT_URL is not set: no broker to bridge")
        self.settings, self.api, self.mapping = settings, api, mapping
        self.inbox: queue.Queue[Held] = queue.Queue()
        self.pending = 0
        self.room = threading.Condition()
        self.generation = 0
        self.stopping = threading.Event()
        self.batches: dict[str, Batch] = {}
        self.jobs: dict[str, str] = {}
        self.assemblers: dict[str, Assembler[Held]] = {}
        self.client = self._client(settings)

    # -- the broker side (paho's network thread) --------------------------------------------

    def _client(self, settings: BridgeSettings) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        url = urlsplit(settings.mqtt_url or "")
        username = unquote(url.username) if url.username else settings.mqtt_username
        password = (
            unquote(url.password)
            if url.password
            else (settings.mqtt_password.get_secret_value() if settings.mqtt_password else None)
        )
        if username is not None:
            client.username_pw_set(username, password)
        if MQTT_SCHEMES[url.scheme]:
            client.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        # Verdicts and per-row results in flight at once (paho's default, 20, queues the rest).
        client.max_inflight_messages_set(OUTGOING_IN_FLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        url = urlsplit(self.settings.mqtt_url or "")
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.settings.mqtt_session_expiry_seconds
        properties.ReceiveMaximum = self.settings.bridge_max_pending
        port = url.port or (8883 if MQTT_SCHEMES[url.scheme] else 1883)
        self.client.connect_async(
            url.hostname or "127.0.0.1",
            port,
            keepalive=self.settings.mqtt_keepalive_seconds,
            clean_start=False,
            properties=properties,
        )
        self.client.loop_start()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.warning("the broker refused the connection: %s", reason)
            return
        if self.generation:
            metrics.RECONNECTS.inc()
        self.generation += 1
        metrics.CONNECTED.set(1)
        logger.info("connected to the broker (session present: %s)", flags.session_present)
        filters = [*self.settings.mqtt_topics, *CONTROL_FILTERS]
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        metrics.CONNECTED.set(0)
        if not self.stopping.is_set():
            logger.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        # Beyond the bound (QoS 0 messages, which the receive maximum does not count, or a backlog
        # delivered again after a reconnect) the network thread waits: the broker stops sending.
        with self.room:
            while self.pending >= self.settings.bridge_max_pending and not self.stopping.is_set():
                self.room.wait(IDLE_WAIT_SECONDS)
            self.pending += 1
            metrics.PENDING.set(self.pending)
        self.inbox.put(
            Held(
                topic=message.topic,
                payload=bytes(message.payload),
                mid=message.mid,
                qos=message.qos,
                generation=self.generation,
                arrived=time.monotonic(),
                arrived_wall=time.time(),
            )
        )

    def _done(self, held: Held) -> None:
        """Acknowledge ``held``: on its own connection only (after a reconnect the broker delivers
        it again, and it is scored again: at least once)."""
        if held.qos > 0 and held.generation == self.generation:
            self.client.ack(held.mid, held.qos)
        with self.room:
            self.pending -= 1
            metrics.PENDING.set(self.pending)
            self.room.notify_all()

    # -- the worker -------------------------------------------------------------------------

    def run(self) -> None:
        """Handle messages until :meth:`stop`."""
        try:
            while not self.stopping.is_set():
                try:
                    held = self.inbox.get(timeout=self._wait())
                except queue.Empty:
                    pass
                else:
                    self._handle(held)
                self._flush_due()
        except StoppedError:
            pass
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            self.api.close()

    def stop(self) -> None:
        self.stopping.set()
        with self.room:
            self.room.notify_all()

    def _wait(self) -> float:
        if not self.batches:
            return IDLE_WAIT_SECONDS
        due = min(b.opened for b in self.batches.values()) + self.settings.bridge_batch_ms / 1000
        return min(max(due - time.monotonic(), 0.0), IDLE_WAIT_SECONDS)

    def _flush_due(self) -> None:
        now = time.monotonic()
        for machine, batch in list(self.batches.items()):
            if now - batch.opened >= self.settings.bridge_batch_ms / 1000:
                self._flush(machine)

    def _handle(self, held: Held) -> None:
        where = route(held.topic)
        kind = where.kind if where is not None else None
        metrics.MESSAGES.labels(kind=kind.value if kind else "unknown").inc()
        machine = where.machine if where is not None else "unknown"
        if kind is Kind.OBSERVATION and self.mapping is not None:
            machine = self.mapping.machine(machine)
        try:
            if where is None:
                raise RejectedError(Reason.BAD_SHAPE, f"the bridge does not read {held.topic!r}")
            if where.kind is Kind.ROWS:
                rows = parse_rows(held.payload)
                run = rows.job or self.jobs.get(machine)
                stamp = rows.timestamp or _iso(held.arrived_wall)
                self._add(machine, run, Entry(rows.rows, [held], stamp))
            elif where.kind is Kind.JOB:
                job = parse_job(held.payload)
                self._flush(machine)
                if job.event == "start" and job.job is not None:
                    self.jobs[machine] = job.job
                else:
                    self.jobs.pop(machine, None)
                self._done(held)
            elif where.kind is Kind.LABEL:
                label = parse_label(held.payload)
                self._flush(machine)
                self._retrying(lambda: self.api.label(label.run, label.fields, label.token))
                logger.info("labelled run %s from %s", label.run, held.topic)
                self._done(held)
            else:
                self._observe(machine, where.data_item or "", held)
        except RejectedError as error:
            self._reject(machine, [held], error)

    def _observe(self, machine: str, data_item: str, held: Held) -> None:
        if self.mapping is None:
            raise RejectedError(
                Reason.UNKNOWN_DATA_ITEM, "no mapping file (CNCWEAR_MQTT_MAPPING) for observations"
            )
        observation = parse_observation(self.mapping, data_item, held.payload)
        if observation is None:
            self._done(held)
            return
        assembler = self.assemblers.setdefault(machine, Assembler(self.mapping))
        completed, hopeless = assembler.add(observation, held)
        for row in hopeless:
            missing = assembler.missing(row)
            detail = f"the row of {row.timestamp} lacks {missing}"
            self._reject(machine, row.messages, RejectedError(Reason.INCOMPLETE_ROW, detail))
        for row in completed:
            entry = Entry([row.values], row.messages, row.timestamp)
            self._add(machine, self.jobs.get(machine), entry)

    def _add(self, machine: str, run: str | None, entry: Entry) -> None:
        batch = self.batches.get(machine)
        limit = self.settings.bridge_batch_rows
        if batch is not None and (batch.run != run or batch.rows + len(entry.rows) > limit):
            self._flush(machine)
            batch = None
        if batch is None:
            batch = self.batches[machine] = Batch(run=run, opened=time.monotonic())
        batch.entries.append(entry)
        batch.rows += len(entry.rows)
        if batch.rows >= limit:
            self._flush(machine)

    def _flush(self, machine: str) -> None:
        batch = self.batches.pop(machine, None)
        if batch is not None:
            self._score(machine, batch)

    def _score(self, machine: str, batch: Batch) -> None:
        entries = batch.entries
        while entries:
            rows = [row for entry in entries for row in entry.rows]
            try:
                answer = self._retrying(partial(self.api.predict, rows, batch.run))
            except InvalidRowsError as error:
                # The bad messages are refused with their own problems; the rest is sent again.
                blamed = _blame(entries, error)
                for index, problems in blamed.items():
                    refusal = RejectedError(Reason.INVALID_ROWS, error.detail, problems)
                    self._reject(machine, entries[index].messages, refusal)
                entries = [entry for i, entry in enumerate(entries) if i not in blamed]
                continue
            except RejectedError as error:
                for entry in entries:
                    self._reject(machine, entry.messages, error)
                return
            self._publish_answer(machine, batch.run, entries, answer)
            return

    def _retrying(self, call: Callable[[], Answer]) -> Answer:
        delay = 0.1
        while True:
            try:
                return call()
            except ApiUnavailableError as error:
                metrics.API_RETRIES.inc()
                logger.warning("the API is unavailable (%s); again in %.1f s", error, delay)
            if self.stopping.wait(delay):
                raise StoppedError
            delay = min(delay * 2, self.settings.bridge_retry_max_seconds)

    def _publish_answer(
        self, machine: str, run: str | None, entries: list[Entry], answer: dict[str, Any]
    ) -> None:
        verdict, model = answer["verdict"], answer["model"]
        rows = sum(len(entry.rows) for entry in entries)
        payload = {
            "machine": machine,
            "label": verdict["label"],
            "mean_probability_worn": verdict["mean_probability_worn"],
            "rows": verdict["rows"],
            "worn_rows": verdict["worn_rows"],
            "model": model["name"],
            "model_version": model["version"],
            "run": run,
            "last_row_time": entries[-1].timestamp,
            "request_id": answer.get("request_id"),
        }
        self.client.publish(verdict_topic(machine), json.dumps(payload), qos=1, retain=True)
        if self.settings.bridge_per_row:
            stamps = [entry.timestamp for entry in entries for _ in entry.rows]
            predictions = [
                {**prediction, "timestamp": stamp}
                for prediction, stamp in zip(answer["predictions"], stamps, strict=True)
            ]
            body = {"machine": machine, "model_version": model["version"], "run": run,
                    "predictions": predictions}  # fmt: skip
            self.client.publish(predictions_topic(machine), json.dumps(body), qos=1)
        now = time.monotonic()
        for entry in entries:
            for held in entry.messages:
                metrics.LATENCY.observe(now - held.arrived)
                self._done(held)
        metrics.ROWS.inc(rows)
        metrics.BATCHES.inc()

    def _reject(self, machine: str, messages: list[Held], error: RejectedError) -> None:
        for held in messages:
            body = {
                "reason": error.reason.value,
                "detail": error.detail,
                "problems": error.problems,
                "topic": held.topic,
                "payload": held.payload[:MAX_ECHOED_BYTES].decode("utf-8", "replace"),
            }
            self.client.publish(rejected_topic(machine), json.dumps(body), qos=1)
            metrics.REJECTED.labels(reason=error.reason.value).inc()
            logger.info("rejected a message of %s: %s (%s)", held.topic, error.reason, error.detail)
            self._done(held)


def _blame(entries: list[Entry], error: InvalidRowsError) -> dict[int, list[dict[str, Any]]]:
    """Which entries the API's problems are about (by the row's position in the batch, or for a
    problem of a column, the entries that have that unexpected column), with each problem's row
    renumbered within its message. A problem nobody can be blamed for blames every entry."""
    starts, offset = [], 0
    for entry in entries:
        starts.append(offset)
        offset += len(entry.rows)
    blamed: dict[int, list[dict[str, Any]]] = {}
    for problem in error.problems:
        row, column = problem.get("row"), problem.get("column")
        if isinstance(row, int) and 0 <= row < offset:
            index = max(i for i, start in enumerate(starts) if start <= row)
            blamed.setdefault(index, []).append({**problem, "row": row - starts[index]})
            continue
        having = [
            i for i, entry in enumerate(entries) if any(column in r for r in entry.rows)
        ] if problem.get("problem") == "unexpected column" else []  # fmt: skip
        for index in having or range(len(entries)):
            blamed.setdefault(index, []).append(problem)
    if not blamed:
        blamed = {index: [] for index in range(len(entries))}
    return blamed


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()
