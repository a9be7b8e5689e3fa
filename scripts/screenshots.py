#!/usr/bin/env python
"""Screenshot every page of the built book at desktop and phone widths, to read as a reader.

    .venv/bin/python scripts/screenshots.py                  # _build/html
    .venv/bin/python scripts/screenshots.py /tmp/build-x/_build/html
    .venv/bin/python scripts/screenshots.py --only 03_gaussian

Serves the site on 127.0.0.1, opens each page in Debian's headless Chromium (no request
leaves the machine), waits for MathJax, and writes full-page PNGs to
``test-artifacts/screenshots/<page>-desktop.png`` (1280 px wide) and ``-phone.png``
(390 px). It also prints what a reader would trip over: a page wider than the screen,
display math, code or output wider than its column (it scrolls sideways), and
figures drawn much smaller or larger than their natural size.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import pathlib
import re
import socketserver
import sys
import threading

from playwright.sync_api import sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "test-artifacts" / "screenshots"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ASSET_DIRS = {"_static", "_sources", "_images", "mathjax", "_downloads"}

_MEASURE = r"""
() => {
  const vw = document.documentElement.clientWidth;
  const notes = [];
  if (document.documentElement.scrollWidth > vw + 1)
    notes.push(`page is ${document.documentElement.scrollWidth}px wide in a ${vw}px window`);
  const label = el => (el.closest('[id]') || {}).id || el.tagName.toLowerCase();
  for (const el of document.querySelectorAll(
      'article div.math, article mjx-container[display="true"], article pre, ' +
      'article .cell_output .output, article table')) {
    if (el.scrollWidth > el.clientWidth + 2)
      notes.push(`${el.tagName.toLowerCase()}.${(el.className || '').toString().split(' ')[0]}` +
                 ` in #${label(el)} scrolls: ${el.scrollWidth}px in ${el.clientWidth}px`);
  }
  for (const img of document.querySelectorAll('article img')) {
    if (!img.naturalWidth) { notes.push(`image not loaded: ${img.getAttribute('src')}`); continue; }
    if (img.naturalWidth < 100) continue;  // icons
    const scale = img.clientWidth / img.naturalWidth;
    if (scale < 0.45 || img.clientWidth < 0.3 * vw && vw > 600)
      notes.push(`image ${img.getAttribute('src')} drawn ${img.clientWidth}px ` +
                 `(natural ${img.naturalWidth}px, ${Math.round(scale * 100)}%)`);
  }
  return notes;
}
"""


def _serve(site: pathlib.Path) -> tuple[socketserver.BaseServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("site", nargs="?", default=str(ROOT / "_build" / "html"))
    parser.add_argument("--only", default="", help="regex: pages to take")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    site = pathlib.Path(args.site).resolve()
    if not (site / "index.html").is_file():
        print(f"no built book at {site}: build it first (scripts/build_book.sh)",
              file=sys.stderr)
        return 2
    rels = [p.relative_to(site) for p in sorted(site.rglob("*.html"))]
    pages = [r.as_posix() for r in rels
             if r.parts[0] not in ASSET_DIRS and r.as_posix() != "index.html"]
    pages = [p for p in pages if re.search(args.only, p)]
    OUT.mkdir(parents=True, exist_ok=True)
    server, base = _serve(site)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=ARGS)
            for kind, (width, height) in WIDTHS.items():
                context = browser.new_context(viewport={"width": width, "height": height},
                                              device_scale_factor=1)
                context.route("**/*", lambda route: route.continue_()
                              if route.request.url.startswith(base)
                              or route.request.url.startswith("data:")
                              else route.abort())
                page = context.new_page()
                for rel in pages:
                    page.goto(base + rel, wait_until="networkidle")
                    page.evaluate("""async () => { if (window.MathJax && MathJax.startup)
                                       await MathJax.startup.promise; }""")
                    name = rel.removesuffix(".html").replace("/", "_")
                    path = OUT / f"{name}-{kind}.png"
                    page.screenshot(path=str(path), full_page=True)
                    notes = page.evaluate(_MEASURE)
                    print(f"{path.relative_to(ROOT)}")
                    for note in notes:
                        print(f"    {kind}: {note}")
                context.close()
            browser.close()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
