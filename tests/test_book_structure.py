"""The book's notebooks are stored the way nbval and the build rely on.

The HTML renders the stored outputs (``execute_notebooks: "off"``) and strict nbval
re-executes every notebook and compares with them. These checks catch, before any
kernel starts, the ways a stored notebook can disagree with that contract: cells
run out of order or never run, an error stored as output, a path of the author's
machine in an output, or a chapter missing from the table of contents.
"""

from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


def _toc_files() -> set[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {toc["root"]}
    for part in toc.get("parts", []):
        for chapter in part.get("chapters") or []:
            files.add(chapter["file"])
    return files


def test_book_renders_stored_outputs_and_never_caches():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"


def test_every_notebook_is_in_the_table_of_contents():
    listed = _toc_files()
    missing = [p.name for p in NOTEBOOKS if f"book/{p.stem}" not in listed]
    assert not missing, f"notebooks not in _toc.yml: {missing}"


def test_every_toc_entry_exists():
    for entry in _toc_files():
        candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_was_run_top_to_bottom_without_errors(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: a code cell has no stored output (run it top to bottom)"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: cells ran out of order: {counts}"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{path.name}: an error is stored"
    text = json.dumps(outputs)
    assert not re.search(r"/(work|tmp|root|home)/", text), f"{path.name}: an output shows a machine path"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
