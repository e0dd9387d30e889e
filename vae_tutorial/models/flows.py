"""Normalising flows for the posterior: planar flows and a VAE whose ``q_φ(z|x)`` is one.

A normalising flow pushes a sample ``z_0 ~ q_0(z|x)`` (the encoder's diagonal Gaussian)
through invertible maps ``z_k = f_k(z_{k-1})``, ``k = 1..K``. By the change of variables,

    log q_K(z_K|x) = log q_0(z_0|x) − Σ_k log abs(det ∂f_k/∂z_{k−1}),

so the density of the final sample is known without ever inverting a map. A *planar* map
(Rezende & Mohamed 2015) is

    f(z) = z + û h(wᵀz + b),     h = tanh,

whose Jacobian ``I + û ψ(z)ᵀ`` with ``ψ(z) = h'(wᵀz + b) w`` is a rank-one update of the
identity, so by the matrix determinant lemma

    log abs(det ∂f/∂z) = log abs(1 + ûᵀψ(z)),

an ``O(Z)`` computation instead of ``O(Z³)``. ``f`` is invertible if and only if
``wᵀû ≥ −1`` (along ``w`` the map is ``a ↦ a + wᵀû h(a)`` with ``a = wᵀz + b``, whose
derivative ``1 + wᵀû h'(a)``, ``h' ∈ (0, 1]``, is positive for every ``a`` when
``wᵀû > −1`` and vanishes only at ``a = 0`` when ``wᵀû = −1``). The free parameter ``u`` is
therefore mapped to

    û = u + [m(wᵀu) − wᵀu] w / ‖w‖²,     m(a) = −1 + softplus(a),

which gives ``wᵀû = m(wᵀu) > −1``. Without it a learned map can fold the space, and the
density formula above is then wrong (up to three ``z_0`` land on one ``z_K``).

Shapes: ``B`` examples, ``Z`` latent dims, ``K`` flow layers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import (
    ArgumentError,
    ArgumentTypeError,
    VAETutorialError,
    check_int,
    check_memory,
    expected_image_shape,
)
from ..maths.losses import ELBOTerms, _chunk_size, gaussian_log_likelihood, reparameterize
from .vae import VAE, _mlp_parameters

__all__ = ["FlowCheckError", "FlowVAE", "PlanarFlow", "check_flow_logdet", "planar_log_det", "planar_transform",
           "planar_u_hat"]

_EPS = 1e-12  # keeps ‖w‖² away from 0 (a zero w makes the map the identity, whatever û is)


def _data_shape(model, what: str) -> tuple[int, ...]:
    """The shape of one example that ``model`` reads (from its decoder's ``out_shape``), or a clear error."""
    shape = expected_image_shape(model)
    if shape is None:
        raise ArgumentTypeError(f"decoder: {what} needs the image shape, read from the decoder's out_shape "
                                "(vt.MLPDecoder and vt.ConvDecoder have one); give the decoder an out_shape "
                                "attribute, e.g. (1, 28, 28)")
    return shape


def planar_u_hat(u: Tensor, w: Tensor) -> Tensor:
    """``û = u + [m(wᵀu) − wᵀu] w/‖w‖²`` with ``m(a) = −1 + softplus(a)``; same shape as ``u``.

    ``u, w``: ``(..., Z)``. Guarantees ``wᵀû = m(wᵀu) > −1``, the condition for the planar map
    to be invertible.
    """
    wu = (w * u).sum(-1, keepdim=True)
    m = -1.0 + F.softplus(wu)
    return u + (m - wu) * w / w.pow(2).sum(-1, keepdim=True).clamp_min(_EPS)


def planar_transform(z: Tensor, u: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """One planar map ``f(z) = z + û tanh(wᵀz + b)`` and its ``log |det ∂f/∂z|``.

    Args:
        z: ``(B, Z)`` points.
        u, w: ``(Z,)`` or ``(B, Z)`` parameters (one map, or one per example); ``u`` is the
            free parameter, :func:`planar_u_hat` makes the map invertible.
        b: ``()`` or ``(B,)`` bias.

    Returns:
        ``(f(z), log |1 + ûᵀψ(z)|)``, shapes ``(B, Z)`` and ``(B,)``.
    """
    u_hat = planar_u_hat(u, w)
    a = (w * z).sum(-1) + b  # (B,)
    h = torch.tanh(a)
    fz = z + u_hat * h.unsqueeze(-1)
    # ψ = h'(a) w, h' = 1 − tanh²; 1 + ûᵀψ > 0 because wᵀû > −1 and h' ∈ (0, 1]
    det = 1.0 + (1.0 - h.pow(2)) * (w * u_hat).sum(-1)
    return fz, torch.log(det.abs() + 1e-12)


def planar_log_det(z: Tensor, u: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """``log |det ∂f/∂z|`` of one planar map at each row of ``z``: ``(B,)`` (see :func:`planar_transform`)."""
    return planar_transform(z, u, w, b)[1]


def _flow(z: Tensor, params: Tensor, z_dim: int) -> tuple[Tensor, Tensor]:
    """``K`` planar maps with parameters ``params`` ``(B, K, 2Z + 1)`` (or ``(K, 2Z + 1)``):
    returns ``z_K`` ``(B, Z)`` and ``Σ_k log |det ∂f_k/∂z_{k−1}|`` ``(B,)``."""
    total = z.new_zeros(z.shape[0])
    for k in range(params.shape[-2]):
        p = params[..., k, :]
        z, ld = planar_transform(z, p[..., :z_dim], p[..., z_dim:2 * z_dim], p[..., 2 * z_dim])
        total = total + ld
    return z, total


class PlanarFlow(nn.Module):
    """``K`` planar maps with their own (global) parameters: ``z_0 (B, Z) -> (z_K, Σ log|det|)``.

    Used on its own to shape a 2-D density; :class:`FlowVAE` computes the same maps with
    parameters that depend on ``x``.
    """

    def __init__(self, latent_dim: int, length: int, *, scale: float = 0.5,
                 generator: torch.Generator | None = None):
        super().__init__()
        z = check_int("latent_dim", latent_dim, min=1)
        k = check_int("length", length, min=1)
        check_memory(f"a planar flow with latent_dim={z}, length={k}", "choose a smaller length",
                     parameters=k * (2 * z + 1))
        self.latent_dim = z
        self.params = nn.Parameter(scale * torch.randn(k, 2 * z + 1, generator=generator))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ArgumentError(f"z must be a (B, Z) tensor with Z = {self.latent_dim} (the flow's latent_dim), "
                                f"got {shape}")
        return _flow(z, self.params, self.latent_dim)


class FlowVAE(VAE):
    """A VAE whose posterior ``q_K(z|x)`` is the encoder's Gaussian pushed through ``K`` planar maps.

    ``q_0(z|x) = N(μ_φ(x), diag σ²_φ(x))`` comes from ``encoder`` as in :class:`~vae_tutorial.models.vae.VAE`;
    the maps' parameters ``(u_k, w_k, b_k)`` come from a second head of the encoder, a
    one-hidden-layer network of width ``flow_hidden`` that reads the image (amortised, as in
    Rezende & Mohamed 2015). The prior is ``p(z) = N(0, I)`` and the ELBO is

        E_{z_0 ~ q_0}[ log p_θ(x|z_K) + log p(z_K) − log q_0(z_0|x) + Σ_k log|det ∂f_k/∂z_{k−1}| ],

    estimated with one draw (``elbo_terms``; ``kl`` is the one-draw estimate of
    ``KL(q_K(z|x) ‖ p(z))``, which has no closed form). :func:`~vae_tutorial.training.train.fit`,
    :func:`~vae_tutorial.maths.losses.elbo` and :func:`~vae_tutorial.maths.losses.iwae_bound` use it like any model.
    :meth:`gaussian_view` gives the same encoder and decoder without the flow, a plain
    :class:`~vae_tutorial.models.vae.VAE` for the tools built for one Gaussian posterior.

    Args:
        encoder: module ``x -> (μ, log σ²)``, each ``(B, Z)``.
        decoder: module ``z -> out`` (with a ``latent_dim``), as for a VAE.
        length: number ``K ≥ 1`` of planar maps.
        flow_hidden: width of the head that outputs the maps' parameters.
        likelihood: as for :class:`~vae_tutorial.models.vae.VAE`.

    The image shape is read from the decoder (``out_shape``, as :class:`~vae_tutorial.models.vae.MLPDecoder`
    has), so that the head knows its input size.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, length: int = 4, *, flow_hidden: int = 64,
                 likelihood: str = "bernoulli"):
        super().__init__(encoder, decoder, likelihood)
        k = check_int("length", length, min=1)
        hidden = check_int("flow_hidden", flow_hidden, min=1)
        d = math.prod(_data_shape(self, "FlowVAE"))
        z = self.latent_dim
        sizes = [d, hidden, k * (2 * z + 1)]
        check_memory(f"a flow head with sizes {sizes}", "choose a smaller flow_hidden or length",
                     parameters=_mlp_parameters(sizes))
        self.length = k
        self.flow_net = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, sizes[-1]))
        # start close to one global flow of modest maps (small output weights, random biases)
        with torch.no_grad():
            self.flow_net[-1].weight.mul_(0.01)
            self.flow_net[-1].bias.normal_(0.0, 0.3)

    def flow_params(self, x: Tensor) -> Tensor:
        """``x (B, ...) ->`` the maps' parameters ``(B, K, 2Z + 1)``: ``u_k, w_k, b_k`` per example."""
        return self.flow_net(x).view(x.shape[0], self.length, 2 * self.latent_dim + 1)

    def posterior_sample(self, x: Tensor, generator: torch.Generator | None = None,
                         samples: int | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``z_K ~ q_K(z|x)`` and return ``(z_K, log q_K(z_K|x))``.

        Shapes ``(B, Z)`` and ``(B,)``, or ``(S, B, Z)`` and ``(S, B)`` with ``samples = S``.
        """
        mu, logvar = self.encode(x)
        params = self.flow_params(x)
        s = 1 if samples is None else check_int("samples", samples, min=1)
        b, z = mu.shape
        mu_s, lv_s = mu.expand(s, b, z).reshape(s * b, z), logvar.expand(s, b, z).reshape(s * b, z)
        z0 = reparameterize(mu_s, lv_s, generator)
        zk, log_det = _flow(z0, params.expand(s, *params.shape).reshape(s * b, *params.shape[1:]), z)
        log_q = gaussian_log_likelihood(z0, mu_s, lv_s) - log_det
        if samples is None:
            return zk, log_q
        return zk.view(s, b, z), log_q.view(s, b)

    def elbo_terms(self, x: Tensor, beta: float = 1.0, *, generator: torch.Generator | None = None) -> ELBOTerms:
        """One-draw ELBO (class docstring): ``elbo = reconstruction − β·kl``, each ``(B,)``."""
        zk, log_q = self.posterior_sample(x, generator)
        rec = self.log_likelihood(x, self.decode(zk))
        kl = log_q - gaussian_log_likelihood(zk, torch.zeros_like(zk), 0.0)
        return ELBOTerms(elbo=rec - beta * kl, reconstruction=rec, kl=kl, kl_per_dim=None)

    def log_importance_weights(self, x: Tensor, k: int, *, generator: torch.Generator | None = None,
                               max_elements: int = 1 << 23):
        """Yield ``log w = log p_θ(x|z) + log p(z) − log q_K(z|x)``, ``z ~ q_K(z|x)``, in chunks ``(c, B)``."""
        b = x.shape[0]
        step = _chunk_size(b, x[0].numel(), k, max_elements)
        for start in range(0, k, step):
            c = min(step, k - start)
            zk, log_q = self.posterior_sample(x, generator, samples=c)
            zf = zk.reshape(c * b, -1)
            xf = x.unsqueeze(0).expand(c, *x.shape).reshape(c * b, *x.shape[1:])
            log_px_z = self.log_likelihood(xf, self.decode(zf)).view(c, b)
            log_pz = gaussian_log_likelihood(zf, torch.zeros_like(zf), 0.0).view(c, b)
            yield log_px_z + log_pz - log_q

    def forward(self, x: Tensor) -> tuple:
        """``x -> (params, z_K, log q_K(z_K|x))`` with ``z_K ~ q_K(z|x)``."""
        zk, log_q = self.posterior_sample(x)
        return self.decode(zk), zk, log_q

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The mean of ``p_θ(x|z)`` at ``z = f_K∘…∘f_1(μ_φ(x))``, the flow applied to the base mean."""
        mu, _ = self.encode(x)
        zk, _ = _flow(mu, self.flow_params(x), self.latent_dim)
        return self.mean(self.decode(zk)).reshape(x.shape)

    def gaussian_view(self) -> VAE:
        """A :class:`~vae_tutorial.models.vae.VAE` sharing this model's encoder and decoder, without the flow.

        Its posterior is the base ``q_0(z|x)``; its generative model ``p_θ(x|z) p(z)`` is this
        model's. The tools for one Gaussian code (e.g. :func:`~vae_tutorial.analysis.amortisation.inference_gaps`)
        take it.
        """
        view = VAE(self.encoder, self.decoder, self.likelihood)
        return view.train(self.training)


class FlowCheckError(VAETutorialError, AssertionError):
    """A student's planar log-determinant differs from the package's (values or gradients)."""


def check_flow_logdet(fn, *, seed: int = 0) -> None:
    """Check a student's ``fn(z, u, w, b) -> log |det ∂f/∂z|`` ``(B,)`` for one planar map.

    ``fn`` receives ``z (B, Z)``, ``u, w (Z,)`` and ``b ()`` in float64, where ``u`` is the *free*
    parameter (``fn`` must apply the ``û`` constraint itself, :func:`planar_u_hat`). Its values
    are compared with :func:`planar_log_det` and with autograd's Jacobian of the map
    (``slogdet``), and its gradients with respect to ``z, u, w, b`` with those of
    :func:`planar_log_det`, on several seeded cases (2-D to 5-D, with ``wᵀu`` both above and
    well below ``−1``, where the constraint matters). Raises :class:`FlowCheckError` naming the
    first case and quantity that differ; prints a line when all pass.
    """
    if not callable(fn):
        raise ArgumentTypeError(f"fn must be a function fn(z, u, w, b) -> (B,) log-determinants, got {fn!r}")
    g = torch.Generator().manual_seed(check_int("seed", seed, min=0))
    cases = []
    for z_dim, scale in ((2, 1.0), (3, 2.0), (5, 0.7)):
        z = torch.randn(7, z_dim, generator=g, dtype=torch.float64)
        u = scale * torch.randn(z_dim, generator=g, dtype=torch.float64)
        w = scale * torch.randn(z_dim, generator=g, dtype=torch.float64)
        cases.append((f"Z={z_dim}, wᵀu={float(w @ u):+.2f}", z, u, w, torch.tensor(0.3, dtype=torch.float64)))
    w = torch.tensor([1.0, -2.0], dtype=torch.float64)  # wᵀu = −5: û differs from u a lot
    cases.append(("Z=2, wᵀu=-5.00 (the û constraint is needed)", torch.randn(7, 2, generator=g,
                  dtype=torch.float64), torch.tensor([-1.0, 2.0], dtype=torch.float64), w,
                  torch.tensor(-0.5, dtype=torch.float64)))
    for name, z, u, w, b in cases:
        ins = [t.clone().requires_grad_(True) for t in (z, u, w, b)]
        want = planar_log_det(*ins)
        try:
            got = fn(*[t.clone().requires_grad_(True) for t in (z, u, w, b)])
        except VAETutorialError:
            raise
        except Exception as e:  # the student's code failed: say where
            raise FlowCheckError(f"case {name}: fn(z, u, w, b) raised {type(e).__name__}: {e}") from e
        if not isinstance(got, Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise FlowCheckError(f"case {name}: fn must return a ({z.shape[0]},) tensor, one log-determinant per "
                                 f"row of z, got {shape}")
        # an independent reference: autograd's Jacobian of the map, row by row
        ref = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(
            lambda r, u=u, w=w, b=b: planar_transform(r.unsqueeze(0), u, w, b)[0][0], row))[1] for row in z])
        if not torch.allclose(got.detach().to(ref.dtype), ref, rtol=1e-6, atol=1e-8):
            hint = ""
            if torch.allclose(got.detach().to(ref.dtype), torch.log((1 + (1 - torch.tanh(z @ w + b) ** 2) * (w @ u)).abs()),
                              rtol=1e-6, atol=1e-8):
                hint = " (it matches the formula with u instead of û: apply planar_u_hat's constraint)"
            raise FlowCheckError(f"case {name}: values differ from log|det J| by autograd: got "
                                 f"{got.detach()[:3].tolist()}, expected {ref[:3].tolist()}{hint}")
        if not got.requires_grad:
            raise FlowCheckError(f"case {name}: the result carries no gradient; compute it with torch operations "
                                 "on z, u, w, b (no .detach(), .item() or NumPy)")
        weights = torch.linspace(0.5, 1.5, z.shape[0], dtype=torch.float64)
        g_want = torch.autograd.grad((want * weights).sum(), ins)
        student_ins = [t.clone().requires_grad_(True) for t in (z, u, w, b)]
        g_got = torch.autograd.grad((fn(*student_ins).to(torch.float64) * weights).sum(), student_ins,
                                    allow_unused=True)
        for arg, a, e in zip("zuwb", g_got, g_want):
            if a is None or not torch.allclose(a, e, rtol=1e-5, atol=1e-7):
                raise FlowCheckError(f"case {name}: the gradient with respect to {arg} differs: got "
                                     f"{None if a is None else a.flatten()[:4].tolist()}, expected "
                                     f"{e.flatten()[:4].tolist()}")
    print(f"check_flow_logdet: values and gradients match in all {len(cases)} cases")
