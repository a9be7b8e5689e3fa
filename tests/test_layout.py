"""The package's two layers: the library never imports the chapters' experiment code.

The library is every module at the top of ``companion/``; the experiment code is
``companion/experiments/``. A practitioner imports the first without pulling in
the second, so a dependency may only point from experiments to the library.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "companion"
LIBRARY = sorted(PACKAGE.glob("*.py"))


def _imported_modules(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
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
