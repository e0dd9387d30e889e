"""A model's identity is its full configuration (issue 21, root cause 1).

For every model class and every constructor argument, a checkpoint written by one value is
refused, naming the difference, when training resumes with another; the same settings
resume. Red-team cases K09 (rate floor), K10 (diffusion schedule, a buffer), K11 (a fixed
observation variance, a buffer) and K14 (a custom objective) are among them.
"""
from __future__ import annotations

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.models.autoregressive import PixelCNNDecoder, PixelVAE
from vae_tutorial.models.diffusion import DiffusionModel
from vae_tutorial.errors import ResumeMismatchError
from vae_tutorial.models.hierarchical import HierarchicalVAE
from vae_tutorial.training.identity import identity_differences, model_identity

SMALL = (1, 8, 8)


def _vae(likelihood="bernoulli", gaussian_logvar="learned", enc_hidden=(8,), dec_hidden=(8,), latent_dim=2):
    return vt.VAE(vt.MLPEncoder(SMALL, list(enc_hidden), latent_dim),
                  vt.MLPDecoder(latent_dim, list(dec_hidden), SMALL), likelihood, gaussian_logvar=gaussian_logvar)


def _conv(channels=(4, 8), hidden=16, latent_dim=2):
    return vt.VAE(vt.ConvEncoder(latent_dim, channels, hidden), vt.ConvDecoder(latent_dim, channels[::-1], hidden))


def _cvae(num_classes=3, label_scale=1.0, likelihood="bernoulli"):
    return vt.ConditionalVAE(vt.MLPEncoder(64 + num_classes, [8], 2),
                             vt.MLPDecoder(2 + num_classes, [8], SMALL), num_classes, likelihood,
                             label_scale=label_scale)


def _hvae(latent_dims=(2, 2), hidden=(8, 8), inference="top_down", merge="precision", activation="silu",
          skip=False, logvar_bound=10.0):
    return HierarchicalVAE.mlp(latent_dims, hidden, in_features=SMALL, inference=inference, merge=merge,
                               activation=activation, skip=skip, logvar_bound=logvar_bound)


def _pixel(channels=4, layers=1, kernel_size=3, hidden_kernel=3, z_hidden=8, rate_floor=0.0):
    return PixelVAE(vt.MLPEncoder(SMALL, [8], 2),
                    PixelCNNDecoder(2, SMALL, channels=channels, layers=layers, kernel_size=kernel_size,
                                    hidden_kernel=hidden_kernel, z_hidden=z_hidden), rate_floor=rate_floor)


def _diffusion(steps=4, hidden=8, logsnr_min=-6.0, logsnr_max=6.0, time_features=4):
    return DiffusionModel(SMALL, steps=steps, hidden=hidden, logsnr_min=logsnr_min, logsnr_max=logsnr_max,
                          time_features=time_features)


CASES = [  # (builder, argument, another value)
    (_vae, "likelihood", "continuous_bernoulli"),
    (_vae, "enc_hidden", (6,)),
    (_vae, "dec_hidden", (8, 8)),
    (_vae, "latent_dim", 3),
    (_conv, "channels", (4, 4)),
    (_conv, "hidden", 8),
    (_cvae, "num_classes", 4),
    (_cvae, "label_scale", 2.0),
    (_hvae, "latent_dims", (2, 3)),
    (_hvae, "hidden", (8, 6)),
    (_hvae, "inference", "bottom_up"),
    (_hvae, "merge", "residual"),
    (_hvae, "activation", "relu"),
    (_hvae, "skip", True),
    (_hvae, "logvar_bound", 5.0),  # the same weights, other variances: refused by the identity alone
    (_pixel, "channels", 6),
    (_pixel, "layers", 2),
    (_pixel, "kernel_size", 5),
    (_pixel, "hidden_kernel", 1),
    (_pixel, "z_hidden", 6),
    (_pixel, "rate_floor", 5.0),  # K09
    (_diffusion, "steps", 5),
    (_diffusion, "hidden", 6),
    (_diffusion, "logsnr_min", -9.0),  # K10
    (_diffusion, "logsnr_max", 5.0),
    (_diffusion, "time_features", 6),
]


def _data(builder, n=16):
    shape = (1, 28, 28) if builder is _conv else SMALL
    x = (torch.rand(n, *shape, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    return torch.utils.data.TensorDataset(x, torch.arange(n) % 3) if builder is _cvae else x


def _fit(model, data, ckpt, epochs, **kw):
    return vt.fit(model, data, epochs=epochs, batch_size=8, checkpoint=ckpt, seed=0, progress=False, **kw)


@pytest.mark.parametrize("builder, arg, value", CASES, ids=[f"{b.__name__[1:]}-{a}" for b, a, _ in CASES])
def test_a_changed_constructor_argument_is_refused_on_resume(builder, arg, value, tmp_path):
    ckpt = tmp_path / "ck.pt"
    data = _data(builder)
    _fit(builder(), data, ckpt, 1)
    changed = builder(**{arg: value})
    if builder is _cvae and arg == "num_classes":
        data = torch.utils.data.TensorDataset(data.tensors[0], data.tensors[1] % 4)
    with pytest.raises(ResumeMismatchError, match="another model|does not fit|architecture|made with") as e:
        _fit(changed, data, ckpt, 2)
    assert str(ckpt) in str(e.value)
    _fit(builder(), _data(builder), ckpt, 2)  # the same settings resume


def test_a_fixed_observation_variance_is_not_replaced_by_the_checkpoints(tmp_path):  # K11
    ckpt = tmp_path / "ck.pt"
    x = torch.rand(16, *SMALL, generator=torch.Generator().manual_seed(0))
    _fit(_vae("gaussian", 0.0), x, ckpt, 1)
    model = _vae("gaussian", -3.0)
    with pytest.raises(ResumeMismatchError, match="buffer obs_logvar"):
        _fit(model, x, ckpt, 2)
    assert float(model.obs_logvar) == -3.0  # the model asked for is left as it was


def test_a_custom_objective_is_part_of_the_run(tmp_path):  # K14
    ckpt = tmp_path / "ck.pt"
    x = _data(_vae)
    _fit(_vae(), x, ckpt, 1)

    def half_kl(model, x, beta, y=None, generator=None):
        return vt.elbo(model, x, beta / 2, y=y, generator=generator)

    with pytest.raises(ResumeMismatchError, match="elbo_fn"):
        _fit(_vae(), x, ckpt, 2, elbo_fn=half_kl)


def test_identity_names_settings_and_buffers():
    a, b = model_identity(_pixel()), model_identity(_pixel(rate_floor=5.0))
    assert a["settings"]["rate_floor"] == 0.0
    assert "setting rate_floor: 0.0 (checkpoint) vs 5.0 (now)" in identity_differences(a, b)
    d1, d2 = model_identity(_diffusion()), model_identity(_diffusion(logsnr_min=-9.0))
    assert any(s.startswith("buffer logsnr") for s in identity_differences(d1, d2))
    assert identity_differences(d1, model_identity(_diffusion())) == []
