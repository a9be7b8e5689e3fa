#!/usr/bin/env python
"""Benchmarks: the companion against torch's own implementations, and the book's time budget.

    .venv/bin/python benchmarks/run.py              # the kernel tables (a minute or two)
    .venv/bin/python benchmarks/run.py --quick      # fewer sizes and repeats (smoke test)
    .venv/bin/python benchmarks/run.py --efficiency # + chapter 8's estimator efficiency table
    .venv/bin/python benchmarks/run.py --book       # + every notebook's run time and the build
    COMPANION_DEVICE=cuda .venv/bin/python benchmarks/run.py   # + the same tables on the GPU

Every comparison is timed side by side in one process: the candidates of one row
run in turns (their order rotated each round), each round timing a few calls, and
each candidate's time is the median over rounds. Background load then slows the
candidates alike and largely cancels in their **ratio**, which is what the goals
are stated in; absolute times are for context only.

Writes ``benchmarks/results/latest.csv`` (one row per comparison),
``benchmarks/results/latest.json`` (the rows, the machine and the book's budget) and
``benchmarks/results/latest.md`` (the same as a Markdown table, for the README).
See ``benchmarks/README.md`` for the columns.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch.distributions import Exponential, MultivariateNormal, Normal

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import estimators, gumbel, reparam, validation  # noqa: E402
from companion.device import synchronize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import BUDGET_S, DEFAULT_BUDGET_S  # noqa: E402  (one list of budgets)


# --------------------------------------------------------------------------- timing
def interleaved(cases: dict[str, Callable[[], object]], device: torch.device, rounds: int,
                min_round_s: float = 1e-2) -> dict[str, float]:
    """Median seconds per call of each case, timed in interleaved rounds.

    Also returns, under the key ``"ratio"``, the median over rounds of the first
    case's time divided by the second's, both from the same round: a burst of
    background load slows one round's two cases alike and cancels in their ratio.

    Each round runs every case ``inner`` times back to back (``inner`` chosen once so
    that the slowest case's round lasts at least ``min_round_s``); the order of the
    cases rotates from round to round so that none always runs first.
    """
    names = list(cases)
    for fn in cases.values():  # warm-up: allocator, lazy init, first-call dispatch
        fn()
    synchronize(device)
    slowest = 0.0
    for fn in cases.values():
        start = time.perf_counter()
        fn()
        synchronize(device)
        slowest = max(slowest, time.perf_counter() - start)
    inner = max(1, min(1000, int(min_round_s / max(slowest, 1e-7))))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn = cases[name]
            synchronize(device)
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / inner)
    result = {name: statistics.median(ts) for name, ts in times.items()}
    if len(names) >= 2:
        result["ratio"] = statistics.median(a / b for a, b in zip(times[names[0]], times[names[1]]))
    return result


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


ROWS: list[dict] = []


def record(section: str, case: str, size: int, device: torch.device, t_companion: float, t_ref: float,
           reference: str, goal: str, ok: bool | None, note: str = "", ratio: float | None = None) -> None:
    row = {
        "section": section,
        "case": case,
        "size": size,
        "device": str(device),
        "companion_s": t_companion,
        "reference": reference,
        "reference_s": t_ref,
        "ratio": t_companion / t_ref if ratio is None else ratio,
        "goal": goal,
        "meets_goal": "" if ok is None else ("yes" if ok else "NO"),
        "note": note,
    }
    ROWS.append(row)
    print(f"  {case:34s} {size:>9.0e} {fmt_time(t_companion):>10s} {reference:28s} {fmt_time(t_ref):>10s}"
          f" {row['ratio']:7.3g}  {goal:9s} {row['meets_goal']:3s} {note}", flush=True)


def header(title: str) -> None:
    print(f"\n{title}")
    print(f"  {'case':34s} {'size':>9s} {'companion':>10s} {'reference':28s} {'ref time':>10s}"
          f" {'ratio':>7s}  {'goal':9s} ok")


# --------------------------------------------------------------------------- tables
def bench_gumbel(device: torch.device, sizes: list[int], rounds: int, categories: int = 10) -> None:
    header(f"Gumbel-softmax on {device}: companion.gumbel.gumbel_softmax vs torch.nn.functional.gumbel_softmax"
           f" (logits of shape (size/{categories}, {categories}))")
    for n in sizes:
        logits = torch.randn(max(1, n // categories), categories).to(device)
        for hard in (False, True):
            cases = {
                "companion": lambda: gumbel.gumbel_softmax(logits, 0.5, hard=hard),
                "torch": lambda: F.gumbel_softmax(logits, tau=0.5, hard=hard),
            }
            t = interleaved(cases, device, rounds)
            ok = t["ratio"] <= 1.0 if n >= 10**5 else None
            record("gumbel", f"gumbel_softmax hard={hard}", n, device, t["companion"], t["torch"],
                   "F.gumbel_softmax", "<= 1.0" if n >= 10**5 else "-", ok, ratio=t["ratio"])


def _unchecked(fn, *args, **kwargs):
    """Call a companion function with its value checks off (companion.validation.validate_args)."""
    with validation.validate_args(False):
        return fn(*args, **kwargs)


def bench_reparam(device: torch.device, sizes: list[int], rounds: int, d: int = 10) -> None:
    header(f"Reparameterized samplers on {device}: companion.reparam vs torch.distributions rsample")
    mu = torch.tensor(0.3, device=device, requires_grad=True)
    sigma = torch.tensor(1.7, device=device, requires_grad=True)
    rate = torch.tensor(2.0, device=device, requires_grad=True)
    mvn_mu = torch.linspace(-1, 1, d).to(device).requires_grad_()
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(0))
    tril = (torch.linalg.cholesky(a @ a.T + d * torch.eye(d))).to(device).requires_grad_()
    for n in sizes:
        specs = [
            ("Normal", lambda: reparam.gaussian(mu, sigma, sample_shape=n),
             lambda: Normal(mu, sigma).rsample((n,)), "Normal.rsample"),
            # the same with value checks off, against torch with validate_args=False
            ("Normal (value checks off)", lambda: _unchecked(reparam.gaussian, mu, sigma, sample_shape=n),
             lambda: Normal(mu, sigma, validate_args=False).rsample((n,)), "Normal.rsample(no validation)"),
            (f"MultivariateNormal d={d} (scale_tril)",
             lambda: reparam.mvn_cholesky(mvn_mu, tril, sample_shape=max(1, n // d)),
             lambda: MultivariateNormal(mvn_mu, scale_tril=tril).rsample((max(1, n // d),)),
             "MultivariateNormal.rsample"),
            ("Exponential", lambda: reparam.exponential(rate, sample_shape=n),
             lambda: Exponential(rate).rsample((n,)), "Exponential.rsample"),
        ]
        for name, ours, theirs, ref in specs:
            t = interleaved({"companion": ours, "torch": theirs}, device, rounds)
            ok = t["ratio"] <= 1.0 if n >= 10**5 else None
            record("reparam", name, n, device, t["companion"], t["torch"], ref,
                   "<= 1.0" if n >= 10**5 else "-", ok, ratio=t["ratio"])


def bench_estimators(device: torch.device, n: int, rounds: int, loop_n: int) -> None:
    r"""Per-sample gradients of E[x^2], x ~ N(mu, sigma^2), w.r.t. theta = (mu, sigma).

    The floor writes them out by hand: pathwise, x = mu + sigma eps gives
    d(x^2)/d mu = 2x and d(x^2)/d sigma = 2x eps; score function, with z = (x - mu)/sigma,
    d log p/d mu = z/sigma and d log p/d sigma = (z^2 - 1)/sigma, each times f(x) = x^2.
    The loop calls autograd once per sample; it is timed on ``loop_n`` samples and
    scaled to ``n`` per sample.
    """
    header(f"Per-sample gradient estimators on {device}, Gaussian, f(x) = x^2, {n:.0e} samples")
    params = torch.tensor([0.5, 1.3], device=device)

    def dist_fn(p):
        return Normal(p[0], p[1])

    def f(x):
        return x * x

    def floor_pathwise():
        eps = torch.randn(n).to(device)
        x = params[0] + params[1] * eps
        return torch.stack([2 * x, 2 * x * eps], 1)

    def floor_score():
        eps = torch.randn(n).to(device)
        x = params[0] + params[1] * eps
        fx = x * x
        return torch.stack([fx * eps / params[1], fx * (eps * eps - 1) / params[1]], 1)

    def loop_pathwise(m):
        out = torch.empty(m, 2, device=device)
        for i in range(m):
            p = params.detach().requires_grad_()
            x = dist_fn(p).rsample()
            (g,) = torch.autograd.grad(f(x), p)
            out[i] = g
        return out

    def loop_score(m):
        out = torch.empty(m, 2, device=device)
        for i in range(m):
            p = params.detach().requires_grad_()
            dist = dist_fn(p)
            x = dist.sample()
            (g,) = torch.autograd.grad(dist.log_prob(x), p)
            out[i] = f(x) * g
        return out

    specs = [
        ("pathwise", lambda: estimators.pathwise(f, dist_fn, params, n), floor_pathwise, loop_pathwise),
        ("score_function", lambda: estimators.score_function(f, dist_fn, params, n), floor_score, loop_score),
        ("score_function baseline='loo'",
         lambda: estimators.score_function(f, dist_fn, params, n, baseline="loo"), floor_score, loop_score),
    ]
    for name, ours, floor, loop in specs:
        t = interleaved({"companion": ours, "floor": floor}, device, rounds)
        record("estimators", name, n, device, t["companion"], t["floor"], "by hand (floor)", "<= 3.0",
               t["ratio"] <= 3.0, ratio=t["ratio"])
        tl = interleaved({"companion": ours, "loop": lambda: loop(loop_n)}, device, max(3, rounds // 2))
        t_loop = tl["loop"] * n / loop_n
        record("estimators", name, n, device, tl["companion"], t_loop, "Python loop (scaled)",
               "<= 0.02", tl["companion"] <= 0.02 * t_loop,
               note=f"{t_loop / tl['companion']:.0f}x faster; loop timed on {loop_n} samples, scaled x{n // loop_n}")


def bench_measure_valued(device: torch.device, n: int, rounds: int) -> None:
    r"""``measure_valued`` against its hand-written per-sample formula (the floor), and cost per evaluation of f.

    Gaussian, f(x) = x^2, theta = (mu, sigma), coupled. The floor: R = sqrt(-2 log U) (Rayleigh),
    g_mu = (f(mu + sigma R) - f(mu - sigma R)) / (sigma sqrt(2 pi)); M double-sided Maxwell
    (chi_3 magnitude, random sign), g_sigma = (f(mu + sigma M) - f(mu + sigma U M)) / sigma.
    The measure-valued estimator spends 4 evaluations of f per sample on this gradient, the
    pathwise and score-function estimators 1: the rows also report seconds per evaluation of f.
    """
    import math

    from companion.measure_valued import measure_valued

    header(f"Measure-valued estimator on {device}, Gaussian, f(x) = x^2, {n:.0e} samples")
    params = torch.tensor([0.5, 1.3], device=device)

    def dist_fn(p):
        return Normal(p[0], p[1])

    def f(x):
        return x * x

    def floor():
        mu, sigma = params[0], params[1]
        u = torch.rand(n).clamp_(min=torch.finfo(torch.float32).tiny)
        r = torch.sqrt(-2.0 * torch.log(u)).to(device)
        g_mu = (f(mu + sigma * r) - f(mu - sigma * r)) / (sigma * math.sqrt(2 * math.pi))
        z = torch.randn(2, n)
        u2 = torch.rand(n).clamp_(min=torch.finfo(torch.float32).tiny)
        m = torch.sqrt(-2.0 * torch.log(u2) + z[0] ** 2)
        m = torch.where(z[1] < 0, -m, m).to(device)
        v = torch.rand(n).to(device)
        g_sigma = (f(mu + sigma * m) - f(mu + sigma * v * m)) / sigma
        return torch.stack([g_mu, g_sigma], 1)

    t = interleaved({"companion": lambda: measure_valued(f, dist_fn, params, n), "floor": floor}, device, rounds)
    per_eval = t["companion"] / (4 * n)
    record("estimators", "measure_valued (coupled)", n, device, t["companion"], t["floor"], "by hand (floor)",
           "<= 3.0", t["ratio"] <= 3.0, ratio=t["ratio"],
           note=f"4 evaluations of f per sample; {fmt_time(per_eval)} per evaluation")
    ROWS[-1].update(evaluations_per_sample=4, time_per_evaluation_s=per_eval)
    others = {
        "pathwise": lambda: estimators.pathwise(f, dist_fn, params, n),
        "score_function": lambda: estimators.score_function(f, dist_fn, params, n),
        "measure_valued": lambda: measure_valued(f, dist_fn, params, n),
    }
    evals = {"pathwise": 1, "score_function": 1, "measure_valued": 4}
    t = interleaved(others, device, max(3, rounds // 2))
    for name, e in evals.items():
        record("cost per evaluation of f", name, n, device, t[name] / (e * n), t["pathwise"] / n,
               "pathwise, per sample", "-", None, ratio=t[name] / (e * n) / (t["pathwise"] / n),
               note=f"{e} evaluation(s) of f per sample")
        ROWS[-1].update(evaluations_per_sample=e, time_per_evaluation_s=t[name] / (e * n))
def bench_discrete(device: torch.device, sizes: list[int], rounds: int, n: int = 100) -> None:
    r"""Chapter 7's estimators for d independent bits, f(b) = sum_j (b_j - 0.3)^2: time per sample.

    Each row: the estimator's time divided by ``n`` samples, beside the score function with
    the leave-one-out baseline (the reference) at the same size; ratio = estimator / reference.
    Gumbel-softmax, straight-through and Gumbel-Rao (k = 10) use two categories with logits
    (theta, 0) and include the backward pass to theta. Cost per sample in evaluations of f:
    score function, Gumbel-softmax, Gumbel-Rao 1; ARM, DisARM 2; REBAR 3.
    """
    from torch.distributions import Bernoulli

    from companion import discrete

    header(f"Discrete-variable estimators on {device}, d bits, {n} samples (time per sample)")

    def f(b):
        return ((b - 0.3) ** 2).reshape(b.shape[0], -1).sum(-1)

    def relaxed(sampler, theta):
        rows = theta.expand(n, -1).clone().requires_grad_(True)
        two = torch.stack([rows, torch.zeros_like(rows)], dim=-1)
        (g,) = torch.autograd.grad(f(sampler(two)[..., 0]), rows, torch.ones(n, device=device))
        return g

    for d in sizes:
        theta = torch.linspace(-2.0, 2.0, d).to(device)
        cases = {
            "score_function baseline='loo'": lambda: estimators.score_function(
                f, lambda p: Bernoulli(logits=p), theta, n, baseline="loo"),
            "gumbel_softmax": lambda: relaxed(lambda l2: gumbel.gumbel_softmax(l2, 0.5), theta),
            "arm": lambda: discrete.arm(f, theta, n),
            "disarm": lambda: discrete.disarm(f, theta, n),
            "rebar": lambda: discrete.rebar(f, theta, n),
            "gumbel_rao k=10": lambda: relaxed(lambda l2: gumbel.gumbel_rao(l2, 0.5, 10), theta),
        }
        t = interleaved(cases, device, rounds)
        ref = t["score_function baseline='loo'"] / n
        for name in cases:
            per = t[name] / n
            record("discrete", name, d, device, per, ref, "score_function loo", "-", None,
                   note="time per sample; size = number of bits", ratio=per / ref)
def bench_multisample(device: torch.device, n: int, rounds: int) -> None:
    r"""``elbo_gradient`` of the k-sample bound, each variant, against the one-sample ELBO's
    gradient at the same total number of samples (``n`` estimates of k draws vs ``n k``
    estimates of one draw), on the conjugate model z ~ N(0, 1), x | z ~ N(z, 1).
    Goal: ``"dreg"`` at most 1.5x ``"reparam"`` at the same k.
    """
    from companion.multisample import GRADIENTS, elbo_gradient

    header(f"Multi-sample gradients on {device}: companion.estimators.elbo_gradient, conjugate model")
    params = torch.tensor([0.2, -0.3], device=device)

    def log_joint(z):
        return -0.5 * z * z - 0.5 * (1.4 - z) ** 2

    def q_fn(p):
        return Normal(p[0], p[1].exp())

    for k in (5, 20):
        m = max(1, n // k)
        one = lambda: elbo_gradient(log_joint, q_fn, params, m * k, 1, "reparam")  # noqa: E731
        for g in GRADIENTS:
            ours = lambda g=g: elbo_gradient(log_joint, q_fn, params, m, k, g)  # noqa: E731
            t = interleaved({"companion": ours, "elbo": one}, device, rounds)
            record("multisample", f"{g}, k={k}", m * k, device, t["companion"], t["elbo"],
                   "one-sample ELBO, same draws", "", None, ratio=t["ratio"])
        t = interleaved({"dreg": lambda: elbo_gradient(log_joint, q_fn, params, m, k, "dreg"),
                         "reparam": lambda: elbo_gradient(log_joint, q_fn, params, m, k, "reparam")},
                        device, rounds)
        record("multisample", f"dreg vs reparam, k={k}", m * k, device, t["dreg"], t["reparam"],
               "reparam, same k", "<= 1.5", t["ratio"] <= 1.5, ratio=t["ratio"])


def bench_efficiency(device: torch.device, n: int) -> None:
    """Chapter 8's table: variance x time per sample of each estimator on each problem."""
    try:
        from companion.experiments import comparison, comparison_report
    except ImportError as err:  # chapter 8's experiment code
        print(f"\nEstimator efficiency: skipped ({err})")
        return
    print(f"\nEstimator efficiency on {device} (companion.experiments.comparison, {n:.0e} samples each)")
    table = comparison.compare_all(n_samples=n, device=device)
    print(comparison_report.format_table(table))
    for m in table:
        if m.applicable:
            ROWS.append({"section": "efficiency", "case": f"{m.problem}: {m.estimator.label}", "size": m.n_samples,
                         "device": str(device), "companion_s": m.time_per_sample, "bias": m.bias,
                         "bias_se": m.bias_se, "variance": m.variance, "variance_x_time": m.variance_time,
                         "note": m.reason})


def bench_vae_seeds(device: torch.device, rounds: int, k: int = 5) -> None:
    """Chapter 9's seeds: k VAEs trained as one stacked computation vs one ordinary run.

    One "run" is one epoch of ``companion.experiments.vae.train_vae`` over 1024 digits (8 Adam steps
    of 128 images, 4 latent samples each); the vectorised case trains ``k`` models, each
    with its own minibatches and noise, in one ``companion.experiments.vae_seeds`` stack.
    Goal: all k in at most twice the time of one (k sequential runs take k times one).
    """
    from companion.experiments import vae, vae_models
    from companion.experiments.data import load_binary_digits
    from companion.experiments import vae_seeds

    x = load_binary_digits().x_train[:1024].to(device)
    header(f"VAE seeds on {device}: {k} models stacked (companion.experiments.vae_seeds) vs one train_vae run")
    for make, src in [(vae_models.CategoricalVAE, "gumbel_softmax"), (vae_models.GaussianVAE, "pathwise")]:
        models = [make().to(device) for _ in range(k)]

        def one():
            vae.train_vae(models[0], x, src, n_epochs=1, batch_size=128, n_samples=4, lr=1e-3)

        def stacked():
            params = vae_seeds.stack_models(models)
            vae_seeds.train_stacked(params, x, src, n_epochs=1, batch_size=128, n_samples=4, lr=1e-3,
                                    eval_every=10)

        t = interleaved({"stacked": stacked, "one": one}, device, max(3, rounds // 2))
        record("vae_seeds", f"{make.__name__} {src}: {k} seeds stacked", k, device, t["stacked"], t["one"],
               "one train_vae run", "<= 2.0", t["ratio"] <= 2.0, ratio=t["ratio"],
               note=f"{k} sequential runs would take {k}x one: stacked is {k / t['ratio']:.1f}x faster")


def bench_book(rounds_note: str = "") -> None:
    """Each notebook executed in a fresh kernel (on a copy in a temp dir), and a full build."""
    import nbformat
    from nbclient import NotebookClient

    print("\nThe book's time budget (CPU; copies executed in a temp dir, the repository is untouched)")
    print(f"  {'notebook':40s} {'time':>8s} {'budget':>8s} ok")
    with tempfile.TemporaryDirectory(prefix="bench-book-") as tmp:
        book = pathlib.Path(tmp) / "book"
        shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
        env = dict(os.environ)
        env.pop("COMPANION_DEVICE", None)
        env["PYTHONHASHSEED"] = "0"
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        old = dict(os.environ)
        for path in sorted(book.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=300, kernel_name="python3",
                                    resources={"metadata": {"path": str(book)}}, allow_errors=False)
            os.environ.clear()
            os.environ.update(env)
            error = ""
            try:
                start = time.perf_counter()
                client.execute()
                elapsed = time.perf_counter() - start
            except Exception as err:  # report, keep going
                elapsed = float("nan")
                error = f"{type(err).__name__}"
            finally:
                os.environ.clear()
                os.environ.update(old)
            budget = BUDGET_S.get(path.name, DEFAULT_BUDGET_S)
            ok = "yes" if elapsed <= budget else "NO"
            print(f"  {path.name:40s} {elapsed:6.1f} s {budget:6d} s {ok} {error}", flush=True)
            ROWS.append({"section": "book", "case": path.name, "companion_s": elapsed, "goal": f"<= {budget} s",
                         "meets_goal": ok, "note": error, "device": "cpu"})
        out = pathlib.Path(tmp) / "build"
        cmd = [str(ROOT / ".venv" / "bin" / "jupyter-book"), "build", str(ROOT), "-W", "-n", "--keep-going",
               "--path-output", str(out)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        note = "built, no warnings" if proc.returncode == 0 else f"exit code {proc.returncode}"
        log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
        warned = sorted({(re.match(r"\S+?\.(?:py|ipynb|md|rst|bib|yml)\b", line) or re.match(r"\S+", line)).group(0)
                         for line in log.splitlines() if ": WARNING" in line or ": ERROR" in line})
        if warned:
            note += f"; warnings from {len(warned)} file(s): " + ", ".join(
                str(pathlib.Path(w).relative_to(ROOT)) if w.startswith(str(ROOT)) else w for w in warned)
        print(f"  {'full build (jupyter-book build -W -n)':40s} {elapsed:6.1f} s {'-':>6s}   {note}")
        ROWS.append({"section": "book", "case": "jupyter-book build", "companion_s": elapsed, "goal": "",
                     "meets_goal": "", "note": note, "device": "cpu"})


# --------------------------------------------------------------------------- machine
def machine(device: torch.device) -> dict:
    cpu = platform.processor() or ""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def gpu_device() -> torch.device | None:
    """The GPU named by COMPANION_DEVICE, if it names one and one is present; else None."""
    name = os.environ.get("COMPANION_DEVICE", "cpu").strip() or "cpu"
    if not name.startswith("cuda"):
        print("\nGPU section: skipped (COMPANION_DEVICE does not name a CUDA device)")
        return None
    if not torch.cuda.is_available():
        print(f"\nGPU section: skipped (COMPANION_DEVICE={name!r} but torch.cuda.is_available() is False)")
        return None
    return torch.device(name)


def markdown(info: dict, rounds: int) -> str:
    """The rows as a Markdown table (for the README's Performance section), with the machine."""
    cpu = info["cpu"]
    lines = [f"Machine: {cpu['cpu']}, {cpu['cpu_count']} cores, torch {cpu['torch']} with "
             f"{cpu['torch_threads']} thread(s), {cpu['platform']}; load average {cpu['load_average_1_5_15'][0]:.1f} "
             f"at the start; {cpu['date_utc']}; medians of {rounds} interleaved rounds."]
    if "gpu" in info:
        lines[0] += f" GPU: {info['gpu'].get('gpu')}."
    lines += ["", "| device | comparison | size | companion | reference | ratio | goal | met |",
              "| --- | --- | ---: | ---: | --- | ---: | --- | --- |"]
    for r in ROWS:
        if r["section"] in ("gumbel", "reparam", "estimators", "cost per evaluation of f", "discrete",
                            "multisample", "vae_seeds"):
            lines.append(f"| {r['device']} | {r['case']} | {r['size']:.0e} | {fmt_time(r['companion_s'])} | "
                         f"{r['reference']} ({fmt_time(r['reference_s'])}) | {r['ratio']:.3g} | {r['goal']} | "
                         f"{r['meets_goal'] or '-'} |")
    book = [r for r in ROWS if r["section"] == "book"]
    if book:
        lines += ["", "| notebook | time | budget | met |", "| --- | ---: | ---: | --- |"]
        for r in book:
            lines.append(f"| {r['case']} | {r['companion_s']:.1f} s | {r['goal'] or '-'} | "
                         f"{r['meets_goal'] or r['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and rounds (a smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per comparison")
    parser.add_argument("--efficiency", action="store_true", help="chapter 8's estimator efficiency table")
    parser.add_argument("--book", action="store_true", help="time every notebook and the full build (slow)")
    parser.add_argument("--only-book", action="store_true", help="only the book's time budget")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, steadier on a shared machine; 0: torch's own choice)")
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS, help="where latest.csv/.json go")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (5 if args.quick else 11)
    sizes = [10**3, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6, 10**7]
    n_est, loop_n = (10**4, 200) if args.quick else (10**5, 1000)

    cpu = torch.device("cpu")
    devices = [cpu]
    info = {"cpu": machine(cpu)}
    gpu = None if args.only_book else gpu_device()
    if gpu is not None:
        devices.append(gpu)
        info["gpu"] = machine(gpu)
    print("Machine:", json.dumps(info["cpu"]))

    if not args.only_book:
        for device in devices:
            torch.manual_seed(0)
            bench_gumbel(device, sizes, rounds)
            bench_reparam(device, sizes, rounds)
            bench_estimators(device, n_est, rounds, loop_n)
            bench_vae_seeds(device, rounds)
            bench_measure_valued(device, n_est, rounds)
            bench_discrete(device, [10, 1000] if args.quick else [10, 100, 1000, 10000], rounds)
            bench_multisample(device, n_est, rounds)
            if args.efficiency:
                bench_efficiency(device, 10**4 if args.quick else 10**5)
    if args.book or args.only_book:
        bench_book()

    args.output.mkdir(parents=True, exist_ok=True)
    fields = ["section", "case", "size", "device", "companion_s", "reference", "reference_s", "ratio", "goal",
              "meets_goal", "note"]
    extra = sorted({k for row in ROWS for k in row} - set(fields))
    with open(args.output / "latest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields + extra)
        writer.writeheader()
        writer.writerows(ROWS)
    payload = {"machine": info, "rounds": rounds, "budget_s": {"default": DEFAULT_BUDGET_S, **BUDGET_S},
               "rows": ROWS}
    (args.output / "latest.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    (args.output / "latest.md").write_text(markdown(info, rounds))
    misses = [r for r in ROWS if r.get("meets_goal") == "NO"]
    print(f"\nWrote {args.output / 'latest.csv'}, latest.json and latest.md; {len(misses)} row(s) miss their goal.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
