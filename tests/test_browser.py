"""The book as readers see it: every built HTML page, loaded in headless Chromium.

For every page of the built site (found by listing the site, so a new chapter is
covered as soon as it is in ``_toc.yml``) this checks that

* the math is typeset by the book's own MathJax: every element Sphinx marks as math
  holds a ``mjx-container``, and no raw TeX delimiter (``$$``, ``\\(``, ``\\[``,
  ``\\begin{``) is left in the visible text outside code;
* every ``<img>`` has loaded (``naturalWidth > 0``) and has non-empty ``alt`` text
  (figures get theirs from the cell metadata ``mystnb.image.alt``);
* at a phone's width (390 px) the page is no wider than the screen;
* no uncaught JavaScript error (``pageerror``) and no console error;
* no marker meant for the tests shows on the page (``(float-order)``, ``NBVAL_``):
  the GPU tolerance for trained numbers is the cell tag ``float-order``;
* no request goes to any host but the local server (all others are recorded and
  aborted, so the test behaves the same with or without a network), and no local
  request fails (a 404 for a font or a MathJax extension, say);
* the primary sidebar links to every file in ``_toc.yml``;
* read in the theme's dark mode (its own switch, clicked): no text is unreadable
  (contrast with what is painted behind it below 2:1), and no image with a
  transparent background has drawn pixels that vanish into the dark backdrop
  (black figure text on a dark page);
* no link in the page's chrome (header, sidebars, footer) goes to a code host other
  than ``repository.url`` of ``_config.yml``, and no launch link (Binder, Colab,
  JupyterHub, Deepnote) anywhere goes to a repository other than that one (with no
  repository configured, there are none);
* every relative link points at a file of the site, and its ``#fragment`` at an id in
  that file; every absolute link is a well-formed http(s) or mailto URL.

Once per run: the search page finds each chapter from a word of its title, the
site's root redirects to the landing page, the notebook pages offer an ``.ipynb``
download (and Colab and Binder launch links exactly when a repository is
configured), the whole book's PDF is linked from every page's download menu when it
was built (``scripts/build_pdf.sh`` before the HTML), and Sphinx's ``linkcheck``
builder passes.

The site is ``$BOOK_HTML_DIR`` if set, else ``_build/html`` (``scripts/test.sh`` builds
it before pytest runs) unless a source of the book is newer than that build. Otherwise
the book is built strictly (``jupyter-book build . -W -n --keep-going``) into a
temporary folder first, so the test never silently skips and never checks a stale site.
Chromium is Debian's ``/usr/bin/chromium`` (``$CHROMIUM`` overrides); Playwright's own
browsers are never downloaded. On failure a screenshot goes to ``test-artifacts/``.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import json
import os
import pathlib
import re
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import urllib.parse

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000  # generous: the CI machine may be busy
# Directories of the site that hold assets, not pages.
ASSET_DIRS = {"_static", "_sources", "_images", "mathjax", "_downloads"}
# Raw TeX that MathJax should have replaced (searched in the visible text outside code).
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{")


# --------------------------------------------------------------------------- the site


def _jupyter_book() -> list[str]:
    exe = pathlib.Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book"]


def _build(builder: str | None = None) -> pathlib.Path:
    """Build the book strictly into a new temporary folder; return that folder."""
    out = pathlib.Path(tempfile.mkdtemp(prefix="book-browser-"))
    cmd = [*_jupyter_book(), "build", str(ROOT), "-W", "-n", "--keep-going",
           "--path-output", str(out)]
    if builder:
        cmd += ["--builder", builder]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out / "_build"


@functools.lru_cache(maxsize=1)
def site_dir() -> pathlib.Path:
    """The built HTML: $BOOK_HTML_DIR, else _build/html, else a fresh strict build."""
    env = os.environ.get("BOOK_HTML_DIR")
    if env:
        path = pathlib.Path(env).resolve()
        if not (path / "index.html").is_file():
            raise RuntimeError(f"BOOK_HTML_DIR={env!r} holds no built book (no index.html)")
        return path
    default = ROOT / "_build" / "html"
    if (default / "index.html").is_file() and not _stale(default):
        return default
    return _build() / "html"


def _stale(site: pathlib.Path) -> bool:
    """Whether a source of the book changed after `site` was built."""
    built = (site / ".buildinfo").stat().st_mtime if (site / ".buildinfo").exists() else 0
    sources = [ROOT / "_config.yml", ROOT / "_toc.yml",
               *(p for p in (ROOT / "book").rglob("*") if p.is_file()
                 and "_vendor" not in p.parts and ".ipynb_checkpoints" not in p.parts)]
    return any(p.stat().st_mtime > built for p in sources)


def toc_files() -> list[str]:
    """Every document of _toc.yml (root first), as paths without suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return files


#: Pages Sphinx generates besides the documents of _toc.yml.
GENERATED_PAGES = ["genindex.html", "py-modindex.html", "search.html"]


def pages() -> list[str]:
    """The site's HTML pages, relative to its root (the root's redirect excluded).

    Derived from _toc.yml (the build has ``only_build_toc_files``), so collecting the
    tests needs no build, and a new chapter is covered as soon as it is listed;
    ``test_every_built_page_is_tested`` checks that the built site holds no others.
    """
    return [f"{doc}.html" for doc in toc_files()] + GENERATED_PAGES


def built_pages() -> list[str]:
    """The HTML pages actually present in the built site."""
    site = site_dir()
    found = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site)
        if rel.parts[0] in ASSET_DIRS or rel.as_posix() == "index.html":
            continue
        found.append(rel.as_posix())
    return found


# --------------------------------------------------------------------------- fixtures


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture(scope="module")
def base_url():
    handler = functools.partial(_QuietHandler, directory=str(site_dir()))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not pathlib.Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM!r}: `apt-get install chromium` "
                    "(scripts/test.sh does), or set $CHROMIUM")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS,
                                     headless=True)
        yield browser
        browser.close()


class PageRecord:
    """A page opened in a fresh context, with everything that went wrong recorded."""

    def __init__(self, browser, base_url: str, width: int = 1280, height: int = 900):
        self.context = browser.new_context(viewport={"width": width, "height": height},
                                           service_workers="block")
        self.context.set_default_timeout(TIMEOUT_MS)
        self.base_host = urllib.parse.urlsplit(base_url).netloc
        self.offsite: list[str] = []
        self.failed: list[str] = []
        self.js_errors: list[str] = []
        self.console_errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.js_errors.append(str(exc)))
        self.page.on("console", self._console)
        self.page.on("requestfailed", self._request_failed)
        self.page.on("response", self._response)

    def _route(self, route):
        url = route.request.url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.netloc == self.base_host:
            route.continue_()
        else:
            self.offsite.append(url)
            route.abort("blockedbyclient")

    def _console(self, msg):
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} @ {msg.location.get('url', '')}")

    def _request_failed(self, request):
        if urllib.parse.urlsplit(request.url).netloc == self.base_host:
            self.failed.append(f"{request.url}: {request.failure}")

    def _response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def screenshot(self, name: str) -> pathlib.Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
        try:
            self.page.screenshot(path=str(path), full_page=True)
        except Exception:  # noqa: BLE001  (a screenshot is a courtesy; keep the real error)
            pass
        return path

    def close(self):
        self.context.close()


@pytest.fixture
def record(browser, base_url, request):
    rec = PageRecord(browser, base_url)
    try:
        yield rec
    finally:
        rec.close()


def _expect(problems: list[str], record: PageRecord, name: str) -> None:
    if problems:
        shot = record.screenshot(name)
        pytest.fail(f"{name}: {len(problems)} problem(s) (screenshot: {shot}):\n  "
                    + "\n  ".join(problems))


# --------------------------------------------------------------------------- per page

_PAGE_STATE_JS = r"""
() => {
  const skip = 'pre, code, script, style, textarea, .highlight, mjx-container, .MathJax';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const texts = [];
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!el || el.closest(skip)) continue;
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden') continue;
    if (node.textContent.trim()) texts.push(node.textContent);
  }
  const math = Array.from(document.querySelectorAll('.math'));
  return {
    text: texts.join(' '),
    mathElements: math.length,
    untypeset: math.filter(m => !m.querySelector('mjx-container'))
                   .map(m => m.textContent.trim().slice(0, 80)),
    mjx: document.querySelectorAll('mjx-container').length,
    mathjaxSrc: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s)),
    brokenImages: Array.from(document.images)
        .filter(i => !i.complete || i.naturalWidth === 0)
        .map(i => i.getAttribute('src')),
    images: document.images.length,
    // myst-nb writes the image's path as alt when the cell gives none: not alt text.
    noAlt: Array.from(document.images)
        .filter(i => { const alt = (i.getAttribute('alt') || '').trim();
                       const src = i.getAttribute('src') || '';
                       return !alt || alt === src || /\.(png|jpe?g|svg|gif|webp)$/i.test(alt)
                              || src.endsWith(alt); })
        .map(i => i.getAttribute('src')),
    markers: ['(float-order)', 'NBVAL_', 'nbval-ignore', 'nbval-skip']
        .filter(m => document.body.innerText.includes(m)),
    sidebar: Array.from(document.querySelectorAll(
        '.bd-sidebar-primary a[href]'))
        .map(a => new URL(a.getAttribute('href'), location.href).pathname),
  };
}
"""


PHONE_WIDTH = 390
# The innermost elements that stick out past the right edge of the window.
_WIDEST_JS = r"""
(vw) => Array.from(document.querySelectorAll('.bd-article *'))
  .filter(el => el.getBoundingClientRect().right > vw + 1 && el.children.length === 0)
  .slice(0, 3)
  .map(el => `<${el.tagName.toLowerCase()} class="${el.className}">`
             + (el.textContent || '').trim().slice(0, 40))
"""


def _open(record: PageRecord, url: str) -> dict:
    page = record.page
    page.goto(url, wait_until="load")
    # Lazy images load only when scrolled to: make them eager, then wait for them.
    page.evaluate("""() => Promise.all(Array.from(document.images).map(img => {
        img.loading = 'eager';
        return img.complete ? null : new Promise(r => { img.onload = img.onerror = r; });
    }))""")
    # MathJax 3: wait for the first typesetting pass (loader, fonts, autoloaded packages).
    page.evaluate("""async () => {
        for (let i = 0; i < 600 && document.querySelector('script[src*="mathjax"]'); i++) {
            if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
                await MathJax.startup.promise; return; }
            await new Promise(r => setTimeout(r, 50));
        }
    }""")
    page.wait_for_load_state("networkidle")
    return page.evaluate(_PAGE_STATE_JS)


@pytest.mark.parametrize("page_path", pages())
def test_page(record, base_url, page_path):
    """One page: math typeset, images loaded, no JS error, nothing fetched off the site."""
    try:
        state = _open(record, base_url + page_path)
    except Exception:
        record.screenshot(f"page-{page_path}")
        raise
    problems = []
    if state["mathElements"]:
        if not state["mathjaxSrc"]:
            problems.append("the page has math but loads no MathJax")
        if state["untypeset"]:
            problems.append(f"{len(state['untypeset'])} math element(s) not typeset, e.g. "
                            f"{state['untypeset'][:3]}")
    for src in state["mathjaxSrc"]:
        if urllib.parse.urlsplit(src).netloc != record.base_host:
            problems.append(f"MathJax is loaded from off the site: {src}")
    raw = sorted({m.group(0) for m in RAW_TEX.finditer(state["text"])})
    if raw:
        at = RAW_TEX.search(state["text"]).start()
        problems.append(f"raw TeX {raw} in the visible text, e.g. "
                        f"{state['text'][max(0, at - 60):at + 60]!r}")
    if state["brokenImages"]:
        problems.append(f"images that did not load: {state['brokenImages']}")
    if state["markers"]:
        problems.append(f"test markers shown to readers: {state['markers']} (use the cell "
                        f"tag float-order instead)")
    if state["noAlt"]:
        problems.append(f"{len(state['noAlt'])} image(s) without alt text (set the "
                        f"figure cell's metadata mystnb.image.alt), e.g. "
                        f"{state['noAlt'][:3]}")
    problems += [f"uncaught JS error: {e}" for e in record.js_errors]
    problems += [f"console error: {e}" for e in record.console_errors]
    problems += [f"request off the site (aborted): {u}" for u in record.offsite]
    problems += [f"failed request: {f}" for f in record.failed]
    linked = set(state["sidebar"])
    for doc in toc_files()[1:]:  # the root is the logo's link, not a sidebar entry
        if not any(p.endswith("/" + doc + ".html") for p in linked):
            problems.append(f"the sidebar does not link to {doc}")
    problems += _dark_mode_problems(record)
    # A phone (390 px): the page must not be wider than the screen (wide equations,
    # code and tables scroll inside their own box instead).
    record.page.set_viewport_size({"width": PHONE_WIDTH, "height": 844})
    record.page.wait_for_timeout(300)
    width = record.page.evaluate("() => document.documentElement.scrollWidth")
    if width > PHONE_WIDTH + 1:
        culprits = record.page.evaluate(_WIDEST_JS, PHONE_WIDTH)
        problems.append(f"at {PHONE_WIDTH} px wide the page is {width} px wide; widest: "
                        f"{culprits}")
    _expect(problems, record, f"page-{page_path}")


# --------------------------------------------------------------------------- dark mode

# Contrast (WCAG 2) of every visible text against what is painted behind it, and the
# backdrop of every image that has transparent pixels. Backgrounds are composited
# from the element up to the root; the root's colour is the page's.
_DARK_JS = r"""
() => {
  const parse = c => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {   // top composited over an opaque bottom
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const lum = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
                            return (x + 0.05) / (y + 0.05); };
  const rootBg = (() => { let c = parse(getComputedStyle(document.body).backgroundColor);
    if (c[3] === 0) c = parse(getComputedStyle(document.documentElement).backgroundColor);
    return c[3] === 0 ? [255, 255, 255, 1] : over(c, [255, 255, 255, 1]); })();
  const backdrop = el => {
    const layers = [];
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let bg = rootBg;
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  const visible = el => {
    const s = getComputedStyle(el), r = el.getBoundingClientRect();
    return s.visibility !== 'hidden' && s.display !== 'none' && +s.opacity > 0.05 &&
           r.width > 0 && r.height > 0 && !el.closest('[aria-hidden="true"], .visually-hidden, .sr-only');
  };
  const MIN_CONTRAST = 2;   // below 2:1 text is unreadable (WCAG asks 4.5:1 of body text)
  const problems = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    const text = walker.currentNode.textContent.trim();
    if (!el || !text || seen.has(el) || el.closest('script, style, noscript')) continue;
    seen.add(el);
    if (!visible(el)) continue;
    const fg = parse(getComputedStyle(el).color);
    const bg = backdrop(el);
    const r = ratio(over(fg, bg), bg);
    if (r < MIN_CONTRAST) problems.push(`text ${JSON.stringify(text.slice(0, 40))} in <${el.tagName.toLowerCase()}` +
                             `${el.className ? ' class="' + el.className + '"' : ''}> has contrast ` +
                             `${r.toFixed(2)}:1 against its background`);
  }
  for (const img of document.images) {
    if (!img.naturalWidth || !visible(img)) continue;
    // Sample the image: the share of transparent pixels, and of opaque pixels that
    // would vanish into the backdrop (contrast below 1.5:1, e.g. black figure text
    // on a transparent background over a dark page).
    const bg = backdrop(img);
    let transparent = 0, opaque = 0, vanishing = 0;
    try {
      const w = Math.min(img.naturalWidth, 300), h = Math.min(img.naturalHeight, 300);
      const canvas = document.createElement('canvas');
      canvas.width = w; canvas.height = h;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(img, 0, 0, w, h);
      const data = ctx.getImageData(0, 0, w, h).data;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] < 128) { transparent++; continue; }
        opaque++;
        if (ratio([data[i], data[i + 1], data[i + 2], 1], bg) < 1.5) vanishing++;
      }
    } catch (e) { continue; }   // an SVG without a size, say: nothing to sample
    if (transparent && opaque && vanishing / opaque > 0.005)
      problems.push(`image ${img.getAttribute('src')}: ${Math.round(100 * transparent /
                    (transparent + opaque))}% transparent, and ${(100 * vanishing / opaque).toFixed(1)}% ` +
                    `of its drawn pixels vanish into the dark backdrop (contrast < 1.5:1)`);
  }
  return problems.slice(0, 8);
}
"""


def _dark_mode_problems(record: PageRecord) -> list[str]:
    """Switch the page to dark mode with the theme's own button, then check it."""
    page = record.page
    button = page.locator("button.theme-switch-button:visible").first
    if button.count() == 0:
        return ["no dark-mode switch (button.theme-switch-button) on the page"]
    for _ in range(3):  # the switch cycles light -> dark -> auto
        if page.evaluate("() => document.documentElement.dataset.theme") == "dark":
            break
        button.click()
    if page.evaluate("() => document.documentElement.dataset.theme") != "dark":
        return ["the theme's switch did not turn on dark mode"]
    # Wait for the switch's CSS transitions: the page's background has turned dark.
    page.wait_for_function(r"""() => {
        const m = getComputedStyle(document.body).backgroundColor.match(/\d+(\.\d+)?/g);
        return m && (+m[0] + +m[1] + +m[2]) / 3 < 60; }""")
    page.wait_for_timeout(500)
    return [f"dark mode: {p}" for p in page.evaluate(_DARK_JS)]


# --------------------------------------------------------------------------- links


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()
        #: hrefs outside the <article> (the theme's header, sidebars, footer)
        self.chrome_hrefs: list[str] = []
        self._article_depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "article":
            self._article_depth += 1
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        if tag == "a" and attrs.get("href") is not None:
            self.hrefs.append(attrs["href"])
            if not self._article_depth:
                self.chrome_hrefs.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "article" and self._article_depth:
            self._article_depth -= 1


def configured_repository() -> str:
    """``repository.url`` of _config.yml as ``owner/name`` ("" when none is set)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = ((config.get("repository") or {}).get("url") or "").strip().rstrip("/")
    if url.endswith(".git"):
        url = url[:-4]
    return urllib.parse.urlsplit(url).path.strip("/") if url else ""


#: Hosts whose links name a repository: code hosts, and services that launch one.
CODE_HOSTS = {"github.com", "gitlab.com", "bitbucket.org"}
LAUNCH_HOSTS = {"colab.research.google.com", "mybinder.org", "deepnote.com",
                "hub.gke2.mybinder.org"}


def _repository_of(href: str) -> str | None:
    """The ``owner/name`` a code-host or launch link points at, else None."""
    parts = urllib.parse.urlsplit(href)
    host = parts.netloc.lower()
    segments = [s for s in parts.path.split("/") if s]
    if host in CODE_HOSTS:
        return "/".join(segments[:2]) if len(segments) >= 2 else "/".join(segments)
    if host == "colab.research.google.com":      # /github/OWNER/NAME/blob/...
        return "/".join(segments[1:3]) if segments[:1] == ["github"] else ""
    if host in LAUNCH_HOSTS or "binder" in host:  # /v2/gh/OWNER/NAME/BRANCH?...
        return "/".join(segments[2:4]) if segments[:2] == ["v2", "gh"] else ""
    if parts.query and "repo=" in parts.query:   # JupyterHub's nbgitpuller
        repo = urllib.parse.parse_qs(parts.query).get("repo", [""])[0]
        return urllib.parse.urlsplit(repo).path.strip("/")
    return None


def repository_link_problems(links: "_Links", repo: str) -> list[str]:
    """Links to a repository other than the configured one (see the module docstring)."""
    problems = []
    for href in links.hrefs:
        host = urllib.parse.urlsplit(href).netloc.lower()
        target = _repository_of(href)
        if target is None:
            continue
        launch = host in LAUNCH_HOSTS or "binder" in host or host.startswith("colab")
        if launch and (not repo or target.lower() != repo.lower()):
            problems.append(f"launch link to {target or href!r}, not the configured "
                            f"repository {repo or '(none set)'}: {href}")
        elif not launch and href in links.chrome_hrefs and \
                (not repo or target.lower() != repo.lower()):
            problems.append(f"link to the repository {target!r} in the page's chrome, not "
                            f"the configured one ({repo or 'none set'}): {href}")
    return problems


@functools.lru_cache(maxsize=None)
def _parse(path: pathlib.Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("page_path", pages())
def test_links(page_path):
    """Relative links reach a file of the site (and an id in it); absolute ones are URLs."""
    site = site_dir()
    page = site / page_path
    problems = []
    for href in _parse(page).hrefs:
        parts = urllib.parse.urlsplit(href)
        if parts.scheme in ("http", "https"):
            if not parts.netloc or " " in href:
                problems.append(f"malformed URL {href!r}")
            continue
        if parts.scheme == "mailto":
            continue
        if parts.scheme or parts.netloc:
            problems.append(f"unexpected link {href!r}")
            continue
        target = (page.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path \
            else page
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(site) or not target.exists():
            problems.append(f"{href!r}: no such file in the site")
            continue
        if parts.fragment and target.suffix == ".html":
            if urllib.parse.unquote(parts.fragment) not in _parse(target).ids:
                problems.append(f"{href!r}: no id {parts.fragment!r} in {target.name}")
    problems += repository_link_problems(_parse(page), configured_repository())
    assert not problems, f"{page_path}:\n  " + "\n  ".join(problems)


# --------------------------------------------------------------------------- once per book


def test_every_built_page_is_tested():
    assert sorted(built_pages()) == sorted(pages())


def test_every_toc_file_is_built():
    built = set(built_pages())
    missing = [doc for doc in toc_files() if doc + ".html" not in built]
    assert not missing, f"in _toc.yml but not in the site {site_dir()}: {missing}"


def _title_word(doc: str) -> str:
    """The longest word of the page's <h1>: something the search must find."""
    text = (site_dir() / (doc + ".html")).read_text(encoding="utf-8")
    match = re.search(r"<h1[^>]*>(.*?)</h1>", text, re.S)
    assert match, f"{doc}.html has no <h1>"
    title = re.sub(r"<[^>]+>|&[a-z#0-9]+;", " ", match.group(1))
    words = re.findall(r"[A-Za-z][A-Za-z-]{3,}", title)
    assert words, f"{doc}.html: no word in its title {title!r}"
    return max(words, key=len).strip("-")


def test_search_finds_each_chapter(record, base_url):
    """The search page (Sphinx's index, run in the browser) finds each chapter by a title word."""
    problems = []
    chapters = [d for d in toc_files()[1:] if (ROOT / (d + ".ipynb")).exists()] \
        or toc_files()[1:]
    for doc in chapters:
        word = _title_word(doc)
        record.page.goto(f"{base_url}search.html?q={urllib.parse.quote(word)}",
                         wait_until="load")
        record.page.wait_for_function(
            "() => { const s = document.querySelector('#search-results');"
            " return s && /Search finished|found|did not match/i.test(s.innerText); }")
        hits = record.page.eval_on_selector_all(
            "#search-results ul.search li a", "els => els.map(a => a.href)")
        if not any(h.split("#")[0].split("?")[0].endswith("/" + doc + ".html") for h in hits):
            problems.append(f"searching {word!r} does not find {doc} (hits: {hits[:5]})")
    problems += [f"uncaught JS error: {e}" for e in record.js_errors]
    problems += [f"request off the site (aborted): {u}" for u in record.offsite]
    _expect(problems, record, "search")


def test_root_redirects_to_the_landing_page(record, base_url):
    root = toc_files()[0]
    record.page.goto(base_url, wait_until="load")
    record.page.wait_for_url(f"**/{root}.html", timeout=TIMEOUT_MS)
    assert record.page.locator("h1").count() >= 1


def test_notebook_pages_offer_launch_and_download(record, base_url):
    """The .ipynb to download; Colab and Binder launch links exactly when a repository
    is configured (then at that repository); the whole book's PDF when it was built."""
    owner_name = configured_repository()
    notebooks = [d for d in toc_files() if (ROOT / (d + ".ipynb")).exists()]
    if not notebooks:
        pytest.fail("no notebook chapter in _toc.yml")
    pdf = site_dir() / "book.pdf"
    problems = []
    if pdf.exists() and not pdf.read_bytes().startswith(b"%PDF"):
        problems.append("book.pdf in the site is not a PDF")
    for doc in toc_files()[:1] + notebooks:
        record.page.goto(f"{base_url}{doc}.html", wait_until="load")
        hrefs = record.page.eval_on_selector_all(
            "a[href]", "els => els.map(a => a.getAttribute('href'))")
        if pdf.exists():
            pdf_links = [h for h in hrefs if h.split("#")[0].endswith("book.pdf")]
            if not any((site_dir() / doc).parent.joinpath(h).resolve() == pdf.resolve()
                       for h in pdf_links):
                problems.append(f"{doc}: no link to the book's PDF ({pdf_links})")
        if doc not in notebooks:
            continue
        colab = [h for h in hrefs if h.startswith("https://colab.research.google.com/")]
        binder = [h for h in hrefs if h.startswith("https://mybinder.org/")]
        if owner_name:
            if not any(owner_name in h and h.endswith(doc + ".ipynb") for h in colab):
                problems.append(f"{doc}: no Colab link to {owner_name}/{doc}.ipynb ({colab})")
            if not any(owner_name in h and doc + ".ipynb" in h for h in binder):
                problems.append(f"{doc}: no Binder link to {owner_name} ({binder})")
        elif colab or binder:
            problems.append(f"{doc}: launch links although no repository is configured: "
                            f"{colab + binder}")
        downloads = [h for h in hrefs if h.split("?")[0].endswith(".ipynb")
                     and not h.startswith("http")]
        if not downloads:
            problems.append(f"{doc}: no .ipynb download link")
        for h in downloads:
            target = (site_dir() / doc).parent / h
            try:
                json.loads(target.read_text(encoding="utf-8"))["cells"]
            except (OSError, ValueError, KeyError) as exc:
                problems.append(f"{doc}: download {h} is not a notebook ({exc})")
        if record.page.locator("button.copybtn").count() == 0 and \
                record.page.locator("div.highlight pre").count() > 0:
            problems.append(f"{doc}: code blocks without a copy button")
    favicon = record.page.eval_on_selector_all("link[rel~=icon]", "els => els.length")
    logo = record.page.eval_on_selector_all("img.logo__image", "els => els.length")
    if not favicon:
        problems.append("no favicon link")
    if not logo:
        problems.append("no logo in the navigation bar")
    _expect(problems, record, "launch-download")


@pytest.mark.slow
def test_sphinx_linkcheck():
    """Sphinx's linkcheck builder: internal links resolve (external ones are skipped by
    ``linkcheck_ignore`` in ``_config.yml`` so that this runs offline)."""
    out = _build("linkcheck")
    try:
        # Jupyter Book 1 writes the linkcheck report into its html output folder.
        reports = sorted(out.rglob("output.json"))
        assert reports, f"linkcheck wrote no output.json under {out}"
        entries = [json.loads(line) for line in reports[0].read_text().splitlines()
                   if line.strip()]
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    assert entries, "linkcheck found no link at all: is the book empty?"
    broken = [e for e in entries if e.get("status") == "broken"]
    assert not broken, "\n".join(f"{e['filename']}:{e['lineno']} {e['uri']}: {e['info']}"
                                 for e in broken)


# --------------------------------------------------------------------------- the checks' own tests


@pytest.mark.parametrize("repo, html, bad", [
    ("", '<a href="https://colab.research.google.com/github/x/y/blob/main/a.ipynb">', 1),
    ("x/y", '<a href="https://colab.research.google.com/github/x/y/blob/main/a.ipynb">', 0),
    ("x/y", '<a href="https://mybinder.org/v2/gh/o/z/main?urlpath=lab">', 1),
    ("", '<nav><a href="https://github.com/o/z">repository</a></nav>', 1),
    ("o/z", '<nav><a href="https://github.com/o/z">repository</a></nav>', 0),
    # A citation in the text may link to any repository (an issue of PyTorch, say).
    ("", '<article><a href="https://github.com/pytorch/pytorch/issues/1">x</a></article>', 0),
    ("", '<a href="https://example.org/page">', 0),
])
def test_repository_link_check(repo, html, bad):
    links = _Links()
    links.feed(html)
    assert len(repository_link_problems(links, repo)) == bad


def test_dark_mode_check_catches_unreadable_text_and_figures(browser):
    """The dark-mode check itself: black text on a transparent figure over a dark page,
    and dark text on a dark background, are reported; the same figure on white is not."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=100)
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("a label in black")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", transparent=True)
    plt.close(fig)
    png = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content(f"""<html><body style="background:#121212;color:#eee">
            <p>readable</p><p id="dim" style="color:#222">invisible</p>
            <div id="dark"><img src="{png}" alt="x"></div>
            <div style="background:#fff"><img src="{png}" alt="x"></div></body></html>""")
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        problems = page.evaluate(_DARK_JS)
    finally:
        context.close()
    assert any("invisible" in p for p in problems), problems
    assert sum("vanish" in p for p in problems) == 1, problems
    assert len(problems) == 2, problems
