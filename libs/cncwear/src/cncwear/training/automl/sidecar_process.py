"""The auto-sklearn sidecar: finding, probing and running the Python 3.9 process that runs
auto-sklearn beside the main runtime.

auto-sklearn 0.15.0 (its last release) pins scikit-learn 0.24 and Python <= 3.9, so it runs in a
sidecar: a Python 3.9 environment of its own (``scripts/setup-autosklearn.sh`` builds it from
``sidecar/requirements.txt``) that runs ``sidecar/autosklearn_sidecar.py`` as a subprocess. The
main runtime hands it plain arrays in an ``.npz`` file and a JSON request, and gets JSON back: the
configuration of auto-sklearn's best pipeline and its validation score. Nothing pickled crosses;
:mod:`cncwear.training.automl.rebuild` turns that configuration into scikit-learn.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cncwear.core.errors import AutoSklearnError, SidecarUnavailableError

logger = logging.getLogger(__name__)

SIDECAR_FOLDER = Path(__file__).parent / "sidecar"
SIDECAR_SCRIPT = SIDECAR_FOLDER / "autosklearn_sidecar.py"
DEFAULT_ENVIRONMENT = ".venv-autosklearn"
"""Folder of the sidecar environment that ``scripts/setup-autosklearn.sh`` builds."""
AUTOSKLEARN_VERSION = "0.15.0"
PROTOCOL = 1
INSTALL_HINT = (
    "build the auto-sklearn sidecar with ./scripts/setup-autosklearn.sh (it needs a Python 3.9 "
    "interpreter: pyenv's, the system's, or one uv can install) or point "
    "CNCWEAR_AUTOSKLEARN_PYTHON at a Python 3.9 with auto-sklearn==0.15.0 installed; "
    "or choose CNCWEAR_AUTOML_ENGINE=flaml"
)


@dataclass(frozen=True)
class Sidecar:
    python: Path
    """Interpreter of the sidecar environment."""
    autosklearn_version: str


def default_python(start: Path | None = None) -> Path:
    """The sidecar's interpreter when none is configured: ``.venv-autosklearn/bin/python`` in the
    workspace that holds this installation of cncwear (the nearest folder above its files that has
    one: where ``scripts/setup-autosklearn.sh`` builds it), so that cncwear finds it from any
    working directory; else in ``start`` (the working directory) or its nearest parent that has
    one; the one in ``start`` when none has."""
    start = (start or Path.cwd()).resolve()
    package = Path(__file__).resolve()
    for folder in (*package.parents, start, *start.parents):
        candidate = folder / DEFAULT_ENVIRONMENT / "bin" / "python"
        if candidate.exists():
            return candidate
    return start / DEFAULT_ENVIRONMENT / "bin" / "python"


def find_sidecar(python: Path | None) -> Sidecar:
    """The sidecar at ``python`` (default: :func:`default_python`), checked to be a Python with
    auto-sklearn 0.15.0; raises :class:`SidecarUnavailableError` saying how to install it."""
    path = python if python is not None else default_python()
    return _probe(str(path))


@lru_cache(maxsize=16)
def _probe(python: str) -> Sidecar:
    path = Path(python)
    if not path.exists():
        raise SidecarUnavailableError(f"no auto-sklearn sidecar at {path}: {INSTALL_HINT}")
    command = (
        "import importlib.metadata as m, sys; "
        "print(m.version('auto-sklearn'), *sys.version_info[:2])"
    )
    try:
        probe = subprocess.run(
            [python, "-c", command],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=_sidecar_environment(),
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SidecarUnavailableError(
            f"the sidecar Python {path} does not run ({error}): {INSTALL_HINT}"
        ) from error
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise SidecarUnavailableError(
            f"no auto-sklearn in the sidecar Python {path} ({last}): {INSTALL_HINT}"
        )
    found, *python_version = probe.stdout.split()
    if found != AUTOSKLEARN_VERSION:
        raise SidecarUnavailableError(
            f"the sidecar Python {path} has auto-sklearn {found}, cncwear rebuilds the "
            f"configurations of {AUTOSKLEARN_VERSION} only: {INSTALL_HINT}"
        )
    logger.debug(
        "auto-sklearn %s sidecar on Python %s at %s", found, ".".join(python_version), path
    )
    return Sidecar(python=path, autosklearn_version=found)


def run_sidecar(
    python: Path, request: dict[str, Any], arrays: Mapping[str, np.ndarray], *, timeout: float
) -> dict[str, Any]:
    """Run one request in the sidecar and return its response.

    The sidecar runs in a session of its own, so that on a timeout it is stopped together with the
    worker processes auto-sklearn starts. Raises :class:`AutoSklearnError` when it exits non-zero,
    times out or writes no valid response; the error carries the end of its output."""
    with tempfile.TemporaryDirectory(prefix="cncwear-sidecar-") as scratch:
        folder = Path(scratch)
        data, request_file, response_file = (
            folder / "data.npz",
            folder / "request.json",
            folder / "response.json",
        )
        np.savez(data, **dict(arrays))  # type: ignore[arg-type]
        request_file.write_text(json.dumps({**request, "protocol": PROTOCOL, "data": str(data)}))
        log_file = folder / "sidecar.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [str(python), str(SIDECAR_SCRIPT), str(request_file), str(response_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=folder,
                env=_sidecar_environment(),
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _stop(process)
                raise AutoSklearnError(
                    f"the auto-sklearn sidecar did not finish within {timeout:.0f} s and was "
                    f"stopped; its last output: {_tail(log_file)}"
                ) from None
            finally:
                _stop(process)  # what auto-sklearn left running (dask workers) goes too
        response = _read_response(response_file)
        if code != 0 or response.get("status") != "ok":
            reason = response.get("error") or _tail(log_file)
            raise AutoSklearnError(f"the auto-sklearn sidecar failed ({_exit(code)}): {reason}")
        return response


def _exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the sidecar's session: the sidecar and every process it started, whatever process group
    they moved to (auto-sklearn's evaluations run in groups of their own), and nothing else."""
    for _ in range(3):  # again, for what was being forked meanwhile
        members = session_processes(process.pid)
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if not members:
            break
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # where /proc cannot be read
    process.wait()


def session_processes(session: int) -> list[int]:
    """Live processes (zombies excepted) of the session ``session``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _read_response(path: Path) -> dict[str, Any]:
    try:
        response = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(response, dict) or response.get("protocol") != PROTOCOL:
        return {}
    return response


def _tail(log_file: Path, lines: int = 12, limit: int = 2000) -> str:
    try:
        text = log_file.read_text(errors="replace").strip()
    except OSError:
        return "(no output)"
    tail = " | ".join(text.splitlines()[-lines:])
    return (tail[-limit:] if len(tail) > limit else tail) or "(no output)"


def _sidecar_environment() -> dict[str, str]:
    """The process environment less what would make the sidecar's Python load the main runtime.
    Each auto-sklearn evaluation runs on one thread (``OMP_NUM_THREADS=1`` unless set): its
    parallelism is ``n_jobs`` evaluations, and OpenMP threads on top of them oversubscribe."""
    hidden = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH"}
    environment = {k: v for k, v in os.environ.items() if k not in hidden}
    return {"OMP_NUM_THREADS": "1"} | environment | {"PYTHONUNBUFFERED": "1"}
