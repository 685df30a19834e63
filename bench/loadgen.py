"""What the benchmarks share to load a server over HTTP: a free port, readiness, and a closed loop
of POSTs at a given concurrency, through wrk (Debian's package) when it is installed, else an
asyncio httpx client. Imported by the bench scripts, which run from this folder."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "errors": %d, "non_2xx": %d, "p50_ms": %f, "p99_ms": %f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def load_tool() -> str:
    return "wrk" if shutil.which("wrk") else "asyncio httpx client (wrk not installed)"


def load(url: str, body: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """POST ``body`` to ``url`` from ``concurrency`` connections for ``seconds``: requests,
    seconds, errors, non_2xx, p50_ms, p99_ms."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return asyncio.run(_asyncio_load(url, body.read_bytes(), concurrency, seconds))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    command = [wrk, "-t", "1", "-c", str(concurrency), "-d", f"{seconds:.0f}s"]
    command += ["--timeout", "30s", "-s", script.name, url]
    output = subprocess.run(
        command,
        env={**os.environ, "BENCH_BODY": str(body)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    measured: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return measured


async def _asyncio_load(url: str, body: bytes, concurrency: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + seconds
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:

        async def worker() -> None:
            nonlocal failed
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                failed += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "errors": 0,
        "non_2xx": failed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }
