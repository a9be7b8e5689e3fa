"""Companion package of *The Reparameterization Trick, Executed*.

Every chapter of the book imports its code from here, and ``tests/`` checks its
mathematics against closed forms. Two layers:

The library (what a practitioner imports)
-----------------------------------------
``companion.estimators``
    Score-function (REINFORCE) and pathwise per-sample gradient estimators, and
    the other families re-exported under one namespace: ``measure_valued``
    (``companion.measure_valued``), ``arm``, ``disarm``, ``rebar``
    (``companion.discrete``), ``elbo_gradient``, ``iwae_bound``
    (``companion.multisample``).
``companion.control_variates``
    Delta-method control variates, optimal coefficients, antithetic and
    quasi-Monte Carlo noise.
``companion.reparam``, ``companion.implicit``
    Reparameterized samplers (Gaussian, multivariate Gaussian, exponential,
    inverse CDF) and implicit reparameterization gradients.
``companion.gumbel``
    Gumbel noise, Gumbel-max, Gumbel-softmax, straight-through, Gumbel-Rao.
``companion.stats``
    Bias with the noise floor removed, variance, cosine and mean squared error
    against an exact gradient.
``companion.catalogue``
    The facts about every estimator (the cheat sheet is generated from it).
``companion.device``, ``companion.validation``, ``companion.plotting``
    CPU or GPU and reproducible noise; argument checks (with a switch to turn
    value checks off); the figure style.

The chapters' experiment code
-----------------------------
``companion.experiments`` holds each chapter's problems, harnesses, models and
figure data (``from companion.experiments import vae``). It imports the
library; the library never imports it (``tests/test_layout.py``).
"""

from companion import device, estimators, gumbel, reparam

__all__ = ["device", "estimators", "gumbel", "reparam"]
__version__ = "0.1.0"
