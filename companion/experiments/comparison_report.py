r"""Chapter 8's comparison shown: plain-text tables and the bar figure.

The numbers come from :mod:`companion.experiments.comparison` (:func:`~companion.experiments.comparison.compare_all`
returns a list of :class:`~companion.experiments.comparison.Measurement`); this module
only formats them. Estimators are named by
:attr:`~companion.experiments.comparison.Estimator.short` (tables) and
:attr:`~companion.experiments.comparison.Estimator.label` (legends), both derived from
:mod:`companion.catalogue`, and
coloured by :data:`companion.plotting.ESTIMATOR_COLORS` under their canonical key.
Every printed line fits the book's 76 characters.
"""

from __future__ import annotations

import math

from companion.experiments.comparison import (
    ESTIMATORS, Estimator, Measurement, Problem, _check_estimator, applicability, time_to_accuracy)
from companion.plotting import ESTIMATOR_COLORS
from companion.validation import check_positive_int

__all__ = [
    "format_time",
    "format_table",
    "format_mse_table",
    "format_time_table",
    "format_applicability",
    "plot_measurements",
]


def format_time(seconds: float) -> str:
    """``seconds`` as a number and a unit (``"1.23 µs"``), the form the book's nbval sanitizer masks."""
    if not math.isfinite(seconds):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _flag(m: Measurement) -> str:
    if m.known_biased:
        return "biased (design)"
    return "biased (measured)" if m.resolved else ""


def format_table(results: list[Measurement]) -> str:
    r"""A plain-text table of measurements, one row each, in the given order.

    Columns: the bias with the noise floor removed, as a number and as a fraction of
    :math:`\lVert\nabla L\rVert`; ``z``, the noise-floor-removed squared bias in its
    standard errors (a bias is *resolved* above 5); the variance of one sample; and a
    flag: ``biased (design)`` for a relaxation or for pathwise on a step,
    ``biased (measured)`` for a resolved bias. Estimators are named by their
    :attr:`~companion.experiments.comparison.Estimator.short`; every line fits the
    book's 76 characters.
    """
    head = f"{'problem':11s} {'est.':6s} {'bias':>9s} {'/|grad|':>7s} {'z':>6s} {'variance':>9s}  flag"
    lines = [head, "-" * 72]
    for m in results:
        if not isinstance(m, Measurement):
            raise TypeError(f"results must hold Measurement objects, got {type(m).__name__}")
        name = m.estimator.short
        if not m.applicable:
            lines.append(f"{m.problem:11s} {name:6s} {'n/a':>9s}  {m.reason}")
            continue
        z = m.bias_sq / m.bias_sq_se if m.bias_sq_se > 0 else 0.0
        rel = f"{100 * m.relative_bias:.1f}%"
        lines.append(f"{m.problem:11s} {name:6s} {m.bias:9.3g} {rel:>7s} {z:6.1f} {m.variance:9.3g}  "
                     f"{_flag(m)}".rstrip())
    return "\n".join(lines)


def format_mse_table(results: list[Measurement], problem: str, batch_sizes=(1, 10, 100, 1000),
                     replace: dict[Estimator | str, list[float]] | None = None) -> str:
    r"""Relative mean squared error :math:`\operatorname{MSE}(n) / \lVert\nabla L\rVert^2` of
    each applicable estimator on ``problem`` at each batch size, with its rank in brackets.

    ``replace`` maps an estimator to its measured MSEs (absolute, one per batch size), for
    an estimator whose batch is not :math:`n` independent draws (the LOO baseline computed
    inside the batch, ``companion.experiments.gumbel_batches.loo_batch_mse``).
    """
    rows = [m for m in results if m.problem == problem and m.applicable]
    if not rows:
        raise ValueError(f"no applicable measurement for problem {problem!r} in results")
    sizes = [check_positive_int("batch_sizes", b) for b in batch_sizes]
    norm2 = rows[0].stats.exact_norm ** 2
    table = {m.estimator: [m.mse(b) / norm2 for b in sizes] for m in rows}
    for est, values in (replace or {}).items():
        est = _check_estimator(est)
        if est not in table or len(values) != len(sizes):
            raise ValueError(f"replace[{est.key!r}] must name an applicable estimator and give {len(sizes)} values")
        table[est] = [float(v) / norm2 for v in values]
    ranks = {}
    for j in range(len(sizes)):
        order = sorted(table, key=lambda e: table[e][j])
        for r, e in enumerate(order):
            ranks[(e, j)] = r + 1
    head = f"{'est.':7s}" + "".join(f"{'n = ' + str(b):>13s}" for b in sizes)
    lines = [head, "-" * len(head)]
    for e, vals in table.items():
        cells = "".join(f"{v:9.3g} ({ranks[(e, j)]})" for j, v in enumerate(vals))
        lines.append(f"{e.short:7s}{cells}")
    return "\n".join(lines)


def format_time_table(results: list[Measurement], relative_rmse: float = 0.1) -> str:
    """:func:`~companion.experiments.comparison.time_to_accuracy` and time per sample of every applicable measurement (``never``
    where the bias alone exceeds the target), each a number and a unit, last on the line
    and unpadded so that the book's sanitizer can mask them."""
    head = f"{'problem':11s} {'est.':6s} time to {100 * relative_rmse:g}% RMSE, time per sample"
    lines = [head, "-" * len(head)]
    for m in results:
        if not m.applicable:
            continue
        t = time_to_accuracy(m, relative_rmse)
        shown = "never (bias)" if math.isinf(t) else format_time(t)
        # times last and unpadded: the sanitizer masks them, and their width cannot shift the line
        lines.append(f"{m.problem:11s} {m.estimator.short:6s} {shown}, {format_time(m.time_per_sample)}")
    return "\n".join(lines)


def format_applicability(problem_list: list[Problem]) -> str:
    """A plain-text matrix: one row per problem, one column per estimator (its short name).

    ``yes`` where :func:`~companion.experiments.comparison.applicability` allows the combination, ``~`` where it runs but
    is known to be biased, ``-`` where it does not apply.
    """
    head = f"{'':12s}" + "".join(f"{e.short:>7s}" for e in ESTIMATORS)
    lines = [head]
    for p in problem_list:
        marks = []
        for est in ESTIMATORS:
            ok, reason = applicability(p, est)
            marks.append("-" if not ok else ("~" if reason else "yes"))
        lines.append(f"{p.key:12s}" + "".join(f"{m:>7s}" for m in marks))
    return "\n".join(lines)


#: Opacity of a relaxation's bars by temperature, so its temperatures read apart.
_ALPHA = {0.1: 0.45, 0.5: 0.7, 1.0: 1.0}


def _color(estimator: Estimator) -> tuple[str, float]:
    """The book's colour for the estimator's key, and an alpha that separates temperatures."""
    alpha = 1.0 if estimator.key != "gumbel_softmax" else _ALPHA[estimator.temperature]
    return ESTIMATOR_COLORS[estimator.key], alpha


def plot_measurements(results: list[Measurement], quantity: str, ax, batch_size: int = 100) -> None:
    r"""Grouped bars on a log scale: one group per problem, one bar per applicable estimator.

    ``quantity`` is ``"variance"`` (one sample's :math:`\operatorname{tr}\Sigma`, with a
    bar from the smallest to the largest seed's value) or ``"mse"`` (the relative mean
    squared error :math:`\operatorname{MSE}(n)/\lVert\nabla L\rVert^2` of a batch of
    ``batch_size``). Biased estimators (by construction or measured) are hatched; a zero
    (the step function's pathwise variance) is marked by an ``x`` on the axis.
    """
    if quantity not in ("variance", "mse"):
        raise ValueError(f"quantity must be 'variance' or 'mse', got {quantity!r}")
    n = check_positive_int("batch_size", batch_size)

    def value(m: Measurement) -> float:
        return m.variance if quantity == "variance" else m.mse(n) / m.stats.exact_norm ** 2

    keys = list(dict.fromkeys(m.problem for m in results))
    applicable = {k: [m for m in results if m.problem == k and m.applicable] for k in keys}
    width = 0.8 / max(len(v) for v in applicable.values())
    floor = min(value(m) for m in results if m.applicable and value(m) > 0)
    labelled: set[Estimator] = set()
    for i, key in enumerate(keys):
        group = sorted(applicable[key], key=lambda m: ESTIMATORS.index(m.estimator))
        for j, m in enumerate(group):
            color, alpha = _color(m.estimator)
            x = i + (j - (len(group) - 1) / 2) * width
            v = value(m)
            if v > 0:
                ax.bar(x, v, width, color=color, alpha=alpha, hatch="//" if m.biased else None,
                       edgecolor="black" if m.biased else "white", linewidth=0.5,
                       label=None if m.estimator in labelled else m.estimator.label)
                labelled.add(m.estimator)
                if quantity == "variance" and len(m.seed_variances) > 1:
                    ax.plot([x, x], [min(m.seed_variances), max(m.seed_variances)], color="black", lw=1)
            else:
                ax.plot(x, floor / 3, marker="x", color=color, markersize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=20)
    ax.set_ylabel("variance of one sample" if quantity == "variance"
                  else f"MSE / |grad|², batch of {n}")
