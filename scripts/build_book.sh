#!/usr/bin/env bash
# Build the HTML book strictly (any warning is an error) from the stored notebook outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf _build/html _build/.doctrees
.venv/bin/jupyter-book build . -W -n --keep-going "$@"
