#!/usr/bin/env bash
# Build the whole book as one PDF with Jupyter Book's LaTeX builder and XeLaTeX.
#
#   scripts/build_pdf.sh                      # writes _build/latex/book.pdf
#   scripts/build_pdf.sh --path-output DIR    # writes DIR/_build/latex/book.pdf
#
# Installs Debian's TeX Live packages first if xelatex or latexmk is missing (as
# scripts/test.sh does for chromium): about 4 minutes on a loaded 2-core machine.
# The HTML build (scripts/build_book.sh) then copies the PDF into the site as
# book.pdf and links it from every page's download menu (book/_ext/book_html.py),
# so build the PDF first. Extra arguments go to `jupyter-book build`.
set -euo pipefail
cd "$(dirname "$0")/.."

# What Sphinx's LaTeX writer and sphinx-jupyterbook-latex load, and nothing more:
# the LaTeX base and recommended packages, the extra packages Sphinx needs (fncychap,
# tabulary, capt-of, needspace, wrapfig, ...), XeLaTeX with the FreeFont OpenType
# fonts Sphinx uses under XeLaTeX, and latexmk to run the passes.
TEX_PACKAGES=(texlive-latex-recommended texlive-fonts-recommended texlive-latex-extra
              texlive-xetex latexmk fonts-freefont-otf)
if ! command -v xelatex >/dev/null 2>&1 || ! command -v latexmk >/dev/null 2>&1 ||
   ! fc-list 2>/dev/null | grep -q FreeSerif; then
  echo "Installing Debian's TeX Live for the PDF (${TEX_PACKAGES[*]})..."
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
    "${TEX_PACKAGES[@]}" >/dev/null
fi

.venv/bin/jupyter-book build . --builder pdflatex -W -n --keep-going "$@"
out="_build"
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--path-output" ]; then j=$((i + 1)); out="${!j}/_build"; fi
done
echo
echo "The PDF is built: $out/latex/book.pdf"
