"""One middleware (plain ASGI, cheap) around every request: a request id, the body size limit, the
HTTP metrics (by protocol: cncwear's own, v2, mlflow), and one log line with route, status, latency
and model version."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cncwear_api.api.errors import BodyTooLargeError, NotJsonError
from cncwear_api.core.log import ACCESS_LOGGER
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.protocols import Protocol, protocol_of

logger = logging.getLogger(ACCESS_LOGGER)

QUIET_ROUTES = frozenset({"/health", "/ready", "/metrics"})
"""Probes and scrapes: left out of the HTTP metrics, logged at DEBUG only."""

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        protocol = protocol_of(scope["path"])
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            await self.app(scope, self._limited(scope, receive, protocol), send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            quiet = route in QUIET_ROUTES
            if not quiet:
                self.metrics.observe_request(protocol, scope["method"], route, status, seconds)
            level = logging.DEBUG if quiet and status < 400 else logging.INFO
            if logger.isEnabledFor(level):
                version = state.get("model_version")
                logger.log(
                    level,
                    "%s %s %d %.2fms model=%s request_id=%s",
                    scope["method"], route, status, seconds * 1000, version or "-", request_id,
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "latency_ms": round(seconds * 1000, 3),
                        "model_version": version,
                        "request_id": request_id,
                    },
                )  # fmt: skip

    def _limited(self, scope: Scope, receive: Receive, protocol: Protocol) -> Receive:
        """``receive`` refusing, on every route, a body over the limit (at once when its declared
        length is over, else as soon as the bytes received are) and a body that is not declared
        as JSON. The errors are HTTP exceptions, so the app's handler answers 413 or 415 whichever
        route was reading the body. (The Open Inference Protocol's bodies are JSON even when
        undeclared, as tritonclient sends them; MLflow's ``/invocations`` checks its own.)"""
        limit = self.max_body_bytes
        declared_length = _header(scope, b"content-length")
        if declared_length.isdigit() and int(declared_length) > limit:
            return _refuse(limit)
        content_type = _header(scope, b"content-type")
        json_body = (
            _is_json(content_type)
            or protocol == "mlflow"
            or (protocol == "v2" and not content_type)
        )
        received = 0

        async def receive_with_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = len(message.get("body", b""))
                if chunk and not json_body:
                    raise NotJsonError()
                received += chunk
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        return receive_with_limit


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/<anything>+json``, parameters aside."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _refuse(limit: int) -> Receive:
    async def refuse() -> Message:
        raise BodyTooLargeError(limit)

    return refuse


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = bytes(value).decode("latin-1")
            if _REQUEST_ID.match(given):
                return given
            break
    return uuid.uuid4().hex
