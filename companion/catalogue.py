r"""What the book knows about each gradient estimator, in one place.

Every estimator the book derives or measures has one :class:`Entry` here, keyed by
its canonical name, which is the name of the library function that implements it
(``score_function``, ``pathwise``, ``measure_valued``, ``gumbel_softmax``, ...),
plus a variant where one function covers several estimators (the baselines of
``score_function``, the gradient estimators of ``elbo_gradient``). The book's
cheat sheet (``book/cheat_sheet.ipynb``) prints its two tables from :func:`markdown_table`,
and ``tests/test_catalogue.py`` checks that the stored page matches this module.

Each entry records the per-sample estimate :math:`\hat g_i` (the gradient estimate is
:math:`\frac1N\sum_i \hat g_i`), whether it is unbiased, what it needs from
:math:`f` and from :math:`p_\theta`, how many evaluations of :math:`f` one sample
costs, how its variance behaves, and the chapters that derive and measure it
(the book's final chapter numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Entry", "ENTRIES", "entries", "get", "by_key", "label", "short_label", "names",
           "markdown_table", "COLUMNS", "TABLES"]


@dataclass(frozen=True)
class Entry:
    r"""One estimator: the facts the cheat sheet's table shows.

    Attributes:
        name: canonical name, the library function's name.
        variant: the option that selects this estimator among the function's
            (``"baseline='loo'"``, ``"reparam"``), or ``""``.
        label: how prose, legends and tables name it (``"score function + LOO
            baseline"``); :func:`label` reads it.
        short: a few characters for narrow tables (``"SF+LOO"``); :func:`short_label`.
        formula: the per-sample estimate :math:`\hat g_i` in LaTeX, without a
            vertical bar (the table's cell separator; use the lvert and rvert
            commands for absolute values).
        unbiased: whether :math:`\mathbb E[\hat g_i]` is the exact gradient.
        unbiased_note: the condition or the source of bias, in a few words.
        needs_f: what the estimator needs from :math:`f`.
        needs_p: what it needs from the distribution :math:`p_\theta`.
        evaluations: evaluations of :math:`f` per sample.
        variance: its variance behaviour, one line.
        chapters: the chapters (final numbers) that derive and measure it.
    """

    name: str
    variant: str
    label: str
    short: str
    formula: str
    unbiased: bool
    unbiased_note: str
    needs_f: str
    needs_p: str
    evaluations: str
    variance: str
    chapters: tuple[int, ...]

    @property
    def key(self) -> str:
        """``name`` or ``name[variant]``: unique within the catalogue."""
        return f"{self.name}[{self.variant}]" if self.variant else self.name


_SCORE = r"\nabla_\theta \log p_\theta(x_i)"

ENTRIES: tuple[Entry, ...] = (
    Entry(
        name="score_function", variant="",
        label="score function", short="SF",
        formula=rf"$f(x_i)\,{_SCORE}$",
        unbiased=True, unbiased_note="",
        needs_f="values only: any $f$, even discontinuous or a black box",
        needs_p="samples and a differentiable `log_prob`",
        evaluations="1",
        variance="high; grows with the size of $f$ (a constant shift adds variance)",
        chapters=(2, 8),
    ),
    Entry(
        name="score_function", variant="baseline=b",
        label="score function + baseline", short="SF+b",
        formula=rf"$(f(x_i) - b)\,{_SCORE}$",
        unbiased=True, unbiased_note="if $b$ does not depend on $x_i$",
        needs_f="values only",
        needs_p="samples and a differentiable `log_prob`",
        evaluations="1 (plus the pilot batch that sets $b$)",
        variance="lower when $b$ is near the mean of $f$",
        chapters=(2, 8),
    ),
    Entry(
        name="score_function", variant="baseline='loo'",
        label="score function + LOO baseline", short="SF+LOO",
        formula=rf"$\bigl(f(x_i) - \frac{{1}}{{N-1}}\sum_{{j \ne i}} f(x_j)\bigr)\,{_SCORE}$",
        unbiased=True, unbiased_note="",
        needs_f="values only",
        needs_p="samples and a differentiable `log_prob`; $N \\ge 2$",
        evaluations="1",
        variance="lower when the mean of $f$ is far from 0; needs no pilot batch",
        chapters=(2, 8),
    ),
    Entry(
        name="pathwise", variant="",
        label="pathwise", short="PW",
        formula=r"$\nabla_\theta f(g_\theta(\varepsilon_i))$",
        unbiased=True, unbiased_note="if $f$ is differentiable (not only almost everywhere)",
        needs_f="a derivative that carries information",
        needs_p=r"`rsample`: $x = g_\theta(\varepsilon)$, differentiable in $\theta$",
        evaluations="1 (and its gradient)",
        variance="low for smooth, slowly varying $f$; grows with $\\lvert f'\\rvert$",
        chapters=(3, 4, 8),
    ),
    Entry(
        name="measure_valued", variant="",
        label="measure-valued", short="MV",
        formula=r"$c_\theta\,\bigl(f(x_i^{+}) - f(x_i^{-})\bigr)$, "
                r"$x_i^{\pm} \sim p_\theta^{\pm}$",
        unbiased=True, unbiased_note="",
        needs_f="values only; need not be differentiable",
        needs_p=r"a weak derivative $\nabla_\theta p_\theta = c_\theta(p_\theta^+ - p_\theta^-)$",
        evaluations="2 per parameter dimension",
        variance="low, bounded for bounded $f$; cost grows with the dimension of $\\theta$",
        chapters=(5,),
    ),
    Entry(
        name="gumbel_softmax", variant="",
        label="Gumbel-softmax", short="GS",
        formula=r"$\nabla_\theta h\bigl(\operatorname{softmax}((\theta + g_i)/\tau)\bigr)$",
        unbiased=False, unbiased_note="biased at every $\\tau > 0$",
        needs_f=r"$h$ defined and differentiable on the simplex (relaxed inputs)",
        needs_p="categorical, by its logits",
        evaluations="1",
        variance=r"lower $\tau$: less bias, more variance",
        chapters=(6, 8, 9),
    ),
    Entry(
        name="straight_through", variant="",
        label="straight-through", short="ST",
        formula=r"$(\partial_\theta y_i)^{\top} \nabla h(D_i)$, "
                r"$y_i = \operatorname{softmax}((\theta + g_i)/\tau)$, "
                r"$D_i$ the one-hot of $\arg\max y_i$",
        unbiased=False, unbiased_note="biased at every $\\tau$",
        needs_f="$h$ differentiable, evaluated at one-hot inputs",
        needs_p="categorical, by its logits",
        evaluations="1",
        variance=r"changes with $\tau$ as Gumbel-softmax's does",
        chapters=(6, 8, 9),
    ),
    Entry(
        name="arm", variant="",
        label="ARM", short="ARM",
        formula=r"$\bigl(f(\mathbf 1[u_i > \sigma(-\phi)]) - f(\mathbf 1[u_i < \sigma(\phi)])\bigr)"
                r"(u_i - \tfrac12)$",
        unbiased=True, unbiased_note="",
        needs_f="values only",
        needs_p=r"binary: Bernoulli with logit $\phi$",
        evaluations="2",
        variance="lower than the score function (antithetic pair)",
        chapters=(7,),
    ),
    Entry(
        name="disarm", variant="",
        label="DisARM", short="DisARM",
        formula=r"$\tfrac12\bigl(f(b_i) - f(\tilde b_i)\bigr)(-1)^{\tilde b_i}"
                r"\mathbf 1[b_i \ne \tilde b_i]\,\sigma(\lvert\phi\rvert)$",
        unbiased=True, unbiased_note="",
        needs_f="values only",
        needs_p=r"binary: Bernoulli with logit $\phi$",
        evaluations="2",
        variance="at most ARM's (ARM with its noise integrated out)",
        chapters=(7,),
    ),
    Entry(
        name="rebar", variant="",
        label="REBAR", short="REBAR",
        formula=r"$\bigl(f(b_i) - \eta f(\sigma_\lambda(\tilde z_i))\bigr)\,"
                r"\nabla_\theta \log p_\theta(b_i) + \eta\,\nabla_\theta f(\sigma_\lambda(z_i))"
                r" - \eta\,\nabla_\theta f(\sigma_\lambda(\tilde z_i))$",
        unbiased=True, unbiased_note="",
        needs_f="must accept relaxed inputs, differentiably",
        needs_p=r"discrete, with a relaxation $z$ and $\tilde z \sim p(z \mid b)$",
        evaluations="3",
        variance="the relaxation as a control variate; $\\eta$, $\\lambda$ tuned to cut it",
        chapters=(7,),
    ),
    Entry(
        name="relax", variant="",
        label="RELAX", short="RELAX",
        formula=r"$\bigl(f(b_i) - c_\psi(\tilde z_i)\bigr)\,\nabla_\theta \log p_\theta(b_i)"
                r" + \nabla_\theta c_\psi(z_i) - \nabla_\theta c_\psi(\tilde z_i)$",
        unbiased=True, unbiased_note="",
        needs_f="must accept relaxed inputs, differentiably",
        needs_p=r"discrete, with a relaxation $z$ and $\tilde z \sim p(z \mid b)$",
        evaluations="3",
        variance="a learned control variate $c_\\psi$ trained to minimise it",
        chapters=(7,),
    ),
    Entry(
        name="gumbel_rao", variant="",
        label="Gumbel-Rao", short="GR",
        formula=r"$\bigl(\frac1K\sum_{k=1}^K \partial_\theta y_i^{(k)}\bigr)^{\top}"
                r" \nabla h(D_i)$, $y_i^{(k)}$ relaxed samples from Gumbel noise "
                r"$g_i^{(k)}$ drawn given $D_i$",
        unbiased=False, unbiased_note="biased like straight-through",
        needs_f="$h$ differentiable, evaluated at one-hot inputs",
        needs_p="categorical, by its logits",
        evaluations="1",
        variance="lower than straight-through (noise integrated out given the sample)",
        chapters=(7,),
    ),
    Entry(
        name="elbo_gradient", variant="reparam",
        label="IWAE, reparameterized", short="IWAE",
        formula=r"$\nabla_\phi \log \frac1k \sum_{j=1}^k w_j$, "
                r"$w_j = \frac{p(x, z_j)}{q_\phi(z_j \mid x)}$, $z_j = g_\phi(\varepsilon_j)$",
        unbiased=True, unbiased_note="for the IWAE bound's gradient",
        needs_f=r"$\log p(x, z)$ differentiable in $z$",
        needs_p=r"$q_\phi$ reparameterizable",
        evaluations="1 per importance sample ($k$ per data point)",
        variance="the encoder's signal-to-noise ratio falls as $k$ grows",
        chapters=(10,),
    ),
    Entry(
        name="elbo_gradient", variant="stl",
        label="IWAE, sticking the landing", short="STL",
        formula=r"as `reparam`, with $\log q_\phi$'s direct $\phi$-dependence stopped",
        unbiased=False, unbiased_note="unbiased for $k = 1$ only",
        needs_f=r"$\log p(x, z)$ differentiable in $z$",
        needs_p=r"$q_\phi$ reparameterizable",
        evaluations="1 per importance sample",
        variance=r"goes to 0 as $q_\phi$ reaches the posterior",
        chapters=(10,),
    ),
    Entry(
        name="elbo_gradient", variant="dreg",
        label="IWAE, doubly reparameterized (DReG)", short="DReG",
        formula=r"$\sum_j \tilde w_j^2\, \frac{\partial \log w_j}{\partial z_j}"
                r"\frac{\partial z_j}{\partial \phi}$, $\tilde w_j = w_j / \sum_l w_l$",
        unbiased=True, unbiased_note="for the IWAE bound's encoder gradient",
        needs_f=r"$\log p(x, z)$ differentiable in $z$",
        needs_p=r"$q_\phi$ reparameterizable",
        evaluations="1 per importance sample",
        variance="the encoder's signal-to-noise ratio grows with $k$",
        chapters=(10,),
    ),
    Entry(
        name="elbo_gradient", variant="score",
        label="IWAE, score function (VIMCO)", short="VIMCO",
        formula=r"VIMCO: $\sum_j \bigl(\hat L - \hat L_{-j}\bigr)\,"
                r"\nabla_\phi \log q_\phi(z_j \mid x)$ + the weights' term",
        unbiased=True, unbiased_note="",
        needs_f=r"values of $\log p(x, z)$ only",
        needs_p=r"$q_\phi$ with a differentiable `log_prob` (discrete $z$ too)",
        evaluations="1 per importance sample",
        variance="leave-one-out baselines from the other $k - 1$ samples",
        chapters=(10,),
    ),
)

# The cheat sheet's two tables and their columns, in order: what each estimator
# computes, and what it needs and costs (one wide table would scroll sideways).
TABLES: dict[str, tuple[str, ...]] = {
    "estimate": ("estimator", "per-sample estimate $\\hat g_i$", "unbiased", "chapter"),
    "needs": ("estimator", "needs from $f$", "needs from $p_\\theta$",
              "evaluations of $f$ per sample", "variance"),
}
#: Every column of the cheat sheet, in order.
COLUMNS = ("estimator", "per-sample estimate $\\hat g_i$", "unbiased", "needs from $f$",
           "needs from $p_\\theta$", "evaluations of $f$ per sample", "variance", "chapter")


def entries() -> tuple[Entry, ...]:
    """Every estimator of the book, in the order of the cheat sheet."""
    return ENTRIES


def names() -> list[str]:
    """The canonical names (library function names), each once, in order."""
    seen: list[str] = []
    for entry in ENTRIES:
        if entry.name not in seen:
            seen.append(entry.name)
    return seen


def get(name: str, variant: str = "") -> Entry:
    """The entry for ``name`` (and ``variant``).

    Raises:
        KeyError: naming the estimator and the known keys, if it is not catalogued.
    """
    if not isinstance(name, str) or not isinstance(variant, str):
        raise TypeError(f"name and variant must be str, got {name!r} and {variant!r}")
    for entry in ENTRIES:
        if entry.name == name and entry.variant == variant:
            return entry
    known = ", ".join(e.key for e in ENTRIES)
    raise KeyError(f"no estimator {name!r} with variant {variant!r}; known: {known}")


def by_key(key: str) -> Entry:
    """The entry whose :attr:`Entry.key` is ``key`` (``"score_function[baseline='loo']"``).

    Raises:
        TypeError: ``key`` is not a str.
        KeyError: naming the key and the known keys, if it is not catalogued.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {key!r} of type {type(key).__name__}")
    for entry in ENTRIES:
        if entry.key == key:
            return entry
    known = ", ".join(e.key for e in ENTRIES)
    raise KeyError(f"no estimator with key {key!r}; known: {known}")


def label(key: str) -> str:
    """The display name of the estimator ``key`` (``"score function + LOO baseline"``):
    the one place prose, legends and tables take it from."""
    return by_key(key).label


def short_label(key: str) -> str:
    """The short name of the estimator ``key`` for narrow tables (``"SF+LOO"``)."""
    return by_key(key).short


def _cell(text: str) -> str:
    if "|" in text or "\n" in text:
        raise ValueError(f"a table cell may hold no '|' and no newline: {text!r}")
    return text


def _cells(entry: Entry) -> dict[str, str]:
    label = f"`{entry.name}`" + (f" ({entry.variant})" if entry.variant else "")
    unbiased = "yes" if entry.unbiased else "**no**"
    if entry.unbiased_note:
        unbiased += f", {entry.unbiased_note}"
    chapters = ", ".join(str(c) for c in entry.chapters)
    values = [label, entry.formula, unbiased, entry.needs_f, entry.needs_p,
              entry.evaluations, entry.variance, chapters]
    return dict(zip(COLUMNS, values))


def markdown_table(which: str = "estimate") -> str:
    """One of the cheat sheet's tables, as Markdown (MyST reads dollar-delimited math).

    Args:
        which: ``"estimate"`` (estimator, per-sample estimate, unbiased, chapter) or
            ``"needs"`` (estimator, what it needs from f and from the distribution,
            evaluations of f per sample, variance).
    """
    if which not in TABLES:
        raise ValueError(f"which must be one of {sorted(TABLES)}, got {which!r}")
    columns = TABLES[which]
    lines = ["| " + " | ".join(columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    for entry in ENTRIES:
        cells = _cells(entry)
        lines.append("| " + " | ".join(_cell(cells[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"
