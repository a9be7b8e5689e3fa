"""Repository-wide pytest set-up: which paths to collect, and nbval's sanitizer.

The book's notebooks are checked with strict nbval (``--nbval``, see ``addopts`` in
``pyproject.toml``). Output that legitimately varies is normalised by the regexes
in ``tests/nbval/sanitize.cfg``; when ``COMPANION_DEVICE`` names a CUDA device, the
regexes of ``tests/nbval/sanitize_gpu.cfg`` are added (see that file for which outputs,
and why).

Trained numbers (the ``float-order`` cell tag)
----------------------------------------------
A number that comes out of a long floating-point computation (training a model)
may differ in its last digits on a GPU, whose reductions sum in another order.
The cell that prints or glues such numbers carries the cell tag ``float-order``
(``"metadata": {"tags": ["float-order"]}``), which readers never see. On a GPU,
in the outputs of tagged cells only, the last two digits of every decimal number
are masked (:func:`mask_float_digits`) in every text output, the glue records
(``application/papermill.record/...``) included. On the CPU nothing is masked:
stored and fresh outputs are compared exactly.
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent

collect_ignore = ["_build", ".venv", "build", "benchmarks", "scripts"]

#: The cell tag that marks outputs computed by long float computations.
FLOAT_ORDER_TAG = "float-order"

# A decimal number (a mantissa, in scientific notation): keep what precedes its last
# one or two digits. The negative lookahead pins the masked digits to the number's end.
_LAST_DIGITS = re.compile(r"(\d\.\d*?)\d{1,2}(?![0-9])")


def _on_gpu() -> bool:
    return os.environ.get("COMPANION_DEVICE", "cpu").strip().startswith("cuda")


def mask_float_digits(text: str) -> str:
    """Replace the last one or two digits of every decimal number in ``text`` by ``##``.

    ``"loss 0.1234, 12.5, 3.25e-04"`` becomes ``"loss 0.12##, 12.##, 3.##e-04"``.
    Integers are left alone (epochs, counts, sizes are exact on any device).
    """
    return _LAST_DIGITS.sub(r"\1##", text)


def pytest_configure(config):
    option = getattr(config.option, "nbval_sanitize_with", "unset")
    if option != None:  # noqa: E711  (unset: nbval absent; a path: the user chose one)
        return
    text = (ROOT / "tests" / "nbval" / "sanitize.cfg").read_text()
    if _on_gpu():
        text += "\n" + (ROOT / "tests" / "nbval" / "sanitize_gpu.cfg").read_text()
    merged = pathlib.Path(tempfile.mkdtemp(prefix="nbval-")) / "sanitize.cfg"
    merged.write_text(text)
    config.option.nbval_sanitize_with = str(merged)


def _cell_tags(item) -> list[str]:
    cell = getattr(item, "cell", None)
    metadata = getattr(cell, "metadata", None) or {}
    return list(metadata.get("tags", []) or [])


def _mask_in(item) -> None:
    """Make nbval's per-cell ``sanitize`` of ``item`` also mask trailing digits."""
    sanitize = item.sanitize  # the bound method: the configured regexes first

    def sanitize_and_mask(s):
        s = sanitize(s)
        return mask_float_digits(s) if isinstance(s, str) else s

    item.sanitize = sanitize_and_mask


def pytest_collection_modifyitems(session, config, items):
    """On a GPU, mask the last digits of numbers in cells tagged ``float-order``.

    nbval sanitizes every output string of a cell (stored and fresh) through the
    cell item's ``sanitize`` method before comparing them, so wrapping it per item
    changes the comparison of that cell only. On the CPU nothing changes.
    """
    if not _on_gpu():
        return
    for item in items:
        if hasattr(item, "sanitize") and FLOAT_ORDER_TAG in _cell_tags(item):
            _mask_in(item)
