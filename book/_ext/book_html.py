"""Small fixes to the HTML that Jupyter Book 1 writes, so that every page loads cleanly.

Loaded from ``_config.yml`` (``sphinx.local_extensions``).

**Inline scripts written twice.** Jupyter Book 1.0.4 resolves to Sphinx 7.4, where an
inline script (``app.add_js_file(None, body=...)``) registered *after* the builder is
initialised ends up twice on every page:

* ``Sphinx.add_js_file`` stores it in the registry and hands it to the builder with
  ``filename=None``;
* ``StandaloneHTMLBuilder.prepare_writing`` re-adds every registry entry as
  ``add_js_file(js_filename or '', ...)``, with ``filename=''``;
* the builder's duplicate check compares ``_JavaScript`` objects, and ``None != ''``.

sphinx-thebe registers ``const THEBE_JS_URL = ...`` at ``env-before-read-docs``, so the
page declares the same ``const`` twice: ``SyntaxError: Identifier 'THEBE_JS_URL' has
already been declared``, an uncaught error on every page. (sphinx-togglebutton's
``var togglebuttonSelector`` is doubled the same way, harmlessly.) Here, just before
each page is rendered, scripts that differ only in ``None`` versus ``''`` as their
file name are merged, keeping the first.
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple:
    filename = getattr(script, "filename", script) or ""
    priority = getattr(script, "priority", 500)
    attributes = getattr(script, "attributes", {}) or {}
    return (filename, priority, tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated ``<script>`` entries from the page's ``script_files``, in place."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app) -> dict[str, Any]:
    # A late priority: run after the extensions that add scripts in html-page-context
    # (sphinx.ext.mathjax adds its configuration and loader there).
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
