"""Categorical latent variables: the Gumbel-max trick, the concrete (Gumbel-softmax) relaxation, REINFORCE.

A categorical latent ``c ~ Cat(π)`` with ``π = softmax(ℓ)`` (``K`` classes, logits ``ℓ``)
has no reparameterisation ``c = g(ℓ, ε)`` that is differentiable in ``ℓ``: ``c`` jumps. The
gradient of an expectation ``F(ℓ) = E_{c~Cat(π)}[f(c)]`` (``c`` as a one-hot vector
``e_c``) can still be estimated in two ways:

* **REINFORCE** (the score function, Williams 1992): ``∇_ℓ F = E[(f(e_c) − b) ∇_ℓ log π_c]``
  with ``∇_ℓ log π_c = e_c − π``, for any baseline ``b`` that does not depend on ``c``.
  Unbiased, often of high variance; the baseline lowers it.
* **The concrete / Gumbel-softmax relaxation** (Maddison et al. 2017; Jang et al. 2017): by
  the Gumbel-max trick ``argmax_k(ℓ_k + g_k) ~ Cat(π)`` for independent standard Gumbel
  ``g_k = −log(−log u_k)``; replacing the argmax by ``y = softmax((ℓ + g)/τ)`` gives a
  reparameterised sample on the simplex, and ``∇_ℓ f(y)`` is an unbiased estimate of the
  gradient of the *relaxed* objective ``E[f(y)]``, a biased one of ``∇_ℓ F``. The bias
  vanishes as ``τ → 0`` while the variance grows. The **straight-through** variant uses the
  one-hot ``e_c`` in the forward pass and the relaxed ``y``'s gradient in the backward pass.

:func:`gradient_estimates` draws ``n`` independent one-sample estimates of ``∇_ℓ F`` from each
estimator, and :func:`exact_gradient` computes ``∇_ℓ F`` by enumerating the ``K`` classes, so
bias and variance can be measured exactly (chapter 19).

Shapes: ``K`` classes; logits ``(K,)`` or ``(B, K)``; ``f`` maps ``(n, K)`` points of the
simplex (one-hot or relaxed) to ``(n,)`` values.
"""
from __future__ import annotations

import math
import traceback
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    check_float,
    check_int,
    check_tensor,
)

__all__ = [
    "ESTIMATORS",
    "categorical_kl_uniform",
    "check_gumbel_softmax",
    "chi_square_statistic",
    "exact_gradient",
    "gradient_estimates",
    "gumbel_max",
    "gumbel_softmax",
    "moving_average_baseline",
    "sample_gumbel",
]

ESTIMATORS = ("reinforce", "reinforce_baseline", "gumbel_softmax", "straight_through")
"""The estimators of :func:`gradient_estimates`."""


def sample_gumbel(shape, generator: torch.Generator | None = None, dtype=None, device=None) -> Tensor:
    """Standard Gumbel noise ``g = −log(−log u)``, ``u ~ U(0, 1)``, of the given shape.

    ``u`` is drawn in ``[tiny, 1)`` so that neither logarithm is infinite.
    """
    dtype = dtype or torch.get_default_dtype()
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    u = u.clamp_min(torch.finfo(dtype).tiny)
    return -torch.log(-torch.log(u))


def _logits(logits) -> Tensor:
    logits = check_tensor("logits", logits)
    if logits.dim() == 0 or logits.shape[-1] < 2:
        raise ArgumentError(f"logits must have shape (..., K) with K ≥ 2 classes, got {tuple(logits.shape)}")
    return logits


def gumbel_max(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A sample ``c = argmax_k(ℓ_k + g_k) ~ Cat(softmax(ℓ))``: the Gumbel-max trick.

    Shapes: logits ``(..., K)`` ``->`` indices ``(...)`` (int64).
    """
    logits = _logits(logits)
    g = sample_gumbel(logits.shape, generator, logits.dtype, logits.device)
    return (logits + g).argmax(-1)


def gumbel_softmax(logits: Tensor, tau: float, *, hard: bool = False, gumbel: Tensor | None = None,
                   generator: torch.Generator | None = None) -> Tensor:
    """A concrete / Gumbel-softmax sample ``y = softmax((ℓ + g)/τ)`` on the simplex.

    With ``hard=True``, the straight-through variant: the forward value is the one-hot
    ``e_c`` of ``c = argmax_k(ℓ_k + g_k)`` (an exact sample of ``Cat(softmax ℓ)``), the
    gradient is that of the relaxed ``y``: ``e_c + y − sg[y]``.

    Args:
        logits: ``ℓ``, ``(..., K)``.
        tau: the temperature ``τ > 0``; small ``τ`` brings ``y`` close to a one-hot vector.
        gumbel: the noise ``g`` (same shape as ``logits``); drawn with ``generator`` if omitted.

    Shapes: ``(..., K) -> (..., K)``.
    """
    logits = _logits(logits)
    tau = check_float("tau", tau, min=0.0, min_open=True)
    if gumbel is None:
        gumbel = sample_gumbel(logits.shape, generator, logits.dtype, logits.device)
    elif gumbel.shape != logits.shape:
        raise ArgumentError(f"gumbel must have the shape of logits {tuple(logits.shape)}, got {tuple(gumbel.shape)}")
    y = torch.softmax((logits + gumbel) / tau, dim=-1)
    if not hard:
        return y
    one_hot = F.one_hot(y.argmax(-1), logits.shape[-1]).to(y.dtype)
    return one_hot + y - y.detach()  # value e_c, gradient of y


def exact_gradient(logits: Tensor, f: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """``F(ℓ) = Σ_k π_k f(e_k)`` and its gradient ``∇_ℓ F``, by enumerating the ``K`` classes.

    Shapes: logits ``(K,)`` ``->`` (``F`` a scalar, ``∇_ℓ F`` ``(K,)``).
    """
    logits = _logits(logits)
    if logits.dim() != 1:
        raise ArgumentError(f"exact_gradient takes one vector of logits (K,), got shape {tuple(logits.shape)}")
    leaf = logits.detach().clone().requires_grad_()
    k = leaf.shape[0]
    values = f(torch.eye(k, dtype=leaf.dtype, device=leaf.device))  # f(e_1), ..., f(e_K)
    expectation = (torch.softmax(leaf, -1) * values).sum()
    (grad,) = torch.autograd.grad(expectation, leaf)
    return expectation.detach(), grad


def moving_average_baseline(values: Tensor, decay: float = 0.9, initial: float = 0.0) -> Tensor:
    """``b_t = decay · b_{t−1} + (1 − decay) · f_{t−1}``, ``b_1 = initial``: each ``b_t`` uses only earlier values.

    Because ``b_t`` does not depend on the ``t``-th sample, REINFORCE stays unbiased with it.
    Shapes: ``(n,) -> (n,)``.
    """
    decay = check_float("decay", decay, min=0.0, max=1.0)
    values = check_tensor("values", values, dim=1)
    out, b = [], float(initial)
    for v in values.tolist():  # a plain loop: the recursion is sequential
        out.append(b)
        b = decay * b + (1.0 - decay) * v
    return torch.tensor(out, dtype=values.dtype, device=values.device)


def gradient_estimates(logits: Tensor, f: Callable[[Tensor], Tensor], estimator: str, n: int, *,
                       tau: float = 1.0, decay: float = 0.9, generator: torch.Generator | None = None) -> Tensor:
    """``n`` independent one-sample estimates of ``∇_ℓ E_{c~Cat(softmax ℓ)}[f(e_c)]``.

    ``logits`` ``(K,)`` is one categorical variable; ``(M, K)`` is ``M`` independent ones,
    ``c_m ~ Cat(softmax ℓ_m)``, and ``f`` then maps ``(n, M, K)`` to ``(n,)``: one scalar for
    all ``M`` variables, as a VAE's reconstruction term is for all its latent variables.

    ``estimator`` is one of :data:`ESTIMATORS`:

    * ``"reinforce"``: ``f(e_c) (e_c − π)``;
    * ``"reinforce_baseline"``: ``(f(e_c) − b_t)(e_c − π)`` with the moving average
      :func:`moving_average_baseline` of the earlier samples' ``f`` (``decay``), started at
      the first sample's value; sample ``t`` is the ``t``-th step of a run;
    * ``"gumbel_softmax"``: ``∇_ℓ f(softmax((ℓ + g)/τ))`` (relaxed; biased for ``F``);
    * ``"straight_through"``: ``∇_ℓ f(e_c + y − sg[y])`` (``f`` at the exact sample; biased).

    Shapes: logits ``(K,)`` or ``(M, K)`` ``->`` ``(n, K)`` or ``(n, M, K)``, one estimate per row.
    """
    logits = _logits(logits)
    if logits.dim() > 2:
        raise ArgumentError(f"gradient_estimates takes logits of shape (K,) or (M, K), got {tuple(logits.shape)}")
    if estimator not in ESTIMATORS:
        raise ArgumentError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    n = check_int("n", n, min=1)
    leaf = logits.detach().expand(n, *logits.shape).clone().requires_grad_()  # one copy of ℓ per estimate
    g = sample_gumbel(leaf.shape, generator, leaf.dtype, leaf.device)
    if estimator.startswith("reinforce"):
        with torch.no_grad():
            c = (leaf + g).argmax(-1)  # Gumbel-max: c ~ Cat(π)
            one_hot = F.one_hot(c, leaf.shape[-1]).to(leaf.dtype)
            fc = f(one_hot)
            b = moving_average_baseline(fc, decay, float(fc[0])) if estimator == "reinforce_baseline" else 0.0
            weight = (fc - b).view(n, *[1] * (leaf.dim() - 1))
            return weight * (one_hot - torch.softmax(leaf, -1))  # (f − b) ∇_ℓ log π_c
    y = gumbel_softmax(leaf, tau, hard=estimator == "straight_through", gumbel=g)
    (grad,) = torch.autograd.grad(f(y).sum(), leaf)  # row i depends only on copy i of ℓ
    return grad


# ----------------------------------------------------------------------------- student check

def _student(fn, *args):
    """Call the student's function; an exception is a failure to report, not a crash."""
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001  (any error in student code is a FAIL)
        frames = traceback.extract_tb(e.__traceback__)
        where = f" (line {frames[-1].lineno} in {frames[-1].name})" if frames else ""
        return None, f"{traceback.format_exception_only(type(e), e)[-1].strip()}{where}"


def _report(name: str, failure: str | None, hint: str | None = None) -> bool:
    if failure is None:
        print(f"PASS {name}")
        return True
    print(f"FAIL {name}: {failure}" + (f"\n  hint: {hint}" if hint else ""))
    return False


def _compare(name: str, fn, reference, cases, hints=(), names=()) -> bool:
    """Run ``fn`` and ``reference`` on each case (a tuple of tensors, the first ``needs_grad``
    ones leaves) and compare the values, then the gradients of ``Σ w ⊙ output`` with a fixed
    random weight ``w``. Prints ``PASS``/``FAIL`` (with the case, expected and got, and the first
    ``hint`` whose ``alt(*case)`` reproduces the student's value); returns a bool; never raises.
    """
    for label, make, needs_grad in cases:
        args = make()
        leaves = [a.detach().clone().requires_grad_() if i < needs_grad else a for i, a in enumerate(args)]
        got, error = _student(fn, *leaves)
        if error:
            return _report(name, f"your function raised on {label}: {error}")
        if not isinstance(got, Tensor):
            return _report(name, f"on {label}: return a torch.Tensor, got {type(got).__name__}")
        ref_leaves = [a.detach().clone().requires_grad_() if i < needs_grad else a for i, a in enumerate(args)]
        expected = reference(*ref_leaves)
        if got.shape != expected.shape:
            return _report(name, f"on {label}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
        if not torch.allclose(got.detach().to(expected.dtype), expected.detach(), rtol=1e-4, atol=1e-5):
            hint = next((h for h, alt in hints if _matches(alt, args, got)), None)
            worst = (got.detach().to(expected.dtype) - expected.detach()).abs().max().item()
            return _report(name, f"values differ on {label} (largest difference {worst:.3g})", hint)
        w = torch.randn(expected.shape, generator=torch.Generator().manual_seed(7), dtype=expected.dtype)
        if not got.requires_grad:
            return _report(name, f"on {label}: your output carries no gradient (was it computed under "
                           "torch.no_grad(), or from .detach()ed inputs?)")
        mine = torch.autograd.grad((got * w).sum(), leaves[:needs_grad], allow_unused=True)
        ref = torch.autograd.grad((expected * w).sum(), ref_leaves[:needs_grad], allow_unused=True)
        for i, (a, b) in enumerate(zip(mine, ref)):
            a = torch.zeros_like(leaves[i]) if a is None else a
            b = torch.zeros_like(leaves[i]) if b is None else b
            if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
                worst = (a - b).abs().max().item()
                arg = f"argument {i + 1}" + (f" ({names[i]})" if i < len(names) else "")
                return _report(name, f"values agree but the gradient with respect to {arg} differs on "
                               f"{label} (largest difference {worst:.3g})",
                               "the forward value is right; check what is detached and what is not")
    return _report(name, None)


def _matches(alt, args, got) -> bool:
    try:
        want = alt(*[a.detach() if isinstance(a, Tensor) else a for a in args])
    except Exception:  # noqa: BLE001  (a hint that does not apply)
        return False
    return want.shape == got.shape and torch.allclose(got.detach().to(want.dtype), want, rtol=1e-4, atol=1e-5)


def check_gumbel_softmax(fn: Callable[[Tensor, Tensor, float], Tensor]) -> bool:
    """Homework check: ``fn(logits, gumbel, tau) -> y = softmax((ℓ + g)/τ)``, values and gradients.

    The noise ``g`` is given, so the answer is deterministic and is compared with
    :func:`gumbel_softmax` exactly (relative tolerance 1e-4): the values, then the gradients
    with respect to ``logits`` and ``gumbel``, on a batch of float32 logits, a float64 batch,
    a low temperature (τ = 0.05) with large logits (±30, where an unstabilised softmax
    overflows) and one vector of shape ``(K,)``. Prints ``PASS`` or ``FAIL`` with what differs
    and, for common mistakes, a hint; returns a bool; never raises.
    """
    if not callable(fn):
        raise ArgumentTypeError(f"fn must be a function fn(logits, gumbel, tau), got {type(fn).__name__}")

    def case(shape, tau, scale, dtype, seed):
        def make():
            gen = torch.Generator().manual_seed(seed)
            logits = scale * torch.randn(shape, generator=gen, dtype=dtype)
            return logits, sample_gumbel(shape, gen, dtype), tau
        return make

    def ref(logits, g, tau):
        return gumbel_softmax(logits, tau, gumbel=g)

    cases = [("a (8, 5) float32 batch at τ = 0.7", case((8, 5), 0.7, 1.0, torch.float32, 0), 2),
             ("a (4, 3) float64 batch at τ = 2", case((4, 3), 2.0, 1.0, torch.float64, 1), 2),
             ("τ = 0.05 with logits of size ±30", case((6, 4), 0.05, 30.0, torch.float64, 2), 2),
             ("one vector of shape (K,) = (7,)", case((7,), 0.5, 1.0, torch.float32, 3), 2)]
    hints = [
        ("only the logits are divided by τ: use softmax((ℓ + g)/τ)",
         lambda ell, g, tau: torch.softmax(ell / tau + g, -1)),
        ("the temperature is missing: use softmax((ℓ + g)/τ)", lambda ell, g, tau: torch.softmax(ell + g, -1)),
        ("τ multiplies instead of dividing", lambda ell, g, tau: torch.softmax((ell + g) * tau, -1)),
        ("the noise is subtracted: use ℓ + g", lambda ell, g, tau: torch.softmax((ell - g) / tau, -1)),
        ("the softmax is over the wrong dimension: use dim=-1 (the K classes)",
         lambda ell, g, tau: torch.softmax((ell + g) / tau, 0)),
        ("that is the log of the relaxed sample: return softmax, not log_softmax",
         lambda ell, g, tau: torch.log_softmax((ell + g) / tau, -1)),
        ("that is the hard one-hot sample: the relaxed sample is the softmax itself",
         lambda ell, g, tau: F.one_hot((ell + g).argmax(-1), ell.shape[-1]).to(ell.dtype)),
    ]
    with torch.random.fork_rng(devices=[]):
        return _compare("gumbel_softmax", fn, ref, cases, hints, names=("logits", "gumbel"))


def chi_square_statistic(counts: Tensor, probs: Tensor) -> tuple[float, int]:
    """Pearson's ``X² = Σ_k (N_k − n π_k)² / (n π_k)`` and its degrees of freedom ``K − 1``.

    Under ``N ~ Multinomial(n, π)``, ``X²`` is close to ``χ²_{K−1}`` for large ``n π_k``: mean
    ``K − 1``, standard deviation ``√(2(K − 1))``.
    """
    counts = check_tensor("counts", counts, dim=1).double()
    probs = check_tensor("probs", probs, dim=1).double()
    if counts.shape != probs.shape:
        raise ArgumentError(f"counts and probs must have the same shape, got {tuple(counts.shape)} and "
                            f"{tuple(probs.shape)}")
    expected = counts.sum() * probs
    return float(((counts - expected) ** 2 / expected).sum()), counts.numel() - 1


def categorical_kl_uniform(probs: Tensor) -> Tensor:
    """``KL(q ‖ U{1..K}) = log K − H(q)`` per row; ``0`` for the uniform ``q``, ``log K`` for a one-hot ``q``.

    Shapes: ``(..., K) -> (...)``.
    """
    probs = check_tensor("probs", probs)
    k = probs.shape[-1]
    entropy = -torch.special.xlogy(probs, probs).sum(-1)
    return math.log(k) - entropy
