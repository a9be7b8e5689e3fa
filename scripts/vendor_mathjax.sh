#!/usr/bin/env bash
# Vendor a pinned MathJax 3 into book/_vendor/mathjax/ so that the built book typesets
# its math without a network (see mathjax_path and html_extra_path in _config.yml).
#
#   scripts/vendor_mathjax.sh            # re-vendor the pinned version
#   MATHJAX_VERSION=3.2.2 scripts/vendor_mathjax.sh
#
# It fetches the package with `npm pack` from the npm registry, checks its integrity
# against the pin below, and copies only what the book loads:
#   tex-chtml.js                      TeX input + CommonHTML output + menu (one file)
#   input/tex/extensions/*.js         TeX packages that `autoload` fetches on first use
#                                     (\boldsymbol, \cancel, \color, mathtools, ...)
#   output/chtml/fonts/woff-v2/*.woff the CommonHTML fonts
# Left out: the speech rule engine (sre/, 4 MB) and a11y/, which MathJax only loads when a
# reader switches on the explorer in its context menu.
# Not under book/_static/: Jupyter Book 1 would inject every .js found there into every page.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${MATHJAX_VERSION:-3.2.2}"
# `npm view mathjax@3.2.2 dist.integrity`
INTEGRITY_3_2_2="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
DEST=book/_vendor/mathjax

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "mathjax@${VERSION}" >/dev/null)
tarball="$tmp/mathjax-${VERSION}.tgz"
if [ "$VERSION" = "3.2.2" ]; then
  got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [ "$got" = "$INTEGRITY_3_2_2" ] || { echo "error: integrity mismatch for mathjax@$VERSION" >&2; exit 1; }
fi
tar -xzf "$tarball" -C "$tmp"
src="$tmp/package/es5"

rm -rf "$DEST"
mkdir -p "$DEST/input/tex" "$DEST/output/chtml/fonts"
cp "$src/tex-chtml.js" "$DEST/"
cp -r "$src/input/tex/extensions" "$DEST/input/tex/"
cp -r "$src/output/chtml/fonts/woff-v2" "$DEST/output/chtml/fonts/"
cp "$tmp/package/LICENSE" "$DEST/LICENSE"
echo "mathjax@${VERSION} (npm), es5 build; vendored by scripts/vendor_mathjax.sh" > "$DEST/VERSION"
du -sh "$DEST"
