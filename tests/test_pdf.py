"""The whole book as one PDF (``scripts/build_pdf.sh``), read back as text.

Marked ``pdf``: run it alone with ``.venv/bin/python -m pytest -m pdf``. It checks
the PDF at ``$BOOK_PDF`` if set, else ``_build/latex/book.pdf`` when that is newer
than every source of the book, else it builds one into a temporary folder with
``scripts/build_pdf.sh`` (which installs Debian's TeX Live if it is missing; a
build takes about 3 minutes on a loaded 2-core machine).

With pypdf's text extraction (which drops some spaces, so texts are compared with
all white space removed) it checks that

* every document of ``_toc.yml`` is in it, by its title, and so is the
  bibliography: the References page and the title of every entry of
  ``book/references.bib`` (the page lists them all);
* no cross-reference is left unresolved (``??``, what LaTeX prints for a missing
  label) and no raw TeX is left in the prose: a ``$``, ``\\(``, ``\\begin{`` or a
  TeX command is allowed only on a line that comes from the book's code (the
  notebooks' code cells and their printed outputs, where matplotlib labels carry
  TeX);
* the math is typeset (its Unicode symbols are in the text) and the figures are
  in it (at least as many embedded images as the notebooks have figures).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import subprocess
import tempfile

import pytest
import yaml

pytestmark = pytest.mark.pdf

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "_build" / "latex" / "book.pdf"
RAW_TEX = re.compile(r"\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\[a-zA-Z]{2,}(?![a-zA-Z])")


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _sources() -> list[pathlib.Path]:
    return [ROOT / "_config.yml", ROOT / "_toc.yml",
            *(p for p in (ROOT / "book").rglob("*") if p.is_file()
              and "_vendor" not in p.parts and ".ipynb_checkpoints" not in p.parts)]


@functools.lru_cache(maxsize=1)
def pdf_path() -> pathlib.Path:
    env = os.environ.get("BOOK_PDF")
    if env:
        path = pathlib.Path(env)
        if not path.is_file():
            raise RuntimeError(f"BOOK_PDF={env!r} is not a file")
        return path
    if DEFAULT.is_file() and all(p.stat().st_mtime <= DEFAULT.stat().st_mtime
                                 for p in _sources()):
        return DEFAULT
    out = pathlib.Path(tempfile.mkdtemp(prefix="book-pdf-"))
    proc = subprocess.run([str(ROOT / "scripts" / "build_pdf.sh"), "--path-output", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build_pdf.sh failed ({proc.returncode}):\n"
                    f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out / "_build" / "latex" / "book.pdf"


@functools.lru_cache(maxsize=1)
def reader():
    pypdf = pytest.importorskip("pypdf")
    return pypdf.PdfReader(str(pdf_path()))


@functools.lru_cache(maxsize=1)
def text() -> str:
    return "\n".join(page.extract_text() or "" for page in reader().pages)


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def title(doc: str) -> str:
    """The document's ``# `` heading, without Markdown markup."""
    path = ROOT / f"{doc}.ipynb"
    if path.exists():
        cells = json.loads(path.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        source = (ROOT / f"{doc}.md").read_text()
    heading = next(line for line in source.splitlines() if line.startswith("# "))
    return heading[2:].replace("`", "").strip()


@functools.lru_cache(maxsize=1)
def code_text() -> str:
    """Every code cell's source and printed output, squashed: what may show TeX."""
    parts = []
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            parts.append("".join(cell["source"]))
            for out in cell.get("outputs", []):
                parts.append("".join(out.get("text", "")))
                parts.append("".join(out.get("data", {}).get("text/plain", "")))
    return _squash("\n".join(parts))


def test_every_document_of_the_toc_is_in_the_pdf():
    squashed = _squash(text())
    missing = [f"{doc}: {title(doc)!r}" for doc in toc_files()
               if _squash(title(doc)) not in squashed]
    assert not missing, f"titles not found in {pdf_path()}: {missing}"


def test_the_bibliography_is_in_the_pdf():
    squashed = _squash(text()).lower()
    bib = (ROOT / "book" / "references.bib").read_text()
    titles = re.findall(r"^\s*title\s*=\s*[{\"](.+?)[}\"]\s*,?\s*$", bib, re.M | re.I)
    assert titles, "no title in book/references.bib"
    missing = []
    for t in titles:
        # Compare on letters only: LaTeX braces, accents and ligatures differ.
        words = re.sub(r"\\[a-zA-Z]+|[{}]", "", t)
        key = re.sub(r"[^a-z]", "", words.lower())[:40]
        if key not in re.sub(r"[^a-z]", "", squashed):
            missing.append(t)
    assert not missing, f"bibliography entries not in the PDF: {missing}"


def test_no_unresolved_reference():
    hits = [line for line in text().splitlines() if "??" in line]
    assert not hits, f"unresolved references (??) in the PDF: {hits[:5]}"


def test_no_raw_tex_outside_code():
    code = code_text()
    raw = [line for line in text().splitlines()
           if RAW_TEX.search(line) and _squash(line) not in code]
    assert not raw, f"{len(raw)} line(s) of the PDF show raw TeX, e.g.:\n  " + \
        "\n  ".join(raw[:8])


def test_math_and_figures_are_typeset():
    body = text()
    for symbol in ("∇", "θ", "∼", "∑"):
        assert symbol in body, f"no {symbol!r} in the PDF's text: is the math typeset?"
    figures = sum(1 for nb in (ROOT / "book").glob("*.ipynb")
                  for cell in json.loads(nb.read_text())["cells"]
                  for out in cell.get("outputs", []) if "image/png" in out.get("data", {}))
    images = 0
    for page in reader().pages:
        xobjects = (page.get("/Resources") or {}).get("/XObject") or {}
        for obj in xobjects.values():
            obj = obj.get_object()
            if obj.get("/Subtype") == "/Image":
                images += 1
            elif obj.get("/Subtype") == "/Form":  # an image may sit inside a form
                inner = ((obj.get("/Resources") or {}).get("/XObject") or {})
                images += sum(1 for o in inner.values()
                              if o.get_object().get("/Subtype") == "/Image")
    assert images >= figures, f"{images} images in the PDF, {figures} figures in the notebooks"
