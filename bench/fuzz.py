"""A long schemathesis run against a real server: every operation of the API's own OpenAPI schema,
valid and invalid data, protected routes with and without the token (see
tests/reliability/fuzzing.py; the CI test runs the same with few examples).

Trains a champion (the random forest, fast budget) into a fresh store, serves it with a real
uvicorn server on loopback, queues fuzzed retrains on the Redis at CNCWEAR_BENCH_REDIS_URL
(default redis://127.0.0.1:6379/12, flushed; no worker runs them), and prints per operation the
requests sent, the statuses seen and the first failure found, if any.

Usage: uv run python bench/fuzz.py [--examples 500] [--seed 20261128]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fuzzing plan lives in tests/

from cncwear.core.settings import Settings
from cncwear.training.retrain import retrain
from cncwear_api.core.settings import ApiSettings
from cncwear_api.main import create_app
from tests.reliability.fuzzing import SEED, app_schema, fuzz, plan, refused_without_token

TOKEN = "bench-fuzz-token"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500, help="cases per operation and mode")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    redis_url = os.environ.get("CNCWEAR_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    redis.Redis.from_url(redis_url).flushdb()
    with tempfile.TemporaryDirectory(prefix="cncwear-bench-fuzz-") as home:
        settings = Settings(home=Path(home), redis_url=redis_url)
        champion = retrain(settings, candidates=["random_forest"], reason="fuzzing target")
        api = ApiSettings(
            **{**settings.model_dump(), "api_token": TOKEN, "poll_interval_seconds": 3600.0}
        )
        url, server = start(api)
        try:
            run_all(url, args.examples, args.seed, champion.version)
        finally:
            server.should_exit = True
    redis.Redis.from_url(redis_url).flushdb()


def start(settings: ApiSettings) -> tuple[str, uvicorn.Server]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def run_all(url: str, examples: int, seed: int, version: str) -> None:
    import httpx

    while httpx.get(f"{url}/ready").status_code != 200:
        time.sleep(0.2)
    print(f"fuzzing {url} (champion v{version}): {examples} cases per operation and mode, "
          f"seed {seed}")  # fmt: skip
    started = time.perf_counter()
    total, failed = 0, 0
    for operation, mode, token in plan(app_schema()):
        label = f"{operation.label} {mode.value}{'' if token else ' no-token'}"
        began = time.perf_counter()
        try:
            outcome = fuzz(
                operation,
                url,
                mode=mode,
                headers={"Authorization": f"Bearer {TOKEN}"} if token else {},
                examples=examples,
                seed=seed,
                extra_check=None if token else refused_without_token,
            )
            found = "ok"
            sent, statuses = outcome.requests, dict(sorted(outcome.statuses.items()))
        except Exception as error:  # report and go on with the other operations
            failed += 1
            found = "FAILED: " + str(error).strip().splitlines()[0][:120]
            sent, statuses = 0, {}
        total += sent
        print(f"  {label:38} {sent:6d} requests {time.perf_counter() - began:6.1f} s  "
              f"{statuses}  {found}")  # fmt: skip
    healthy = httpx.get(f"{url}/health").status_code == 200
    print(f"{total} requests in {time.perf_counter() - started:.0f} s; failing runs: {failed}; "
          f"server healthy after: {healthy}")  # fmt: skip


if __name__ == "__main__":
    main()
