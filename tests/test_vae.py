"""Tests of companion.experiments.vae: the training loop and the temperature schedule."""

from __future__ import annotations

import pytest

from companion.device import setup
from companion.experiments import vae
from companion.experiments import vae_models as vm
from companion.experiments.data import load_binary_digits


@pytest.fixture(scope="module")
def digits():
    return load_binary_digits()


def test_train_vae_is_reproducible_and_silent(digits, capsys):
    x_train, x_test = digits.x_train[:200], digits.x_test[:50]
    runs = []
    for _ in range(2):
        setup(0)
        model = vm.CategoricalVAE(n_latents=2, n_categories=4, n_hidden=16)
        runs.append(vae.train_vae(model, x_train, "gumbel_softmax", x_test=x_test, n_epochs=3, batch_size=64, temperature=(2.0, 0.5)))
    assert runs[0] == runs[1]
    h = runs[0]
    assert len(h.train_elbo) == len(h.test_elbo) == len(h.temperature) == 3
    assert h.temperature[-1] == pytest.approx(0.5)
    assert h.test_elbo[-1] == pytest.approx(vm.categorical_elbo_exact(model, x_test).mean().item(), abs=1e-4)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_train_vae_progress_bar_goes_to_stderr(digits, capsys):
    setup(0)
    vae.train_vae(vm.GaussianVAE(n_hidden=8), digits.x_train[:64], "pathwise", n_epochs=2, batch_size=64, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "pathwise" in captured.err


def test_temperature_schedule():
    """tau_t = tau0 (tau1/tau0)^(t/(T-1)): the endpoints, and the geometric midpoint."""
    assert vae.temperature_schedule(0, 11, 2.0, 0.5) == pytest.approx(2.0)
    assert vae.temperature_schedule(10, 11, 2.0, 0.5) == pytest.approx(0.5)
    assert vae.temperature_schedule(5, 11, 2.0, 0.5) == pytest.approx(1.0)
    assert vae.temperature_schedule(0, 1, 2.0, 0.5) == 2.0


def test_bad_inputs(digits, raises):
    g, c = vm.GaussianVAE(n_hidden=8), vm.CategoricalVAE(n_hidden=8)
    x = digits.x_train[:4]
    with raises(TypeError, "progress", "1"):
        vae.train_vae(g, x, "pathwise", progress=1)
    with raises(ValueError, "lr", "-1.0"):
        vae.train_vae(g, x, "pathwise", lr=-1.0)
    with raises(TypeError, "temperature", "0.5"):
        vae.train_vae(c, x, "gumbel_softmax", temperature=0.5)
    with raises(ValueError, "estimator", "'pathwise'"):
        vae.train_vae(c, x, "pathwise")
    with raises(ValueError, "n_samples >= 2", "n_samples=1"):
        vae.train_vae(c, x, vm.SCORE_FUNCTION_LOO, n_samples=1)
    with raises(ValueError, "x_train must hold binary pixels"):  # names no offending value
        vae.train_vae(g, x * 0.5 + 0.25, "pathwise")
    with raises(ValueError, "step must be < n_steps=5", "got 5"):
        vae.temperature_schedule(5, 5)
