#!/usr/bin/env bash
# Installs the Debian packages the tests need (scripts/test-packages.apt) when any is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# kubectl (1.27 or later: its built-in kustomize 5 renders deploy/k8s for tests/deploy/test_k8s_*).
# Debian's own kubernetes-client is too old (1.20); install kubectl from the Kubernetes project's
# apt repository (its package "kubectl"), Google Cloud SDK's, or its release binary. Without it
# those tests fail, saying so; the other tests still run.
if ! command -v kubectl >/dev/null 2>&1; then
    echo "install-test-tools: kubectl is missing: install kubectl 1.27+ (see this script)" >&2
fi

mapfile -t wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' scripts/test-packages.apt | grep -v '^$' || true)
missing=()
for package in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: please install these Debian packages: ${missing[*]}" >&2
    exit 1
fi
echo "install-test-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
