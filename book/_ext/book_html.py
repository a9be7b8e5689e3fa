"""Small fixes to the HTML that Jupyter Book 1 writes, so that every page loads cleanly
and links only to what exists.

Loaded from ``_config.yml`` (``sphinx.local_extensions``).

**The repository is one setting.** ``repository.url`` in ``_config.yml`` is the only
place the book's repository is named. Empty (the default), the book shows no
repository button and no Binder or Colab launch buttons (they would point at a
repository that does not exist); the download buttons, which work offline, stay.
Set, the repository button is switched on and the launch buttons (Binder, Colab,
configured under ``launch_buttons``) point at it. (Jupyter Book itself refuses
``use_repository_button: true`` without a URL, so the switch is made here.)

**The whole book as a PDF.** If ``scripts/build_pdf.sh`` has built the PDF next to
this HTML build (``<build>/latex/book.pdf``), it is copied into the site as
``book.pdf`` and the download menu's ".pdf" entry, by default the browser's print
dialog for one page, becomes a link to it.

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

import pathlib
import shutil
from typing import Any

#: The whole book's PDF: its name in the LaTeX build and in the HTML site.
PDF_NAME = "book.pdf"
#: Launch providers that need a public repository.
_LAUNCH_KEYS = ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url",
                "jupyterlite_url")


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


def repository_buttons(app, config) -> None:
    """Repository and launch buttons on if and only if ``repository.url`` is set."""
    options = config.html_theme_options
    url = (options.get("repository_url") or "").strip()
    if url:
        options["use_repository_button"] = True
        return
    options.pop("repository_url", None)
    for key in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
        options[key] = False
    launch = dict(options.get("launch_buttons") or {})
    for key in _LAUNCH_KEYS:
        launch[key] = ""
    launch["thebe"] = False
    options["launch_buttons"] = launch


def _built_pdf(app) -> pathlib.Path | None:
    if app.builder.format != "html":
        return None
    pdf = pathlib.Path(app.outdir).parent / "latex" / PDF_NAME
    return pdf if pdf.is_file() else None


def link_book_pdf(app, pagename, templatename, context, doctree) -> None:
    """Point the download menu's ".pdf" entry at the whole book's PDF, if built."""
    if _built_pdf(app) is None:
        return
    for button in context.get("header_buttons", []):
        for i, item in enumerate(button.get("buttons", [])):
            if item.get("label") == "download-pdf-button":
                button["buttons"][i] = {
                    "type": "link",
                    "url": context["pathto"](PDF_NAME, 1),
                    "text": ".pdf (book)",
                    "tooltip": "Download the whole book as a PDF",
                    "icon": "fas fa-file-pdf",
                    "label": "download-book-pdf-button",
                }


def copy_book_pdf(app, exception) -> None:
    pdf = None if exception else _built_pdf(app)
    if pdf is not None:
        shutil.copy2(pdf, pathlib.Path(app.outdir) / PDF_NAME)


def setup(app) -> dict[str, Any]:
    app.connect("config-inited", repository_buttons)
    # A late priority: run after the extensions that add scripts in html-page-context
    # (sphinx.ext.mathjax adds its configuration and loader there) and after the
    # theme's header buttons (priority 501).
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("html-page-context", link_book_pdf, priority=900)
    app.connect("build-finished", copy_book_pdf)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
