r"""A multi-armed bandit and a REINFORCE (policy-gradient) learner for it.

The smallest reinforcement-learning problem in which the score-function estimator
of chapter 2 does real work. There are :math:`K` arms; pulling arm :math:`a` pays
a random reward

.. math::

    r = c + \text{Bernoulli}(q_a), \qquad \mathbb E[r \mid a] = \mu_a = c + q_a ,

with success probabilities :math:`q_a \in [0, 1]` and a constant offset :math:`c`
(the offset changes no decision, but it changes the variance of REINFORCE without
a baseline). The policy is a softmax over logits :math:`\theta \in \mathbb R^K`,

.. math::

    \pi_\theta(a) = \frac{e^{\theta_a}}{\sum_k e^{\theta_k}}, \qquad
    J(\theta) = \mathbb E_{a \sim \pi_\theta}\,\mathbb E[r \mid a] = \sum_a \pi_\theta(a)\, \mu_a ,

and :math:`\nabla_\theta J` has the closed form
:math:`\partial J / \partial \theta_k = \pi_\theta(k)\,(\mu_k - J(\theta))`
(:func:`exact_policy_gradient`).

REINFORCE is the score-function estimator: one policy's per-sample estimates are
``companion.estimators.score_function(bandit.pull, lambda t: Categorical(logits=t),
logits, n)``, the reward of a pulled arm playing the part of :math:`f`.
:func:`train_reinforce` runs the same estimator, with the softmax's score written out,
for many learning runs at once.

All randomness (actions and rewards) is drawn on the CPU from a
``torch.Generator`` and then moved to the logits' device, so CPU and GPU runs of
the same seed take the same actions (see :mod:`companion.device`). Computations
default to ``float64``, so that long learning runs agree across devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from companion.estimators import Baseline, check_baseline, loo_baseline
from companion.experiments import categorical
from companion.validation import check_finite, check_positive_int, check_real, check_tensor

__all__ = [
    "BernoulliBandit",
    "expected_reward",
    "exact_policy_gradient",
    "LearningCurves",
    "train_reinforce",
]


def _check_logits(logits, k: int) -> torch.Tensor:
    """The package's logits check (finite, floating, ``(..., K)``), and one logit per arm."""
    logits = categorical._check_logits(logits, batched=True)
    if logits.shape[-1] != k:
        raise ValueError(f"logits must have last dimension {k} (one per arm), got shape {tuple(logits.shape)}")
    return logits


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension, written out: exp(theta - max) / sum.

    ``torch.softmax`` on small CPU tensors can cost milliseconds per call when its
    worker threads compete for busy cores; these elementwise ops stay at microseconds.
    Subtracting the maximum keeps huge logits finite.
    """
    e = torch.exp(logits - logits.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU generator (all noise is drawn on the CPU), got {generator.device}")


class BernoulliBandit:
    r"""A :math:`K`-armed bandit with rewards :math:`r = c + \text{Bernoulli}(q_a)`.

    Args:
        probs: success probability :math:`q_a \in [0, 1]` of each arm, shape ``(K,)``, :math:`K \ge 2`.
        offset: the constant :math:`c` added to every reward (default 0).
    """

    def __init__(self, probs: torch.Tensor, offset: float = 0.0) -> None:
        check_tensor("probs", probs)
        check_finite("probs", probs)
        if probs.dim() != 1 or probs.shape[0] < 2:
            raise ValueError(f"probs must be a 1-d tensor of at least 2 arms, got shape {tuple(probs.shape)}")
        if bool(((probs < 0) | (probs > 1)).any()):
            raise ValueError(f"probs must lie in [0, 1], got {probs.tolist()}")
        check_real("offset", offset)
        self.probs = probs.detach()
        self.offset = float(offset)

    @property
    def n_arms(self) -> int:
        """The number of arms :math:`K`."""
        return self.probs.shape[0]

    def means(self, like: Optional[torch.Tensor] = None) -> torch.Tensor:
        r"""The mean rewards :math:`\mu_a = c + q_a`, on ``like``'s device and dtype if given."""
        mu = self.probs + self.offset
        return mu if like is None else mu.to(device=like.device, dtype=like.dtype)

    def pull(self, actions: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        r"""Rewards :math:`r_i = c + \mathbb 1[u_i < q_{a_i}]`, :math:`u_i \sim U(0, 1)` drawn on the CPU.

        Args:
            actions: integer tensor of arm indices in :math:`\{0, \dots, K-1\}`, any shape.
            generator: optional CPU ``torch.Generator``.

        Returns:
            Float tensor of ``actions``' shape and device, dtype of ``probs``.
        """
        check_tensor("actions", actions, floating=False)
        if actions.is_floating_point() or actions.dtype == torch.bool:
            raise TypeError(f"actions must be an integer tensor, got dtype {actions.dtype}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= self.n_arms):
            raise ValueError(
                f"actions must lie in 0..{self.n_arms - 1}, got values from {int(actions.min())} to {int(actions.max())}"
            )
        _check_generator(generator)
        u = torch.rand(actions.shape, generator=generator, dtype=self.probs.dtype)
        q = self.probs[actions.to("cpu")]
        return (self.offset + (u < q).to(self.probs.dtype)).to(actions.device)

    def __repr__(self) -> str:
        return f"BernoulliBandit(probs={self.probs.tolist()}, offset={self.offset})"


def expected_reward(logits: torch.Tensor, bandit: BernoulliBandit) -> torch.Tensor:
    r"""The objective :math:`J(\theta) = \sum_a \pi_\theta(a)\, \mu_a`, exactly, by enumerating the arms.

    Differentiable in ``logits`` (autograd gives :func:`exact_policy_gradient`).
    Works on a batch of policies: ``logits`` of shape ``(..., K)`` gives ``(...)``.
    """
    _check_bandit(bandit)
    logits = _check_logits(logits, bandit.n_arms)
    return (_softmax(logits) * bandit.means(like=logits)).sum(-1)


def exact_policy_gradient(logits: torch.Tensor, bandit: BernoulliBandit) -> torch.Tensor:
    r"""The exact gradient :math:`\nabla_\theta J`, with entries :math:`\pi_\theta(k)\,(\mu_k - J(\theta))`.

    From :math:`\partial \pi_\theta(a) / \partial \theta_k = \pi_\theta(a)(\mathbb 1[a = k] - \pi_\theta(k))`:

    .. math::

        \frac{\partial J}{\partial \theta_k}
        = \sum_a \mu_a\, \pi_\theta(a)\bigl(\mathbb 1[a = k] - \pi_\theta(k)\bigr)
        = \pi_\theta(k)\,\bigl(\mu_k - J(\theta)\bigr).
    """
    _check_bandit(bandit)
    logits = _check_logits(logits, bandit.n_arms)
    return categorical._expectation_gradient(logits, bandit.means(like=logits))  # checked above


def _check_bandit(bandit) -> None:
    if not isinstance(bandit, BernoulliBandit):
        raise TypeError(f"bandit must be a BernoulliBandit, got {type(bandit).__name__}")


def _reinforce(pi, actions, rewards, baseline) -> torch.Tensor:
    r"""Per-sample score-function estimates :math:`(r_i - b_i)(e_{a_i} - \pi_\theta)`, shape
    ``(..., n, K)``, from the policy ``(..., K)``, actions and rewards ``(..., n)``: the
    estimator of :func:`companion.estimators.score_function` with the softmax's score
    :math:`\nabla_\theta \log \pi_\theta(a) = e_a - \pi_\theta` written out, for many runs at once."""
    score = torch.nn.functional.one_hot(actions, pi.shape[-1]).to(pi.dtype) - pi.unsqueeze(-2)
    if baseline is None:
        weights = rewards
    elif baseline == "loo":
        weights = rewards - loo_baseline(rewards, -1)
    else:
        weights = rewards - baseline
    return weights.unsqueeze(-1) * score


@dataclass
class LearningCurves:
    r"""What :func:`train_reinforce` returns.

    Its fields, all tensors:

    * ``expected_reward``: :math:`J(\theta_t)` (exact, by enumeration) for every run
      and step, shape ``(n_runs, n_steps + 1)``; column 0 is the initial policy.
    * ``best_arm_prob``: :math:`\pi_{\theta_t}(a^\star)` for the best arm
      :math:`a^\star`, same shape.
    * ``logits``: the final logits, shape ``(n_runs, K)``.
    """

    expected_reward: torch.Tensor
    best_arm_prob: torch.Tensor
    logits: torch.Tensor

    def commitment(self, level: float = 0.9) -> tuple[int, torch.Tensor]:
        r"""How many runs ended committed to one arm, and which arms the runs favour.

        Returns ``(n_committed, counts)``: the number of runs whose final policy puts more
        than ``level`` on a single arm, :math:`\max_a \pi_\theta(a) > \text{level}`, and,
        for each arm, how many runs have it as their most likely arm (shape ``(K,)``,
        summing to the number of runs).
        """
        if not 0 < check_real("level", level) < 1:
            raise ValueError(f"level must be a number in (0, 1), got {level!r}")
        top, arm = torch.softmax(self.logits, -1).max(-1)
        return int((top > level).sum()), arm.bincount(minlength=self.logits.shape[-1])


def train_reinforce(
    bandit: BernoulliBandit,
    n_steps: int,
    lr: float,
    batch_size: int = 1,
    baseline: Baseline = None,
    n_runs: int = 1,
    seed: int = 0,
    device: Union[str, torch.device] = "cpu",
    dtype: torch.dtype = torch.float64,
) -> LearningCurves:
    r"""Learn a softmax policy by stochastic gradient ascent on :math:`J` with REINFORCE.

    Every step draws ``batch_size`` actions per run
    (:func:`companion.experiments.categorical.inverse_cdf_category`), pulls them, and updates

    .. math::

        \theta_{t+1} = \theta_t + \alpha\, \frac1B \sum_{i=1}^B (r_i - b_i)\,\bigl(e_{a_i} - \pi_{\theta_t}\bigr),

    starting from :math:`\theta_0 = 0` (the uniform policy). Baselines:

    * ``None``: :math:`b_i = 0`.
    * a number :math:`b`: a constant.
    * ``"running"``: the average of all rewards seen before this step,
      :math:`\bar r_t` (:math:`0` at :math:`t = 0`), the gradient-bandit algorithm of
      Sutton and Barto (2018, section 2.8). It depends on past steps only, so it is
      independent of this step's actions and keeps the step unbiased.
    * ``"loo"``: the leave-one-out mean of the other rewards in this step's batch
      (needs ``batch_size >= 2``).

    ``n_runs`` independent runs are vectorised; run :math:`j` draws its noise from
    its own CPU ``torch.Generator`` seeded with ``seed + j``, so a run does not
    depend on how many others there are.

    Returns:
        :class:`LearningCurves`.
    """
    _check_bandit(bandit)
    n_steps = check_positive_int("n_steps", n_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    n_runs = check_positive_int("n_runs", n_runs)
    seed = check_positive_int("seed", seed, minimum=0)
    check_real("lr", lr, positive=True)
    baseline = check_baseline(baseline, batch_size, named=("running", "loo"), samples_name="batch_size")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    device = torch.device(device)

    # All noise up front, on the CPU, each run from its own generator: for every step
    # one uniform per action (inverse CDF) and one per reward, (n_runs, n_steps, 2, batch).
    noise = torch.stack(
        [
            torch.rand(n_steps, 2, batch_size, generator=torch.Generator().manual_seed(seed + j), dtype=dtype)
            for j in range(n_runs)
        ]
    )
    logits = torch.zeros(n_runs, bandit.n_arms, dtype=dtype, device=device)
    mu = bandit.means(like=logits)
    best = int(torch.argmax(bandit.probs))
    cpu_probs = bandit.probs.to(dtype)
    rewards_sum = torch.zeros(n_runs, 1, dtype=dtype, device=device)
    J = torch.empty(n_runs, n_steps + 1, dtype=dtype, device=device)
    best_prob = torch.empty_like(J)

    for t in range(n_steps + 1):
        pi = _softmax(logits)
        J[:, t] = (pi * mu).sum(-1)
        best_prob[:, t] = pi[:, best]
        if t == n_steps:
            break
        u_action, u_reward = noise[:, t, 0].contiguous(), noise[:, t, 1]
        actions = categorical.inverse_cdf_category(logits, u_action.to(device))
        rewards = bandit.offset + (u_reward < cpu_probs[actions.cpu()]).to(dtype).to(device)
        if baseline == "running":
            b = rewards_sum / (t * batch_size) if t > 0 else torch.zeros_like(rewards_sum)
            g = _reinforce(pi, actions, rewards - b, None)
        else:
            g = _reinforce(pi, actions, rewards, baseline)
        rewards_sum += rewards.sum(-1, keepdim=True)
        logits = logits + lr * g.mean(-2)
    return LearningCurves(expected_reward=J.cpu(), best_arm_prob=best_prob.cpu(), logits=logits.cpu())
