#!/usr/bin/env python
"""Write ``book/api.md``, the API page, from the package's layout and docstrings.

    .venv/bin/python scripts/generate_api_page.py          # rewrite book/api.md
    .venv/bin/python scripts/generate_api_page.py --check  # exit 1 if it is out of date

The library's modules are listed in ``LIBRARY`` below with a one-line summary each (a new
library module must be added there: the script fails otherwise); every module of
``companion/experiments`` gets a section from the first paragraph of its docstring.
``tests/test_layout.py`` runs ``--check``, so the page always matches the package.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "api.md"

#: (module, summary, members to show or None for all), in the page's order.
LIBRARY = [
 ("companion.estimators", "The score-function and pathwise estimators, the one leave-one-out baseline and baseline check; the other families below are re-exported here (`companion.estimators.measure_valued`, `arm`, `disarm`, `rebar`, `elbo_gradient`, `iwae_bound`).", "score_function, pathwise, loo_baseline, check_baseline"),
 ("companion.measure_valued", "Measure-valued (weak-derivative) gradients, the third family (chapter 5).", "measure_valued, evaluations_per_sample"),
 ("companion.control_variates", "Control variates beyond constant baselines, antithetic and quasi-Monte Carlo noise (chapter 5).", None),
 ("companion.discrete", "Unbiased gradients for binary variables: ARM, DisARM, REBAR and RELAX's estimator step (chapter 7).", None),
 ("companion.multisample", "Multi-sample bounds and their gradients: IWAE, VIMCO, sticking the landing, DReG (chapter 10).", "iwae_bound, elbo_gradient"),
 ("companion.reparam", "Reparameterized samplers, each a deterministic function of parameters and base noise.", None),
 ("companion.implicit", "Implicit reparameterization gradients computed independently of torch's samplers (chapter 4).", None),
 ("companion.gumbel", "Gumbel noise, Gumbel-max, Gumbel-softmax, straight-through and Gumbel-Rao.", None),
 ("companion.stats", "Judging an estimator against an exact value: bias (with the noise floor removed), variance, cosine and mean squared error; measured variances against exact ones; paired differences and agreement over seeds.", None),
 ("companion.catalogue", "What the book knows about every estimator, from which the cheat sheet is generated.", None),
 ("companion.device", "The one place that picks CPU or GPU and draws reproducible noise.", None),
 ("companion.validation", "Argument checks, and the switch that turns value checks off.", None),
 ("companion.plotting", "The book's figure style.", None),
]

#: Data whose values are TeX-laden or code (tuples, dicts, lambdas): documented by their
#: comments, values left out of the page.
EXCLUDE = {
    "companion.catalogue": "COLUMNS, ENTRIES, TABLES",
    "companion.experiments.decision_table": "ROWS",
    "companion.experiments.graphs": "GRAPHS",
    "companion.experiments.reparam_table": "ROWS",
}

INTRO = [
    "# The `companion` API",
    "",
    "Every chapter imports its code from the `companion` package; the test suite",
    "(`tests/`) checks each function below against the closed forms its docstring",
    "states. This page is generated from those docstrings",
    "(`scripts/generate_api_page.py`).",
    "",
    "The package has two layers. The **library** (the modules at the top of",
    "`companion/`) is what a practitioner imports: estimators, reparameterizations,",
    "Gumbel, control variates, statistics, device and validation. The **chapters'",
    "experiment code** (`companion.experiments`) holds each chapter's problems,",
    "harnesses, models and figure data; it imports the library, never the reverse.",
    "",
]


def _block(module: str, summary: str, members: str | None) -> list[str]:
    options = [f"   :members:{' ' + members if members else ''}"]
    if module in EXCLUDE:
        options.append(f"   :exclude-members: {EXCLUDE[module]}")
    return [f"### `{module}`", "", summary, "", "```{eval-rst}", f".. automodule:: {module}", *options, "```", ""]


def page() -> str:
    """The API page's text."""
    sys.path.insert(0, str(ROOT))
    present = sorted(f"companion.{p.stem}" for p in (ROOT / "companion").glob("*.py") if p.stem != "__init__")
    listed = [m for m, _, _ in LIBRARY]
    if sorted(listed) != present:
        raise SystemExit(f"LIBRARY in {__file__} must list exactly the library modules: "
                         f"missing {sorted(set(present) - set(listed))}, extra {sorted(set(listed) - set(present))}")
    out = INTRO + ["## The library", ""]
    for module, summary, members in LIBRARY:
        out += _block(module, summary, members)
    out += ["## The chapters' experiment code", ""]
    for path in sorted((ROOT / "companion" / "experiments").glob("*.py")):
        if path.stem == "__init__":
            continue
        module = f"companion.experiments.{path.stem}"
        doc = importlib.import_module(module).__doc__ or ""
        out += _block(module, doc.strip().split("\n\n")[0].replace("\n", " "), None)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if book/api.md is out of date")
    text = page()
    if parser.parse_args().check:
        if PAGE.read_text() != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run scripts/generate_api_page.py")
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
