"""The API, as the bridge calls it: ``/predict`` for a batch (with its run), ``/runs/{run}/label``
for a label. The API stays the one place models live and runs are kept; the bridge only carries.

Each answer is sorted into: scored (the body), invalid (422: the API's problems, by row),
refused (any other error retrying cannot mend), or unavailable (retried by the caller).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from cncwear_bridge.errors import ApiUnavailableError, Reason, RejectedError
from cncwear_bridge.messages import Row
from cncwear_bridge.settings import BridgeSettings

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class InvalidRowsError(RejectedError):
    """``/predict`` refused the batch's rows (422); ``problems`` as the API lists them."""

    def __init__(self, detail: str, problems: list[dict[str, Any]], total: int) -> None:
        super().__init__(Reason.INVALID_ROWS, detail, problems)
        self.total = total


class Api:
    def __init__(self, settings: BridgeSettings) -> None:
        token = settings.api_token
        self.headers = (
            {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
        )
        self.client = httpx.Client(
            base_url=settings.bridge_api_url, timeout=settings.bridge_api_timeout_seconds
        )

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        try:
            response = self.client.post(path, json=body, headers=headers)
        except httpx.TransportError as error:
            raise ApiUnavailableError(f"{path}: {error!r}") from error
        if response.status_code in RETRY_STATUSES:
            raise ApiUnavailableError(f"{path}: {response.status_code}")
        return response

    def predict(self, rows: list[Row], run: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"rows": rows}
        if run is not None:
            body["run"] = run
        response = self._post("/predict", body, self.headers)
        answer = _json(response)
        if response.status_code == 200 and answer is not None:
            return answer
        if response.status_code == 422 and answer is not None:
            raise InvalidRowsError(
                str(answer.get("detail", "invalid rows")),
                list(answer.get("problems", [])),
                int(answer.get("total", 0)),
            )
        raise RejectedError(Reason.REFUSED, _detail(response, answer))

    def label(self, run: str, fields: dict[str, Any], token: str | None) -> dict[str, Any]:
        """Labels the run with the token the label message carried, so the API checks it."""
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = self._post(f"/runs/{quote(run, safe='/')}/label", fields, headers)
        answer = _json(response)
        if response.status_code == 200 and answer is not None:
            return answer
        raise RejectedError(Reason.REFUSED, _detail(response, answer), _problems(answer))


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _detail(response: httpx.Response, answer: dict[str, Any] | None) -> str:
    detail = None if answer is None else answer.get("detail")
    return f"the API answered {response.status_code}: {detail or response.reason_phrase}"


def _problems(answer: dict[str, Any] | None) -> list[dict[str, Any]]:
    problems = None if answer is None else answer.get("problems")
    return list(problems) if isinstance(problems, list) else []
