"""Tests of companion.experiments.decision_table: every row's evidence is filled from
measured numbers, a missing number is an error, and rows are easy to add."""

from __future__ import annotations

from companion.experiments import decision_table as D


def _numbers():
    return {name: 1.0 for name in D.fields(D.ROWS)}


def test_render_fills_every_row_from_the_numbers():
    text = D.render(D.ROWS, _numbers())
    lines = text.splitlines()
    assert len(lines) == 2 + len(D.ROWS)
    assert all(line.count(" | ") == 4 for line in lines)  # five cells each (no stray pipes)
    assert "{" not in text.replace("{-x^2}", "")  # no unfilled template field


def test_a_missing_number_is_named(raises):
    numbers = _numbers()
    numbers.pop("quad_ratio")
    with raises(ValueError, "numbers lacks", "['quad_ratio']"):
        D.render(D.ROWS, numbers)


def test_rows_can_be_added_and_pipes_are_escaped(raises):
    extra = D.Row("any", "no `log_prob`", "**measure-valued**", "a|b {x:.1f}", "chapter 5")
    text = D.render([*D.ROWS, extra], {**_numbers(), "x": 2.25})
    assert text.splitlines()[-1] == "| any | no `log_prob` | **measure-valued** | a\\|b 2.2 | chapter 5 |"
    with raises(TypeError, "rows must hold Row objects", "str"):
        D.render(["row"], {})


def test_recommended_estimators_are_named_by_the_catalogue():
    """A recommendation names its estimator as companion.catalogue.label does, so the
    table and the rest of the book cannot drift apart."""
    import re

    from companion import catalogue

    labels = {e.label for e in catalogue.entries()}
    named = [re.match(r"\*\*(.+?)\*\*", row.use).group(1) for row in D.ROWS]
    estimators = [n for n in named if n != "measure both"]
    assert len(estimators) == len(D.ROWS) - 1
    assert set(estimators) <= labels, set(estimators) - labels
