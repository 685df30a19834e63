# Sourced by the other scripts: makes sure uv is there and the locked environment is installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UV_VERSION="0.13.8"
if ! command -v uv >/dev/null 2>&1; then
    echo "installing uv ${UV_VERSION} from PyPI" >&2
    python3 -m pip install --quiet --user "uv==${UV_VERSION}" 2>/dev/null \
        || python3 -m pip install --quiet "uv==${UV_VERSION}"
    export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --locked --all-packages --quiet
# The auto-sklearn sidecar (Python 3.9), where such an interpreter can be had; else flaml is used.
./scripts/setup-autosklearn.sh || true
