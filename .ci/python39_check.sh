#!/usr/bin/env bash
# requires-python says >=3.9: build and install needle on Python 3.9 in a fresh venv (CPU
# backend), then train from outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
# pyenv's own 3.9 first: a pyenv shim named python3.9 fails unless 3.9 is a selected version
py39="$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.9*/bin/python 2>/dev/null | head -1 || true)"
if [ -z "$py39" ] && python3.9 -c "" 2>/dev/null; then py39="$(command -v python3.9)"; fi
[ -n "$py39" ] || { echo "error: no Python 3.9 interpreter found for the requires-python check" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$py39" -m venv "$work/venv"
"$work/venv/bin/pip" install -q numpy scikit-build-core pybind11 scikit-learn
NEEDLE_ENABLE_CUDA=OFF "$work/venv/bin/pip" install -q --no-build-isolation .
cd "$work"
"$work/venv/bin/python" -m needle.apps.train --model lenet --dataset digits --epochs 1 \
  --out "$work/run" | tail -1
