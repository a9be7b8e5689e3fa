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


_GLUE_ROLE = re.compile(r"\{glue(?::[a-z]+)?\}`([^`]+)`")


def _glue_keys(path: pathlib.Path) -> set[str]:
    """The names of the glue records stored in a notebook's outputs."""
    nb = json.loads(path.read_text())
    keys = set()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                keys.add(name)
    return keys


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_glue_reference_has_a_stored_record(path):
    """Every ``{glue:...}`` role in the prose names a record a cell stored, in this notebook
    or, for ``other.ipynb::key``, in that one (the build would warn; this says where, fast)."""
    nb = json.loads(path.read_text())
    missing = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for ref in _GLUE_ROLE.findall("".join(cell["source"])):
            source, _, rest = ref.rpartition("::")  # [file.ipynb::]key[:format]
            key = rest.split(":")[0]
            target = path.parent / source if source else path
            if not target.exists() or key not in _glue_keys(target):
                missing.append(f"{source + '::' if source else ''}{key}")
    assert not missing, f"{path.name}: glue references without a stored record: {missing}"


_TEST_FILE = re.compile(r"tests/test_\w+\.py")


def test_every_test_file_the_book_names_exists():
    """The prose sends readers to test files by name; a moved test must not leave a dead name."""
    pages = NOTEBOOKS + sorted((ROOT / "book").glob("*.md"))
    missing = sorted({(p.name, name) for p in pages for name in _TEST_FILE.findall(p.read_text())
                      if not (ROOT / name).exists()})
    assert not missing, f"the book names test files that do not exist: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_code_and_printed_lines_fit_the_page(path):
    """Lines of code and of printed output stay within 76 characters: the book's content
    column shows about 77 at desktop width (CONTRIBUTING, Notebooks)."""
    nb = json.loads(path.read_text())
    long = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        texts = ["".join(cell["source"])]
        texts += ["".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
        long += [(i, len(line)) for text in texts for line in text.splitlines() if len(line) > 76]
    assert not long, f"{path.name}: (cell, length) of lines over 76 characters: {long}"
