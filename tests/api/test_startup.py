"""The ``cncwear-api`` process at its start and its stop: a port already in use stops it at once,
and its shutdown ends every background task, even one that missed its cancellation."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

from cncwear_api.main import stop

API = Path(sys.executable).parent / "cncwear-api"
EXIT_SECONDS = 120  # a bound on a loaded machine, not a measured figure: it exits in seconds


def test_a_port_in_use_stops_the_service_with_an_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "CNCWEAR_HOME": str(tmp_path), "CNCWEAR_PORT": str(port)}
        result = subprocess.run(
            [str(API)], env=env, capture_output=True, text=True, timeout=EXIT_SECONDS, check=False
        )
    assert result.returncode != 0
    # The service logs to stdout, its errors included (cncwear_api.core.log).
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stdout


def test_the_shutdown_ends_a_task_that_missed_its_cancellation() -> None:
    """A task that survives its first cancellation, as the promotion listener did when the
    cancellation reached it inside redis-py's subscribe: stopping it must not wait for ever."""
    cancellations = 0

    async def deaf_once() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations > 1:
                    raise

    async def start_and_stop() -> bool:
        task = asyncio.create_task(deaf_once())
        await asyncio.sleep(0)
        async with asyncio.timeout(30):
            await stop([task])
        return task.cancelled()

    assert asyncio.run(start_and_stop())
    assert cancellations == 2
