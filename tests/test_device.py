"""companion.device: choosing the device from COMPANION_DEVICE, seeding, and CPU-drawn noise.

Tests marked ``cuda`` run only where torch sees a GPU (see ``tests/conftest.py``); they
check that the companion gives the CPU's numbers on the GPU for the same seed, which
is what lets the book print the same outputs on either.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from companion import device as D
from companion import estimators, gumbel, reparam

ENV = "COMPANION_DEVICE"


# ---------------------------------------------------------------------------------------
# get_device
# ---------------------------------------------------------------------------------------


def test_default_is_cpu(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert D.get_device() == torch.device("cpu")


@pytest.mark.parametrize("value", ["cpu", " cpu ", "", "   ", "cpu\n"])
def test_cpu_names(value, monkeypatch):
    """Blank means the default; surrounding whitespace is ignored."""
    monkeypatch.setenv(ENV, value)
    assert D.get_device() == torch.device("cpu")


@pytest.mark.parametrize("value", ["gpu", "nonsense", "cuda:abc", "cpu cpu", "CUDA!", "1"])
def test_nonsense_names_rejected(value, monkeypatch, raises):
    """A name torch does not know is a ValueError that names the variable and shows the value."""
    monkeypatch.setenv(ENV, value)
    with raises(ValueError, ENV, repr(value.strip())):
        D.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("value", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_gpu_rejected(value, monkeypatch, raises):
    monkeypatch.setenv(ENV, value)
    with raises(ValueError, f"{ENV}={value!r}", "is_available"):
        D.get_device()


@pytest.mark.cuda
def test_cuda_names(monkeypatch, raises):
    monkeypatch.setenv(ENV, "cuda")
    assert D.get_device().type == "cuda"
    monkeypatch.setenv(ENV, "cuda:0")
    assert D.get_device() == torch.device("cuda:0")
    count = torch.cuda.device_count()
    monkeypatch.setenv(ENV, f"cuda:{count}")
    with raises(ValueError, f"{ENV}='cuda:{count}'", f"has {count} CUDA"):
        D.get_device()


# ---------------------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------------------


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(4), D.randn(3), gumbel.gumbel(2)


def test_setup_seeds_reproducibly(monkeypatch):
    """The same seed gives the same draws from random, NumPy, torch and the companion."""
    monkeypatch.setenv(ENV, "cpu")
    assert D.setup(3) == torch.device("cpu")
    first = _draw()
    D.setup(3)
    again = _draw()
    D.setup(4)
    other = _draw()
    for a, b, c in zip(first, again, other):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            assert not torch.equal(a, c)
        else:
            assert a == b and a != c


def test_setup_makes_estimators_reproducible(monkeypatch):
    monkeypatch.setenv(ENV, "cpu")

    def run():
        return estimators.score_function(
            lambda x: x**2, lambda p: Normal(p[0], p[1]), torch.tensor([0.5, 1.2]), 50, baseline="loo"
        )

    D.setup(11)
    a = run()
    D.setup(11)
    torch.testing.assert_close(run(), a, rtol=0, atol=0)


def test_setup_turns_tf32_off(monkeypatch):
    """TF32 would change float32 matrix products on recent GPUs; setup turns it off."""
    monkeypatch.setenv(ENV, "cpu")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        D.setup(0)
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.allow_tf32 is False
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("0", TypeError), (None, TypeError)])
def test_setup_rejects_bad_seeds(bad, exc, raises):
    with raises(exc, "seed", repr(bad)):
        D.setup(bad)


def test_setup_reports_a_bad_device(monkeypatch, raises):
    monkeypatch.setenv(ENV, "nonsense")
    with raises(ValueError, ENV, "'nonsense'"):
        D.setup(0)


# ---------------------------------------------------------------------------------------
# CPU-drawn noise
# ---------------------------------------------------------------------------------------


def test_randn_is_torch_randn_on_the_cpu():
    torch.manual_seed(2)
    expected = torch.randn(5, 3)
    torch.manual_seed(2)
    torch.testing.assert_close(D.randn((5, 3)), expected, rtol=0, atol=0)
    torch.manual_seed(2)
    torch.testing.assert_close(D.randn((5, 3), device="cpu", dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    a = D.randn(4, generator=torch.Generator().manual_seed(9))
    b = D.randn(4, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert D.randn(4).shape == (4,)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_open_is_uniform_on_the_open_interval(dtype, seed, stats):
    r"""Mean 1/2, variance 1/12 (fourth central moment 1/80), the uniform CDF (KS), and never 0 or 1."""
    u = D.uniform_open(200_000, dtype=dtype)
    assert u.dtype == dtype and (u > 0).all() and (u < 1).all()
    stats.assert_mean(u, 0.5, "uniform mean")
    stats.assert_var(u, 1 / 12, 1 / 80, "uniform variance")
    stats.assert_ks(u, lambda t: np.clip(t, 0, 1), "uniform")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_open_clamps_the_edges(dtype, monkeypatch):
    """If ``torch.rand`` returns 0, the result is the smallest normal float, so -log u is finite."""
    real_rand = torch.rand

    def edge_rand(*args, **kwargs):
        out = real_rand(*args, **kwargs)
        out[0] = 0.0
        out[1] = 1.0 - torch.finfo(out.dtype).eps / 2
        return out

    monkeypatch.setattr(torch, "rand", edge_rand)
    u = D.uniform_open(3, dtype=dtype)
    assert u[0] == torch.finfo(dtype).tiny and 0 < u[1] < 1
    assert torch.isfinite(-torch.log(u)).all() and torch.isfinite(-torch.log(-torch.log(u))).all()
    assert math.isfinite(float(-torch.log1p(-u[1])))


# ---------------------------------------------------------------------------------------
# The same numbers on a GPU
# ---------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_noise_on_cuda_matches_cpu():
    """Noise drawn on the CPU then moved is bit-for-bit the CPU's."""
    torch.manual_seed(4)
    cpu = (D.randn(100), D.uniform_open(100), gumbel.gumbel(100))
    torch.manual_seed(4)
    gpu = (D.randn(100, device="cuda"), D.uniform_open(100, device="cuda"), gumbel.gumbel(100, device="cuda"))
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=0)


@pytest.mark.cuda
def test_samplers_on_cuda_match_cpu():
    """The samplers draw on the CPU, so params on the GPU give the CPU's samples (float tolerance)."""
    logits = torch.randn(50, 4)

    def run(dev):
        torch.manual_seed(8)
        return (
            gumbel.gumbel_softmax(logits.to(dev), 0.5),
            gumbel.gumbel_softmax(logits.to(dev), 0.5, hard=True),
            gumbel.gumbel_max(logits.to(dev)),
            reparam.gaussian(torch.zeros(3, device=dev), torch.ones(3, device=dev), sample_shape=20),
            reparam.exponential(torch.tensor(2.0, device=dev), sample_shape=20),
            reparam.mvn_sqrtm(torch.zeros(2, device=dev), torch.eye(2, device=dev) * 2, sample_shape=20),
            reparam.inverse_cdf(Normal(torch.tensor(0.0, device=dev), torch.tensor(1.0, device=dev)), sample_shape=20),
        )

    for a, b in zip(run("cpu"), run("cuda")):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["pathwise", "score_function"])
def test_estimator_on_cuda_matches_cpu(name):
    """The same seed gives the same per-sample estimates with params on the GPU as on the CPU."""
    est = getattr(estimators, name)
    params = torch.tensor([0.3, -0.2])

    def run(dev):
        torch.manual_seed(21)
        return est(lambda x: (x - 1) ** 2, lambda p: Normal(p[0], p[1].exp()), params.to(dev), 5000)

    cpu, gpu = run("cpu"), run("cuda")
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_setup_pins_the_cpu_thread_count(monkeypatch, raises):
    """One thread by default (sums in a fixed order on any machine); None leaves it alone."""
    monkeypatch.delenv("COMPANION_DEVICE", raising=False)
    before = torch.get_num_threads()
    try:
        D.setup(0)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        D.setup(0, num_threads=None)
        assert torch.get_num_threads() == 2
        with raises(ValueError, "num_threads", "got 0"):
            D.setup(0, num_threads=0)
        with raises(TypeError, "num_threads", "1.5"):
            D.setup(0, num_threads=1.5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["mps", "meta", "xpu"])
def test_devices_this_torch_cannot_use_are_rejected_where_read(value, monkeypatch, raises):
    """A device torch knows by name but cannot run here fails in get_device, not later at .to()."""
    try:
        torch.empty(1, device=value)
        usable = value != "meta"
    except (RuntimeError, AssertionError, NotImplementedError):
        usable = False
    if usable:
        pytest.skip(f"this machine can use {value}")
    monkeypatch.setenv(ENV, value)
    with raises(ValueError, f"{ENV}={value!r}"):
        D.get_device()


def test_synchronize_is_a_no_op_on_the_cpu_and_checks_its_argument(raises):
    """``synchronize`` waits for CUDA work; on the CPU there is nothing to wait for."""
    assert D.synchronize("cpu") is None
    assert D.synchronize(torch.device("cpu")) is None
    with raises(ValueError, "device", "'not-a-device'"):
        D.synchronize("not-a-device")
    with raises(TypeError, "device", "3"):
        D.synchronize(3)
