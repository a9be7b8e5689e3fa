"""Repository-wide pytest set-up: which paths to collect, and nbval's sanitizer.

The book's notebooks are checked with strict nbval (``--nbval``, see ``addopts`` in
``pyproject.toml``). Output that legitimately varies is normalised by the regexes
in ``nbval_sanitize.cfg``; when ``COMPANION_DEVICE`` names a CUDA device, the
regexes of ``nbval_sanitize_gpu.cfg`` are added (see that file for which outputs,
and why).
"""

from __future__ import annotations

import os
import pathlib
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent

collect_ignore = ["_build", ".venv", "build", "benchmarks", "scripts"]


def _on_gpu() -> bool:
    return os.environ.get("COMPANION_DEVICE", "cpu").strip().startswith("cuda")


def pytest_configure(config):
    option = getattr(config.option, "nbval_sanitize_with", "unset")
    if option != None:  # noqa: E711  (unset: nbval absent; a path: the user chose one)
        return
    text = (ROOT / "nbval_sanitize.cfg").read_text()
    if _on_gpu():
        text += "\n" + (ROOT / "nbval_sanitize_gpu.cfg").read_text()
    merged = pathlib.Path(tempfile.mkdtemp(prefix="nbval-")) / "sanitize.cfg"
    merged.write_text(text)
    config.option.nbval_sanitize_with = str(merged)


# myst-nb's glue records, one mime type per representation of a glued value.
_GLUE_RECORDS = (
    "application/papermill.record/",
    "application/papermill.record/text/plain",
    "application/papermill.record/text/markdown",
    "application/papermill.record/text/html",
)


def pytest_collection_modifyitems(session, config, items):
    """On a GPU, do not compare glue records byte for byte.

    A glued value (``myst_nb.glue``) is stored as a record whose text nbval compares
    exactly, and the sanitizer cannot round it. Values from long float computations
    (chapter 7's training) legitimately differ in their last digits on a GPU. On the
    CPU every record is still compared exactly; on a GPU the printed lines that
    carry the same numbers are compared with the ``(float-order)`` mask instead.
    """
    if not _on_gpu():
        return
    for item in items:
        parent = getattr(item, "parent", None)
        skip = getattr(parent, "skip_compare", None)
        if isinstance(skip, tuple) and not set(_GLUE_RECORDS) <= set(skip):
            parent.skip_compare = skip + _GLUE_RECORDS
