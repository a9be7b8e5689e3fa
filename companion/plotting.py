"""The book's figure style, so that every chapter's plots look alike and read well.

Call :func:`use_book_style` once at the top of a notebook.
"""

from __future__ import annotations

import matplotlib as mpl

__all__ = ["use_book_style", "ESTIMATOR_COLORS", "REFERENCE_COLOR"]

#: One colour per estimator, keyed by its canonical key (:attr:`companion.catalogue.Entry.key`:
#: the library function's name, and ``name[variant]`` for a variant), used by every
#: chapter so a reader can follow an estimator across figures. Display names come from
#: :func:`companion.catalogue.label`, never from these keys.
ESTIMATOR_COLORS = {
    "score_function": "#d62728",
    "score_function[baseline=b]": "#ff7f0e",
    "score_function[baseline='loo']": "#bcbd22",
    "pathwise": "#1f77b4",
    "measure_valued": "#8c564b",
    "gumbel_softmax": "#2ca02c",
    "straight_through": "#9467bd",
    "arm": "#e377c2",
    "disarm": "#17becf",
    "rebar": "#7f7f7f",
    "relax": "#ff9896",
    "gumbel_rao": "#98df8a",
    # The gradients of the k-sample bound (``elbo_gradient(..., gradient=g)``).
    "elbo_gradient[reparam]": "#393b79",
    "elbo_gradient[stl]": "#bd9e39",
    "elbo_gradient[dreg]": "#ad494a",
    "elbo_gradient[score]": "#7b4173",
}

#: The colour of a reference that is not an estimator (a closed form, the exact
#: gradient, an optimum).
REFERENCE_COLOR = "#333333"


def use_book_style() -> None:
    """Set matplotlib defaults: figure size that fits the page, readable fonts, light grid.

    Figures are drawn on an opaque white background (Jupyter's inline backend
    otherwise saves a transparent one), so that their black text stays readable
    when a reader switches the book to dark mode, and in the PDF.
    """
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "figure.constrained_layout.use": True,
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "figure.facecolor": "white",
            "figure.edgecolor": "white",
            "savefig.facecolor": "white",
            "savefig.edgecolor": "white",
            "savefig.transparent": False,
        }
    )
