"""Tests of companion.experiments.graphs: the graph data say what the chapter claims."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from companion.experiments.graphs import GRAPHS, differentiable_paths, draw_graphs  # noqa: E402


def test_sampling_blocks_the_path_through_x():
    """With .sample() the only differentiable path from theta to f skips x."""
    assert differentiable_paths("sampling") == [["theta", "f"]]
    assert differentiable_paths("sampling", "theta", "x") == []


def test_reparameterized_graph_has_a_path_through_x():
    """With .rsample() theta -> x -> f is differentiable, and the noise is an input (no edge into it)."""
    assert ["theta", "x", "f"] in differentiable_paths("reparameterized")
    assert not any(b == "eps" for _, b, _ in GRAPHS["reparameterized"]["edges"])
    assert GRAPHS["reparameterized"]["nodes"]["x"][2] == "deterministic"
    assert GRAPHS["sampling"]["nodes"]["x"][2] == "random"


def test_draw_graphs_has_two_titled_panels():
    fig = draw_graphs()
    assert len(fig.axes) == 2
    assert all(ax.get_title() for ax in fig.axes)
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert r"$x = g_\theta(\varepsilon)$" in texts


def test_bad_arguments():
    with pytest.raises(ValueError, match="graph"):
        differentiable_paths("autograd")
    with pytest.raises(ValueError, match="target"):
        differentiable_paths("sampling", "theta", "z")
