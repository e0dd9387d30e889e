"""Tests for vae_tutorial.evaluation.compare and ConditionalVAE's label_scale."""
import math

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.evaluation.compare import edge_energy, mean_se, per_example_bounds


def test_mean_se_matches_formula():
    v = torch.tensor([1.0, 2.0, 4.0, 7.0])
    m, se = mean_se(v)
    assert m == pytest.approx(3.5)
    s = math.sqrt(sum((a - 3.5) ** 2 for a in [1, 2, 4, 7]) / 3)
    assert se == pytest.approx(s / 2)
    with pytest.raises(ValueError):
        mean_se(torch.tensor([1.0]))


def test_edge_energy_constant_step_and_blur():
    flat = torch.full((1, 1, 6, 6), 0.3)
    assert edge_energy(flat).item() == 0.0
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # one vertical edge: 1 of 3 horizontal differences per row is 1
    assert edge_energy(step).item() == pytest.approx(1 / 3)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 12, 12, generator=g)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    assert (edge_energy(blurred) < edge_energy(x)).all()
    with pytest.raises(ValueError):
        edge_energy(torch.zeros(4, 4))


def _tiny_data(n=12):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, 28, 28, generator=g)
    return vt.data.ImageDataset(images, torch.arange(n) % 10, classes=[str(i) for i in range(10)],
                                name="tiny", split="test", binarize="dynamic")


def test_per_example_bounds_shapes_order_and_agreement_with_evaluate():
    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(784, [32], 4), vt.MLPDecoder(4, [32], (1, 28, 28)))
    data = _tiny_data()
    out = per_example_bounds(model, data, k=20, seed=3, batch_size=5, device="cpu")
    assert out["elbo"].shape == (12,) and out["log_px"].shape == (12,)
    assert out["elbo"].dtype == torch.float64
    # the IWAE bound with k = 20 is tighter than a one-sample ELBO on average
    assert out["log_px"].mean() > out["elbo"].mean()
    ref = vt.evaluate_model(model, data, k=20, batch_size=5, device="cpu", seed=3)
    assert float(out["elbo"].mean()) == pytest.approx(ref["elbo"], rel=1e-5)
    assert float(-out["log_px"].mean()) == pytest.approx(ref["nll"], rel=1e-5)


def test_per_example_bounds_conditional_uses_labels():
    torch.manual_seed(0)
    cvae = vt.ConditionalVAE(vt.MLPEncoder(794, [32], 4), vt.MLPDecoder(14, [32], (1, 28, 28)),
                             num_classes=10)
    out = per_example_bounds(cvae, _tiny_data(), k=5, device="cpu")
    assert torch.isfinite(out["log_px"]).all()


def test_label_scale_scales_the_onehot_and_is_validated():
    torch.manual_seed(0)
    enc, dec = vt.MLPEncoder(794, [8], 2), vt.MLPDecoder(12, [8], (1, 28, 28))
    cvae = vt.ConditionalVAE(enc, dec, num_classes=10, label_scale=5.0)
    z = torch.zeros(2, 2)
    seen = {}
    dec.register_forward_hook(lambda m, inp, out: seen.setdefault("in", inp[0]))
    cvae.decode(z, torch.tensor([3, 7]))
    assert seen["in"][0, 2 + 3].item() == 5.0 and seen["in"][1, 2 + 7].item() == 5.0
    assert seen["in"][:, 2:].sum().item() == 10.0
    assert vt.ConditionalVAE(enc, dec, num_classes=10).label_scale == 1.0
    with pytest.raises(ValueError):
        vt.ConditionalVAE(enc, dec, num_classes=10, label_scale=0.0)
