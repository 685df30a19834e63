"""The bare floor of bench/serve.py: the API's ASGI server (uvicorn, as ``cncwear-api`` runs it)
and JSON parser (jiter, as ``cncwear_api.api.json_body`` calls it), answering every request with
one constant prediction. Whatever a real server costs beyond this is its own.

    python -m uvicorn floor:app --app-dir bench --port 8001
"""

from __future__ import annotations

from typing import Any

import jiter
import orjson

ANSWER = orjson.dumps({"predictions": [{"label": "unworn", "probability_worn": 0.0}]})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if body:
        jiter.from_json(body, allow_inf_nan=True, catch_duplicate_keys=True)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
