"""companion.catalogue: the facts behind the cheat sheet, and the page that shows them.

The cheat sheet (``book/cheat_sheet.ipynb``) prints its table from
:func:`companion.catalogue.markdown_table`; strict nbval re-runs that cell, and the
test here checks the stored page against the package without a kernel, so a
change to the catalogue that was not re-executed into the page fails fast.
"""

from __future__ import annotations

import importlib
import json
import pathlib

import pytest

from companion import catalogue

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHEAT_SHEET = ROOT / "book" / "cheat_sheet.ipynb"


def _stored_markdown() -> list[str]:
    nb = json.loads(CHEAT_SHEET.read_text())
    return ["".join(o["data"]["text/markdown"]) if isinstance(o["data"]["text/markdown"], list)
            else o["data"]["text/markdown"]
            for c in nb["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]


def test_cheat_sheet_table_matches_the_package():
    stored = _stored_markdown()
    assert stored == [catalogue.markdown_table("estimate"), catalogue.markdown_table("needs")], (
        "book/cheat_sheet.ipynb's table differs from companion.catalogue: re-run "
        "scripts/execute_notebooks.py book/cheat_sheet.ipynb")


def test_cheat_sheet_is_in_the_appendix_before_the_reference():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    captions = [p["caption"] for p in toc["parts"]]
    assert "Appendix" in captions and captions.index("Appendix") < captions.index("Reference")
    appendix = toc["parts"][captions.index("Appendix")]["chapters"]
    assert {"file": "book/cheat_sheet"} in appendix


def test_every_row_has_every_fact():
    keys = [e.key for e in catalogue.entries()]
    assert len(keys) == len(set(keys)), f"duplicate keys: {keys}"
    for e in catalogue.entries():
        for field in ("formula", "needs_f", "needs_p", "evaluations", "variance"):
            assert getattr(e, field).strip(), f"{e.key}: empty {field}"
        assert e.chapters and all(1 <= c <= 10 for c in e.chapters), e.key
        assert e.unbiased or e.unbiased_note, f"{e.key}: say where the bias comes from"
        # Math delimiters pair up, so no formula spills into the next cell.
        for field in ("formula", "needs_f", "needs_p", "variance", "unbiased_note"):
            assert getattr(e, field).count("$") % 2 == 0, f"{e.key}.{field}: unpaired $"


@pytest.mark.parametrize("which", sorted(catalogue.TABLES))
def test_each_table_has_one_row_per_entry_and_its_columns(which):
    lines = catalogue.markdown_table(which).strip().splitlines()
    assert len(lines) == 2 + len(catalogue.entries())
    widths = {line.count(" | ") for line in lines}
    assert widths == {len(catalogue.TABLES[which]) - 1}, "a row has the wrong number of cells"


def test_the_two_tables_show_every_column_once(raises):
    shown = [c for cols in catalogue.TABLES.values() for c in cols if c != "estimator"]
    assert sorted(shown + ["estimator"]) == sorted(catalogue.COLUMNS)
    with raises(ValueError, "which must be one of", "'all'"):
        catalogue.markdown_table("all")


# The estimators the book covers (final chapter numbers).
EXPECTED = {
    "score_function": {2, 8}, "pathwise": {3, 4, 8}, "measure_valued": {5},
    "gumbel_softmax": {6, 8, 9}, "straight_through": {6, 8, 9}, "arm": {7},
    "disarm": {7}, "rebar": {7}, "relax": {7}, "gumbel_rao": {7}, "elbo_gradient": {10},
}


def test_every_estimator_of_the_book_is_catalogued():
    assert catalogue.names() == list(EXPECTED)
    for name, chapters in EXPECTED.items():
        found = set().union(*(e.chapters for e in catalogue.entries() if e.name == name))
        assert found == chapters, f"{name}: chapters {found}, expected {chapters}"
    variants = [e.variant for e in catalogue.entries() if e.name == "elbo_gradient"]
    assert variants == ["reparam", "stl", "dreg", "score"]


@pytest.mark.parametrize("key", ["measure_valued", "arm", "disarm", "rebar", "relax",
                                 "gumbel_rao", "elbo_gradient[reparam]"])
def test_the_facts_of_the_new_chapters(key):
    entry = next(e for e in catalogue.entries() if e.key == key)
    facts = {
        "measure_valued": (True, "2 per parameter dimension"),
        "arm": (True, "2"), "disarm": (True, "2"), "rebar": (True, "3"), "relax": (True, "3"),
        "gumbel_rao": (False, "1"),
        "elbo_gradient[reparam]": (True, "1 per importance sample ($k$ per data point)"),
    }[key]
    assert (entry.unbiased, entry.evaluations) == facts


@pytest.mark.parametrize("module, name", [("companion.estimators", "score_function"),
                                          ("companion.estimators", "pathwise"),
                                          ("companion.gumbel", "gumbel_softmax"),
                                          ("companion.gumbel", "straight_through")])
def test_canonical_names_are_library_functions(module, name):
    assert callable(getattr(importlib.import_module(module), name))
    assert name in catalogue.names()


def test_get(raises):
    assert catalogue.get("score_function", "baseline='loo'").unbiased
    assert not catalogue.get("gumbel_softmax").unbiased
    with raises(KeyError, "no estimator 'reinforce'"):
        catalogue.get("reinforce")
    with raises(TypeError, "name and variant must be str", "got 3"):
        catalogue.get(3)


def test_a_pipe_in_a_cell_is_refused(raises):
    with raises(ValueError, "no '|'", "'$|x|$'"):
        catalogue._cell(r"$|x|$")


def test_labels_are_derived_from_the_key_and_unique():
    """Every entry has a display name and a short name, each unique, so that a table or a
    legend that shows them can be read back to one estimator."""
    entries = catalogue.entries()
    for field in ("label", "short"):
        values = [getattr(e, field) for e in entries]
        assert all(v.strip() for v in values), f"empty {field}"
        assert len(set(values)) == len(values), f"duplicate {field}s: {values}"
    assert all(len(e.short) <= 6 for e in entries), "a short name must fit a 6-character column"
    for e in entries:
        assert catalogue.by_key(e.key) is e
        assert catalogue.label(e.key) == e.label and catalogue.short_label(e.key) == e.short


@pytest.mark.parametrize("key, label, short", [
    ("score_function", "score function", "SF"),
    ("score_function[baseline=b]", "score function + baseline", "SF+b"),
    ("score_function[baseline='loo']", "score function + LOO baseline", "SF+LOO"),
    ("pathwise", "pathwise", "PW"),
    ("gumbel_softmax", "Gumbel-softmax", "GS"),
    ("straight_through", "straight-through", "ST"),
])
def test_the_labels_the_book_prints(key, label, short):
    assert (catalogue.label(key), catalogue.short_label(key)) == (label, short)


def test_an_unknown_key_is_refused_by_name(raises):
    with raises(KeyError, "no estimator with key 'reinforce'"):
        catalogue.label("reinforce")
    with raises(KeyError, "'score_function[loo]'", "score_function[baseline='loo']"):
        catalogue.short_label("score_function[loo]")
    with raises(TypeError, "key must be a str", "('score_function', '')"):
        catalogue.by_key(("score_function", ""))
