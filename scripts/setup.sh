#!/usr/bin/env bash
# Quick start, step 1: install the pinned requirements into .venv and build the book.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
scripts/build_book.sh
echo
echo "The book is built: open $(pwd)/_build/html/index.html in a browser."
