"""Each service runs in an environment of its own package only (``uv sync --locked --package X
--no-dev``, as its container installs it): everything it imports is there, and what only the other
service needs is not. An import borrowed from the workspace's full environment fails here.

uv's cache is warm in the suite (the workspace was synced from it), so each environment is links
to cached files, made in seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cncwear.jobs.queue import NEW_DATA_TASK, RETRAIN_TASK, SCHEDULED_RETRAIN_TASK
from tests.helpers import TEST_REDIS_URL, free_port

ROOT = Path(__file__).resolve().parents[1]
START_SECONDS = 240  # a bound on a loaded machine, not a measured figure

# What each service must not have: the other service, and the other side's libraries.
NOT_IN_API = ("cncwear_trainer", "flaml", "autosklearn", "skl2onnx")
NOT_IN_TRAINER = ("cncwear_api", "shap", "lime", "anchor")
NOT_IN_BRIDGE = ("cncwear_api", "cncwear_trainer", "onnxruntime", "flaml", "shap")


def service_environment(package: str, folder: Path) -> Path:
    """The environment of ``package`` alone, under ``folder``; returns its bin directory."""
    uv = shutil.which("uv")
    assert uv, "uv must be on the PATH (scripts/bootstrap.sh installs it)"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(folder),
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
    }
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [uv, "sync", "--locked", "--package", package, "--no-dev", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return folder / "bin"


def installed(python: Path, modules: tuple[str, ...]) -> dict[str, bool]:
    """Whether each module can be imported by ``python`` (found, not imported)."""
    probe = (
        "import importlib.util, json, sys\n"
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    result = subprocess.run(
        [str(python), "-c", probe, *modules], capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    found: dict[str, bool] = json.loads(result.stdout)
    return found


def run_python(python: Path, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", code], env=env, capture_output=True, text=True, timeout=600,
        check=False,
    )  # fmt: skip


def isolated(home: Path) -> dict[str, str]:
    env = {**os.environ, "CNCWEAR_HOME": str(home), "CNCWEAR_REDIS_URL": TEST_REDIS_URL}
    env.pop("VIRTUAL_ENV", None)
    return env


def test_the_api_runs_with_its_own_dependencies_only(tmp_path: Path) -> None:
    bin_dir = service_environment("cncwear-api", tmp_path / "api-venv")
    python = bin_dir / "python"
    found = installed(python, NOT_IN_API)
    assert not any(found.values()), f"installed in the API's environment: {found}"

    env = isolated(tmp_path / "home")
    app = run_python(python, "from cncwear_api.main import create_app; create_app()", env)
    assert app.returncode == 0, app.stderr

    port = free_port()
    log = tmp_path / "api.log"
    with log.open("w") as output:
        api = subprocess.Popen(
            [str(bin_dir / "cncwear-api")], env={**env, "CNCWEAR_PORT": str(port)},
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_SECONDS
        health = None
        while health is None and api.poll() is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.5)
        assert health is not None, f"no answer on /health:\n{log.read_text()}"
        assert health.status_code == 200 and health.json() == {"status": "ok"}
    finally:
        api.send_signal(signal.SIGINT)
        api.wait(timeout=60)
    assert api.returncode == 0, log.read_text()
    assert "Application shutdown complete" in log.read_text()


def test_the_trainer_runs_with_its_own_dependencies_only(tmp_path: Path) -> None:
    bin_dir = service_environment("cncwear-trainer", tmp_path / "trainer-venv")
    python = bin_dir / "python"
    found = installed(python, NOT_IN_TRAINER)
    assert not any(found.values()), f"installed in the trainer's environment: {found}"

    # The worker's app with its tasks, which bring in the whole training stack.
    code = (
        "import json\n"
        "from cncwear.core.settings import get_settings\n"
        "from cncwear_trainer.worker import create_worker_app\n"
        "app = create_worker_app(get_settings())\n"
        "print(json.dumps(sorted(name for name in app.tasks if name.startswith('cncwear.'))))\n"
    )
    worker = run_python(python, code, isolated(tmp_path / "home"))
    assert worker.returncode == 0, worker.stderr
    assert json.loads(worker.stdout) == sorted(
        [RETRAIN_TASK, SCHEDULED_RETRAIN_TASK, NEW_DATA_TASK]
    )


def test_the_bridge_runs_with_its_own_dependencies_only(tmp_path: Path) -> None:
    bin_dir = service_environment("cncwear-bridge", tmp_path / "bridge-venv")
    found = installed(bin_dir / "python", NOT_IN_BRIDGE)
    assert not any(found.values()), f"installed in the bridge's environment: {found}"
    # Every module imports; without a broker the console script says which setting is missing.
    env = {k: v for k, v in isolated(tmp_path / "home").items() if k != "CNCWEAR_MQTT_URL"}
    code = "import cncwear_bridge.main, cncwear_bridge.bridge, cncwear_bridge.mapping\n"
    assert run_python(bin_dir / "python", code, env).returncode == 0
    result = subprocess.run(
        [str(bin_dir / "cncwear-bridge")], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "CNCWEAR_MQTT_URL" in result.stderr
