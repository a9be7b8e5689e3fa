#!/usr/bin/env bash
# Quick start, step 2 (and what CI runs): install everything, build the book (the PDF, then
# the HTML that links it), run every test: the companion's tests, strict nbval over every
# notebook, the PDF's test, the JupyterLab test, and the browser test of the built book.
# Extra arguments go to pytest. With COMPANION_DEVICE=cuda the notebooks and the
# CUDA-marked tests run on the GPU (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh

if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser test..."
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium >/dev/null
fi

scripts/build_pdf.sh        # installs Debian's TeX Live if it is missing
scripts/build_book.sh       # copies _build/latex/book.pdf into the site and links it
.venv/bin/python -m pytest "$@"
