"""scripts/run.sh, which runs the whole system on one machine: when a service it started cannot
come up, it says which, shows the end of that service's log, stops everything it started and exits
non-zero, instead of going on as if the service were up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
RUN_SECONDS = 300  # a bound on a loaded machine, not a measured figure


def processes_with_home(home: Path) -> list[int]:
    """The ids of the processes running with ``CNCWEAR_HOME=home``: those run.sh started."""
    marker = f"CNCWEAR_HOME={home}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def test_a_taken_api_port_stops_run_sh_naming_the_api_with_its_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stderr = tmp_path / "stderr.txt"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()  # accepts connections and never answers them: probes must time out
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "CNCWEAR_HOME": str(home),
            "CNCWEAR_PORT": str(port),
            # A Redis of its own (run.sh starts one where nothing answers): its worker must not
            # take jobs queued by other tests.
            "CNCWEAR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "CNCWEAR_WORKER_METRICS_PORT": str(free_port()),
        }
        try:
            with stderr.open("w") as errors:
                result = subprocess.run(
                    [str(ROOT / "scripts" / "run.sh")], env=env, stdout=subprocess.DEVNULL,
                    stderr=errors, timeout=RUN_SECONDS, check=False,
                )  # fmt: skip
        finally:
            left = processes_with_home(home)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
    said = stderr.read_text()
    assert result.returncode == 1, said
    assert "the API (cncwear-api" in said and "stopped (exit status 1) before it answered" in said
    assert f"the last lines of {home}/logs/api.log" in said
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in said
    # redis-server, the trainer worker and the API, all stopped before run.sh exited.
    assert "stopping 3 process(es)" in said
    assert not left, f"still running after run.sh exited: {left}"
