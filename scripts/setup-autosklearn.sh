#!/usr/bin/env bash
# Builds the auto-sklearn sidecar: a Python 3.9 environment with auto-sklearn 0.15.0 and its pinned
# requirements (libs/cncwear/src/cncwear/training/automl/sidecar/requirements.txt), in .venv-autosklearn, or in the
# environment whose interpreter CNCWEAR_AUTOSKLEARN_PYTHON names (<env>/bin/python).
#
# Idempotent: a stamp of the requirements and the interpreter makes a second run return at once.
# Python 3.9 is looked for in CNCWEAR_AUTOSKLEARN_BASE_PYTHON, pyenv's versions, python3.9 on the
# PATH, uv's known interpreters, and last by `uv python install 3.9` where the network allows.
# Exit status 0 when the sidecar is ready, 1 when it could not be built (cncwear then falls back
# to flaml, or refuses an explicit CNCWEAR_AUTOML_ENGINE=auto-sklearn with this advice).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIDECAR_SRC="libs/cncwear/src/cncwear/training/automl/sidecar"
REQUIREMENTS="$SIDECAR_SRC/requirements.txt"
BUILD_CONSTRAINTS="$SIDECAR_SRC/build-constraints.txt"
if [[ -n "${CNCWEAR_AUTOSKLEARN_PYTHON:-}" ]]; then
    ENV_DIR="$(dirname "$(dirname "$CNCWEAR_AUTOSKLEARN_PYTHON")")"
else
    ENV_DIR="$PWD/.venv-autosklearn"
fi
STAMP="$ENV_DIR/.cncwear-sidecar-stamp"
NO_DOWNLOAD="$ENV_DIR.no-python39"

say() { echo "setup-autosklearn: $*" >&2; }

stamp() {
    { sha256sum "$REQUIREMENTS" "$BUILD_CONSTRAINTS" | cut -d' ' -f1; "$ENV_DIR/bin/python" -V; } 2>&1
}

ready() {
    [[ -x "$ENV_DIR/bin/python" && -f "$STAMP" ]] && [[ "$(stamp)" == "$(cat "$STAMP")" ]]
}

if ready; then
    exit 0
fi

is_python39() {
    [[ -n "$1" ]] && "$1" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 9))' 2>/dev/null
}

find_python39() {
    local candidate
    if is_python39 "${CNCWEAR_AUTOSKLEARN_BASE_PYTHON:-}"; then
        echo "$CNCWEAR_AUTOSKLEARN_BASE_PYTHON"
        return
    fi
    for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.9*/bin/python3.9 2>/dev/null | sort -rV); do
        if is_python39 "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    for candidate in python3.9 /usr/bin/python3.9 /usr/local/bin/python3.9; do
        if command -v "$candidate" >/dev/null 2>&1 && is_python39 "$(command -v "$candidate")"; then
            command -v "$candidate"
            return
        fi
    done
    candidate="$(uv python find --no-project 3.9 2>/dev/null || true)"
    if is_python39 "$candidate"; then
        echo "$candidate"
        return
    fi
    # uv's download is retried at most once a day where it failed (no network to its mirror).
    if [[ -n "$(find "$NO_DOWNLOAD" -mmin -1440 2>/dev/null)" ]]; then
        return 1
    fi
    say "no Python 3.9 found; trying to install one with uv"
    if timeout 300 uv python install --quiet 3.9 >/dev/null 2>&1; then
        candidate="$(uv python find --no-project 3.9 2>/dev/null || true)"
        if is_python39 "$candidate"; then
            echo "$candidate"
            return
        fi
    fi
    mkdir -p "$(dirname "$NO_DOWNLOAD")" && touch "$NO_DOWNLOAD"
    return 1
}

if ! PYTHON39="$(find_python39)"; then
    say "no Python 3.9 interpreter could be found or installed: the auto-sklearn sidecar is not" \
        "built, and the AutoML candidate uses flaml. Install one (e.g. pyenv install 3.9) and rerun" \
        "scripts/setup-autosklearn.sh, or set CNCWEAR_AUTOSKLEARN_BASE_PYTHON to it."
    exit 1
fi

# pyrfr (SMAC's random forest) builds from source with swig where no wheel fits.
if ! command -v swig >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    say "installing swig (apt-get)"
    if ! { apt-get install -y -qq swig >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq swig >/dev/null 2>&1; }; }; then
        say "swig could not be installed; continuing (pyrfr's wheel does not need it)"
    fi
fi

mkdir -p "$(dirname "$ENV_DIR")"
exec 9>"$ENV_DIR.lock"
flock 9 2>/dev/null || true
if ready; then  # built by a concurrent run while this one waited
    exit 0
fi
say "building the auto-sklearn sidecar in $ENV_DIR with $PYTHON39 ($("$PYTHON39" -V 2>&1))"
rm -f "$STAMP"
uv venv --quiet --clear --python "$PYTHON39" "$ENV_DIR"
if ! uv pip install --quiet --python "$ENV_DIR/bin/python" \
    --build-constraint "$BUILD_CONSTRAINTS" -r "$REQUIREMENTS"; then
    say "installing auto-sklearn's requirements failed; the AutoML candidate uses flaml"
    exit 1
fi
if ! "$ENV_DIR/bin/python" -c 'import autosklearn.classification' >/dev/null 2>&1; then
    say "auto-sklearn does not import in $ENV_DIR; the AutoML candidate uses flaml"
    exit 1
fi
stamp >"$STAMP"
say "auto-sklearn sidecar ready: $ENV_DIR/bin/python"
