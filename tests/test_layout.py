"""The package's two layers: the library never imports the chapters' experiment code.

The library is every module at the top of ``companion/``; the experiment code is
``companion/experiments/``. A practitioner imports the first without pulling in
the second, so a dependency may only point from experiments to the library.
"""

from __future__ import annotations

import ast
import json
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "companion"
LIBRARY = sorted(PACKAGE.glob("*.py"))


def _imported_modules(path: pathlib.Path) -> set[str]:
    return _imports_in(path.read_text())


def _imports_in(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                base = "companion." + base if base else "companion"
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", LIBRARY, ids=[p.name for p in LIBRARY])
def test_library_module_does_not_import_experiments(path):
    bad = sorted(n for n in _imported_modules(path) if n.startswith("companion.experiments"))
    assert not bad, f"{path.name} (library) imports experiment code: {bad}"


def test_the_check_sees_an_offending_import(tmp_path):
    offender = tmp_path / "bad.py"
    offender.write_text("from companion.experiments import vae\n")
    assert "companion.experiments.vae" in _imported_modules(offender)


ROOT = PACKAGE.parent
EXPERIMENTS = sorted(p.stem for p in (PACKAGE / "experiments").glob("*.py") if p.stem != "__init__")


def _contributing_map() -> dict[int, set[str]]:
    """CONTRIBUTING.md's table: chapter number -> the experiment modules it lists."""
    table = {}
    for line in (ROOT / "CONTRIBUTING.md").read_text().splitlines():
        m = re.match(r"\s*\| (\d+) [^|]*\| (.*) \|\s*$", line)
        if m:
            table[int(m.group(1))] = set(re.findall(r"`(\w+)`", m.group(2)))
    return table


def _notebook_experiments(path: pathlib.Path) -> set[str]:
    """The experiment modules a notebook's code cells import."""
    cells = json.loads(path.read_text())["cells"]
    names = set()
    for cell in cells:
        if cell["cell_type"] == "code":
            code = "\n".join(line for line in "".join(cell["source"]).splitlines()
                             if not line.lstrip().startswith(("%", "!")))  # IPython magics
            names |= {n.split(".")[2] for n in _imports_in(code) if n.startswith("companion.experiments.")}
    return names & set(EXPERIMENTS)


def test_contributing_map_lists_every_experiment_module_and_what_each_chapter_imports():
    """The architecture map in CONTRIBUTING.md and the layout say the same thing: every
    module of companion/experiments is listed, nothing that does not exist is, and each
    chapter's row holds every experiment module its notebook imports."""
    table = _contributing_map()
    chapters = sorted(ROOT.glob("book/[0-9][0-9]_*.ipynb"))
    assert sorted(table) == [int(p.name[:2]) for p in chapters]
    listed = set().union(*table.values())
    assert listed == set(EXPERIMENTS), (sorted(listed - set(EXPERIMENTS)), sorted(set(EXPERIMENTS) - listed))
    for path in chapters:
        missing = _notebook_experiments(path) - table[int(path.name[:2])]
        assert not missing, f"{path.name} imports {sorted(missing)}, not in its CONTRIBUTING row"


def test_api_page_lists_the_package_as_it_is():
    """book/api.md is generated from the layout (scripts/generate_api_page.py): a module
    added, moved or renamed without regenerating the page fails here."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_api_page.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
