"""Tests of companion.experiments.vae_seeds: the stacked models compute what k separate ones do."""

from __future__ import annotations

import pytest
import torch

from companion import catalogue
from companion.experiments import vae_models as vm
from companion.experiments.data import load_binary_digits
from companion.experiments import vae_seeds as vs
from companion.experiments.comparison import Estimator
from companion.stats import GradientError, gradient_error


@pytest.fixture(scope="module")
def x():
    return load_binary_digits().x_train[:40]


def _cat(seed, **kw):
    torch.manual_seed(seed)
    return vm.CategoricalVAE(n_latents=2, n_categories=4, n_hidden=16, **kw)


def test_stacked_exact_elbo_is_each_models_exact_elbo(x):
    models = [_cat(s) for s in range(3)]
    params = vs.stack_models(models)
    recon, kl = vs.stacked_exact_terms(params, x)
    for i, m in enumerate(models):
        torch.testing.assert_close(recon[i] - kl[i], vm.categorical_elbo_exact(m, x), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(kl[i], vm.categorical_kl(m.encode(x)))
    back = vs.unstack_model(params, 2)
    torch.testing.assert_close(back.encode(x), models[2].encode(x))


@pytest.mark.parametrize(
    "gauss, source",
    [(False, s) for s in vs.CATEGORICAL_SOURCES[1:]] + [(True, s) for s in vs.GAUSSIAN_SOURCES],
)
def test_one_stacked_model_matches_elbo_surrogate_with_the_same_noise(x, gauss, source):
    """With k = 1 the stacked loss draws the same noise, in the same order, as
    companion.experiments.vae_models.elbo_surrogate: loss and encoder gradient must agree."""
    torch.manual_seed(0)
    model = vm.GaussianVAE(n_latent=3, n_hidden=16) if gauss else _cat(0)
    params = vs.stack_models([model])
    torch.manual_seed(7)
    loss = vs.stacked_loss(params, x[None], source, n_samples=3, temperature=0.7)
    torch.manual_seed(7)
    ref, _ = vm.elbo_surrogate(model, x, source, n_samples=3, temperature=0.7)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(loss, [params["encoder.0.w"]])[0][0].T
    want = torch.autograd.grad(ref, [model.encoder[0].weight])[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_gradient_samples_exact_rows_equal_the_exact_encoder_gradient(x):
    model = _cat(3)
    rows = vs.encoder_gradient_samples(model, x, "exact", n_repeats=2)
    torch.testing.assert_close(rows[1], vm.exact_encoder_gradient(model, x), rtol=1e-5, atol=1e-6)
    rows = vs.encoder_gradient_samples(model, x, vm.SCORE_FUNCTION_LOO, n_repeats=5, n_samples=2)
    assert rows.shape == (5, sum(p.numel() for p in model.encoder.parameters()))
    assert not torch.equal(rows[0], rows[1])  # each copy has its own noise


def test_training_k_stacked_models_is_training_each_alone(x):
    """Adam is elementwise and the stacked loss is a sum of the models' losses, so stacked training
    with the exact (noise-free) gradient equals training each model alone on the same minibatches."""
    models = [_cat(s) for s in range(2)]
    params = vs.stack_models(models)
    torch.manual_seed(11)
    hist = vs.train_stacked(params, x, "exact", n_epochs=2, batch_size=16, lr=1e-2,
                            eval_sets={"train": x}, eval_every=1)
    torch.manual_seed(11)
    orders = [[torch.randperm(40) for _ in range(2)] for _ in range(2)]
    for i, m in enumerate(models):
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        for epoch in range(2):
            for start in range(0, 40, 16):
                loss = vm.categorical_exact_loss(m, x[orders[epoch][i][start:start + 16]])
                opt.zero_grad()
                loss.backward()
                opt.step()
        trained = vs.unstack_model(params, i)
        for a, b in zip(trained.parameters(), m.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(hist.elbo["train"][-1, i], vm.categorical_elbo_exact(m, x).mean(),
                                   rtol=1e-4, atol=1e-4)
    assert hist.epochs == [0, 1, 2] and hist.elbo["train"].shape == (3, 2)
    assert bool((hist.elbo["train"][-1] > hist.elbo["train"][0]).all())


def test_gaussian_elbo_and_validation_split(x, seed, stats):
    """The stacked Monte Carlo ELBO of model 1 and vae_models.gaussian_elbo of the same
    model, from independent noise, are two unbiased means of S = 4000 one-draw ELBOs of
    each image: their difference has standard error s sqrt(2 / S), with s the spread of
    one-draw ELBOs (measured from 400 of them), and lies within 5 of those."""
    torch.manual_seed(0)
    models = [vm.GaussianVAE(n_latent=2, n_hidden=8) for _ in range(2)]
    params = vs.stack_models(models)
    e = vs.stacked_gaussian_elbo(params, x, n_samples=4000, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1)
    ref = vm.gaussian_elbo(models[1], x, n_samples=4000, generator=g)
    with torch.no_grad():
        one_draw = torch.stack([vm.gaussian_elbo(models[1], x, n_samples=1, generator=g) for _ in range(400)])
    stats.assert_within(e[1].detach(), ref.detach(), one_draw.std(0) * (2 / 4000) ** 0.5,
                        "stacked minus single-model Monte Carlo ELBO")
    fit, val = vs.split_validation(x, 0.25)
    assert fit.shape == (30, 64) and val.shape == (10, 64)


def test_bad_inputs(x, raises):
    params = vs.stack_models([_cat(0)])
    with raises(ValueError, "source", "'pathwise'"):
        vs.stacked_loss(params, x[None], "pathwise")
    with raises(ValueError, "n_samples >= 2", "n_samples=1"):
        vs.stacked_loss(params, x[None], vm.SCORE_FUNCTION_LOO, n_samples=1)
    with raises(ValueError, "i must", "got 1"):
        vs.unstack_model(params, 1)
    with raises(ValueError, "models must share one architecture", "(64, 8, 2, 4)"):
        vs.stack_models([_cat(0), vm.CategoricalVAE(n_latents=2, n_categories=4, n_hidden=8)])
    with raises(TypeError, "models", "Linear"):
        vs.stack_models([torch.nn.Linear(2, 2)])
    with raises(ValueError, "fraction", "1.5"):
        vs.split_validation(x, 1.5)


def test_sources_are_catalogue_keys_or_the_exact_gradient():
    keys = {entry.key for entry in catalogue.ENTRIES}
    for source in vs.CATEGORICAL_SOURCES + vs.GAUSSIAN_SOURCES:
        assert source == "exact" or source in keys, source


def _probes():
    return [Estimator(vm.SCORE_FUNCTION_LOO), Estimator("gumbel_softmax", 0.5)]


def test_gradient_errors_compare_each_probe_with_the_exact_gradient(x):
    """Model by model, probe by probe, with the same noise as a hand-written loop; the
    score function (unbiased) reads within ~5 standard errors of zero bias."""
    models, probes, xb = [_cat(0), _cat(1)], _probes(), x[:20]
    torch.manual_seed(7)
    errors = vs.gradient_errors(models, xb, probes, n_repeats=64, n_samples=4)
    assert list(errors) == probes and all(len(v) == 2 for v in errors.values())
    torch.manual_seed(7)
    for m in models:
        exact = vm.exact_encoder_gradient(m, xb)
        for p in probes:
            est = vs.encoder_gradient_samples(m, xb, p.key, n_repeats=64, n_samples=4,
                                              temperature=p.temperature or 1.0)
            assert gradient_error(est, exact) == errors[p][models.index(m)]
    # corrected bias^2 of an unbiased estimator: within ~5 sd (sqrt(2) V / R) of 0
    for e in errors[probes[0]]:
        assert e.relative_bias <= (5 * 2**0.5) ** 0.5 * e.noise_floor, e


def test_summarize_errors_and_error_table():
    errs = [GradientError(0.1, 0.9, 0.5, 0.02, 64), GradientError(0.3, 0.8, 1.5, 0.04, 64)]
    s = vs.summarize_errors(errs)
    assert s.bias_lo == pytest.approx(10) and s.bias_hi == pytest.approx(30)
    assert s.floor == pytest.approx(4) and s.cosine == 0.8
    assert s.variance == pytest.approx(1.0)
    assert s.mse == pytest.approx((0.01 + 0.5 + 0.09 + 1.5) / 2)
    probes = _probes()
    table = vs.error_table({probes[0]: errs, probes[1]: errs[:1]}).splitlines()
    assert len(table) == 3 and table[1].strip().startswith(probes[0].label)
    assert table[2].strip().startswith("Gumbel-softmax τ=0.5")
    assert "10.0 to  30.0" in table[1] and "10.0 to  10.0" in table[2]


def test_ranking_orders_by_mean_and_counts_agreeing_seeds():
    scores = {"a": torch.tensor([3.0, 3.0, 1.0]), "b": torch.tensor([2.0, 2.0, 2.0]),
              "c": torch.tensor([1.0, 1.0, 3.0])}
    order, agree, wins = vs.ranking(scores, ["c", "b", "a"])
    assert order == ["a", "b", "c"] and agree == 2 and wins == [2, 2]


def test_helpers_bad_inputs(x, raises):
    with raises(ValueError, "errors", "[]"):
        vs.summarize_errors([])
    with raises(ValueError, "keys", "'d'"):
        vs.ranking({"a": torch.ones(2)}, ["a", "d"])
    with raises(ValueError, "probes", "pathwise"):
        vs.gradient_errors([_cat(0)], x[:4], [Estimator("pathwise")])
