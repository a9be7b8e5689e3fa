r"""The computational-graph picture of the reparameterization trick (chapter 1).

Two graphs for :math:`L(\theta) = \mathbb E_{x \sim p_\theta}[f_\theta(x)]`:

- **sampling** (``.sample()``): :math:`\theta` feeds a *random* node
  :math:`x \sim p_\theta`. The edge :math:`\theta \to x` is a draw, not a
  function, so backpropagation cannot pass it; the only differentiable path from
  :math:`\theta` to :math:`f` is the direct one (:math:`\theta` inside :math:`f`).
- **reparameterized** (``.rsample()``): the noise :math:`\varepsilon \sim p(\varepsilon)`
  is an *input*, and :math:`x = g_\theta(\varepsilon)` is a deterministic node, so
  :math:`\theta \to x \to f` is differentiable end to end.

The graphs are data (``GRAPHS``), checked by :func:`differentiable_paths`,
and drawn by :func:`draw_graphs`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

__all__ = ["GRAPHS", "differentiable_paths", "draw_graphs"]

#: Each node maps to (x, y, kind, label); kind is "param", "input" (noise), "random",
#: "deterministic" or "output". Edges: (source, target, differentiable).
GRAPHS = {
    "sampling": {
        "nodes": {
            "theta": (0.08, 0.55, "param", r"$\theta$"),
            "x": (0.40, 0.80, "random", r"$x \sim p_\theta$"),
            "f": (0.72, 0.55, "deterministic", r"$f_\theta(x)$"),
            "L": (0.94, 0.55, "output", r"$\hat L$"),
        },
        "edges": [("theta", "x", False), ("x", "f", True), ("theta", "f", True), ("f", "L", True)],
    },
    "reparameterized": {
        "nodes": {
            "theta": (0.08, 0.55, "param", r"$\theta$"),
            "eps": (0.40, 0.90, "input", r"$\varepsilon \sim p(\varepsilon)$"),
            "x": (0.40, 0.55, "deterministic", r"$x = g_\theta(\varepsilon)$"),
            "f": (0.72, 0.55, "deterministic", r"$f_\theta(x)$"),
            "L": (0.94, 0.55, "output", r"$\hat L$"),
        },
        "edges": [("theta", "x", True), ("eps", "x", True), ("x", "f", True), ("theta", "f", True),
                  ("f", "L", True)],
    },
}


def differentiable_paths(graph: str, source: str = "theta", target: str = "f") -> list[list[str]]:
    """Every path from ``source`` to ``target`` in ``GRAPHS[graph]`` that uses differentiable edges only.

    Backpropagation follows exactly these paths. In ``"sampling"`` the only one is
    the direct ``theta -> f``; in ``"reparameterized"`` there is also
    ``theta -> x -> f``, the path through the sample.
    """
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {sorted(GRAPHS)}, got {graph!r}")
    nodes = GRAPHS[graph]["nodes"]
    for name, value in (("source", source), ("target", target)):
        if value not in nodes:
            raise ValueError(f"{name} must be a node of {graph!r} ({sorted(nodes)}), got {value!r}")
    edges = [(a, b) for a, b, ok in GRAPHS[graph]["edges"] if ok]
    paths, stack = [], [[source]]
    while stack:
        path = stack.pop()
        if path[-1] == target:
            paths.append(path)
            continue
        stack.extend(path + [b] for a, b in edges if a == path[-1] and b not in path)
    return sorted(paths, key=len)


_STYLE = {
    "param": dict(fc="#dbe9f6", ec="#1f77b4"),
    "input": dict(fc="#eeeeee", ec="#555555"),
    "random": dict(fc="#fde0dd", ec="#d62728"),
    "deterministic": dict(fc="white", ec="#333333"),
    "output": dict(fc="white", ec="#333333"),
}


def _shrink(node, vertical: bool) -> float:
    """Points to keep an arrow's end off a node's outline."""
    kind, label = node[2], node[3]
    if kind == "random":
        return 30.0
    if vertical:
        return 14.0
    return 32.0 if len(label) > 12 else 19.0


def _draw_one(ax, graph: str, title: str) -> None:
    spec = GRAPHS[graph]
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(0.15, 1.05)
    ax.set_axis_off()
    ax.set_title(title)
    for x, y, kind, label in spec["nodes"].values():
        style = _STYLE[kind]
        if kind == "random":
            ax.add_patch(Circle((x, y), 0.1, lw=1.5, **style))
        else:
            w = 0.2 if len(label) > 12 else 0.11
            ax.add_patch(FancyBboxPatch((x - w / 2, y - 0.05), w, 0.1, boxstyle="round,pad=0.01", lw=1.5,
                                        **style))
        ax.text(x, y, label, ha="center", va="center", fontsize=11)
    nodes = spec["nodes"]
    for a, b, ok in spec["edges"]:
        (xa, ya), (xb, yb) = nodes[a][:2], nodes[b][:2]
        direct = (a, b) == ("theta", "f")   # curve below the path through x
        ax.add_patch(FancyArrowPatch((xa, ya), (xb, yb), arrowstyle="-|>", mutation_scale=14,
                                     shrinkA=_shrink(nodes[a], ya != yb),
                                     shrinkB=_shrink(nodes[b], ya != yb and not direct),
                                     connectionstyle="arc3,rad=0.3" if direct else "arc3",
                                     lw=1.2, color="#333333" if ok else "#d62728",
                                     ls="-" if ok else "--"))
    # the backward pass: along the differentiable path through x, or blocked
    if graph == "sampling":
        ax.text(0.22, 0.69, "✕", color="#d62728", fontsize=18, ha="center", va="center")
        ax.text(0.5, 0.24, "gradient cannot flow back\nthrough the draw of $x$", ha="center", fontsize=10,
                color="#d62728")
    else:
        ax.text(0.5, 0.24, r"gradient flows $f \to x \to \theta$;" + "\n" + r"$\varepsilon$ is an input",
                ha="center", fontsize=10, color="#1f77b4")


def draw_graphs() -> plt.Figure:
    """Draw the two graphs side by side; returns the figure (two axes, no ticks)."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    _draw_one(axes[0], "sampling", "x = dist.sample(): random node")
    _draw_one(axes[1], "reparameterized", "x = dist.rsample(): noise as input")
    return fig
