r"""The book's decision table ("which estimator, when"), one row per measured finding.

Each :class:`Row` says for which :math:`f` and :math:`p_\theta` to use which estimator,
and *why*: its ``evidence`` is a format string whose fields are filled with numbers a
chapter measured (:func:`render`), and ``source`` names where. A chapter that measures
something new appends a row to ``ROWS`` (or passes its own list to :func:`render`);
a row whose numbers are missing raises instead of printing a stale claim.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Mapping, Sequence

from companion.catalogue import label

_LOO = label("score_function[baseline='loo']")

__all__ = ["Row", "ROWS", "render", "fields"]


@dataclass(frozen=True)
class Row:
    """One row of the decision table.

    Attributes:
        f: what the function of the sample is like.
        p: what the distribution offers (``rsample``, ``log_prob``, discrete).
        use: the recommendation (Markdown); an estimator in it is named by
            :func:`companion.catalogue.label`.
        evidence: why, as a ``str.format`` template over measured numbers.
        source: where the measurement is (a chapter, as plain text or a MyST link).
    """

    f: str
    p: str
    use: str
    evidence: str
    source: str


#: The rows of chapter 8's table, in order. Other chapters append theirs.
ROWS: list[Row] = [
    Row(
        "differentiable, smooth",
        "reparameterizable (`rsample`)",
        f"**{label('pathwise')}**",
        "quadratic: score-function variance {quad_ratio:.1f}x pathwise's "
        "(seeds {quad_lo:.1f}-{quad_hi:.1f}); exponential: {expo_ratio:.1f}x "
        "({expo_lo:.1f}-{expo_hi:.1f}); both unbiased",
        "chapter 8",
    ),
    Row(
        "differentiable, oscillating or with a large $f'$",
        "reparameterizable",
        "**measure both**: the score function + LOO may win",
        "$\\cos 3x$: pathwise variance {cos_ratio:.1f}x the score function's "
        "(seeds {cos_lo:.1f}-{cos_hi:.1f}); bump $e^{{-x^2}}$: the score function's variance "
        "{bump_lo:.3f}-{bump_hi:.3f}x pathwise's, close",
        "chapter 8",
    ),
    Row(
        "not differentiable (step, `argmax`, simulator)",
        "any with `log_prob`",
        f"**{_LOO}**",
        "step: every pathwise estimate is 0, a bias of {step_rel:.0f}% of the gradient; "
        "the score function shows no resolved bias",
        "chapter 8",
    ),
    Row(
        "any",
        "discrete (categorical), large batches or no bias allowed",
        f"**{_LOO}**",
        "unbiased; on the categorical problem its MSE beats every relaxation "
        "from a batch of {cat_cross} on (range over the seeds), and the gap grows with the batch",
        "chapters 6 and 8",
    ),
    Row(
        "differentiable in a relaxed input",
        "discrete, small batches",
        f"**{label('gumbel_softmax')}** (tune $\\tau$), only if a biased direction is acceptable; "
        "to train a model, check it against an unbiased estimator",
        "categorical, batch of {small_n}: Gumbel-softmax $\\tau$ = 1 had the lowest MSE, "
        "but its bias ({gs1_rel:.0f}% of the gradient's norm) never averages away; "
        "straight-through was worse ({st1_rel:.0f}%); on the categorical VAE of chapter 9 "
        "the relaxations' bias grew with training until their mean gradient was barely "
        "correlated with the exact one, while the score function + LOO stayed unbiased",
        "chapter 8; chapter 9 on the VAE",
    ),
]


def fields(rows: Sequence[Row]) -> set[str]:
    """The names of the numbers the rows' ``evidence`` templates need."""
    names = set()
    for row in rows:
        for _, name, _, _ in string.Formatter().parse(row.evidence):
            if name:
                names.add(name)
    return names


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: Sequence[Row], numbers: Mapping[str, object]) -> str:
    """The table as Markdown (a pipe table), each row's evidence filled from ``numbers``.

    Raises:
        TypeError: a row is not a :class:`Row`.
        ValueError: ``numbers`` lacks a field some row needs (named in the message).
    """
    rows = list(rows)
    for row in rows:
        if not isinstance(row, Row):
            raise TypeError(f"rows must hold Row objects, got {type(row).__name__}")
    missing = sorted(fields(rows) - set(numbers))
    if missing:
        raise ValueError(f"numbers lacks the measured values {missing} that the rows' evidence needs")
    lines = [
        "| your $f$ | your $p_\\theta$ | use | because (measured) | where |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        evidence = row.evidence.format(**numbers)
        lines.append(f"| {_cell(row.f)} | {_cell(row.p)} | {_cell(row.use)} | {_cell(evidence)} | {_cell(row.source)} |")
    return "\n".join(lines)
