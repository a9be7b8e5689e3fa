"""Companion package of *The Reparameterization Trick, Executed*.

Every chapter of the book imports its code from here, and ``tests/`` checks its
mathematics against closed forms.

Modules
-------
``companion.estimators``
    Score-function (REINFORCE) and pathwise per-sample gradient estimators.
``companion.reparam``
    Reparameterized samplers: Gaussian, multivariate Gaussian (Cholesky factor
    and symmetric square root), exponential, and the generic inverse CDF.
``companion.gumbel``
    Gumbel noise, the Gumbel-max trick, Gumbel-softmax and straight-through.
``companion.device``
    The one place that picks CPU or GPU and draws reproducible noise.

Chapter modules, imported on demand (``from companion import vae``):
``bandit`` (chapter 2), ``closed_forms`` and ``implicit`` (chapters 3-4),
``categorical`` (chapter 5), ``comparison`` (chapter 6), ``data`` and ``vae``
(chapter 7), and ``plotting`` (the figure style).
"""

from companion import device, estimators, gumbel, reparam

__all__ = ["device", "estimators", "gumbel", "reparam"]
__version__ = "0.1.0"
