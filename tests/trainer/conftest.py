"""A real Redis database and real ``cncwear-trainer`` worker processes for the trainer's tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from cncwear_trainer.settings import TrainerSettings

WORKER = Path(sys.executable).parent / "cncwear-trainer"


@pytest.fixture
def queue_settings(tmp_path: Path, redis_url: str) -> TrainerSettings:
    """Short time limits, so a job abandoned by a killed worker is redelivered within a minute."""
    return TrainerSettings(
        home=tmp_path / "home",
        budget=Budget.FAST,
        n_jobs=1,
        redis_url=redis_url,
        retrain_time_limit=40,
        retrain_visibility_timeout=50,
        worker_metrics_port=0,
    )


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the worker and its pool: what a lost machine or an OOM kill does."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_environment(settings: Settings) -> dict[str, str]:
    """The environment of a trainer process on ``settings``; a metrics endpoint only when they are
    a trainer's own settings (others, an API's say, name no port: the worker serves none)."""
    metrics_port = settings.worker_metrics_port if isinstance(settings, TrainerSettings) else 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNCWEAR_", "MLFLOW_"))}
    env.update(
        CNCWEAR_HOME=str(settings.home),
        CNCWEAR_REDIS_URL=settings.redis_url,
        CNCWEAR_N_JOBS=str(settings.n_jobs),
        CNCWEAR_BUDGET=settings.budget.value,
        CNCWEAR_AUTOML_ENGINE=settings.automl_engine.value,
        CNCWEAR_RETRAIN_TIME_LIMIT=str(settings.retrain_time_limit),
        CNCWEAR_RETRAIN_VISIBILITY_TIMEOUT=str(settings.retrain_visibility_timeout),
        CNCWEAR_WORKER_METRICS_PORT=str(metrics_port),
        CNCWEAR_DATA_DIR=str(settings.data_dir),
        CNCWEAR_RETRAIN_SCHEDULE=settings.retrain_schedule,
        CNCWEAR_NEW_DATA_CHECK_SECONDS=str(settings.new_data_check_seconds),
    )
    return env


def start_process(settings: Settings, args: list[str], log: Path) -> Worker:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WORKER), *args],
            env=worker_environment(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Worker(process=process, log=log)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """``start_worker(settings, *extra_args)``: a ``cncwear-trainer worker`` process, once ready."""
    started: list[Worker] = []

    def start(settings: Settings, *args: str) -> Worker:
        log = tmp_path / f"worker-{len(started)}.log"
        hostname = f"test{len(started)}@%h"
        worker = start_process(settings, ["worker", "--hostname", hostname, *args], log)
        started.append(worker)
        wait_for(
            lambda: "ready." in log.read_text(errors="replace"), timeout=180, what="worker ready"
        )
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_beat(tmp_path: Path) -> Iterator[Callable[[TrainerSettings], Worker]]:
    """``start_beat(settings)``: a ``cncwear-trainer beat`` process, once it is firing."""
    started: list[Worker] = []

    def start(settings: TrainerSettings) -> Worker:
        beat = start_process(settings, ["beat"], tmp_path / f"beat-{len(started)}.log")
        started.append(beat)
        wait_for(
            lambda: "beat: Starting" in beat.log.read_text(errors="replace"),
            timeout=180,
            what="beat to start",
        )
        return beat

    yield start
    for beat in started:
        beat.stop()


def wait_for(condition: Callable[[], object], *, timeout: float, what: str) -> None:
    """Wait until ``condition`` holds; ``timeout`` is generous (a shared, loaded machine starts a
    worker in seconds or in a minute): it only keeps a broken build from hanging."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
