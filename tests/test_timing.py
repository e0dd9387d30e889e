"""vae_tutorial.training.timing: the operation count of a training step (no timing asserts here)."""
from __future__ import annotations

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.training.timing import training_step_flops

D, H, Z = 784, 40, 3


def mlp_vae():
    torch.manual_seed(0)
    return vt.VAE(vt.MLPEncoder((1, 28, 28), [H], Z), vt.MLPDecoder(Z, [H], (1, 28, 28)))


def batch(b):
    return torch.rand(b, 1, 28, 28, generator=torch.Generator().manual_seed(1)).round()


def test_mlp_count_is_the_hand_count():
    # Four dense layers D→H, H→2Z (μ and log σ²), Z→H, H→D. Forward: one multiply-add per
    # weight and image. Backward: the same again for the weight gradients, and once more for
    # the gradient with respect to each layer's input, except the first layer's (x needs none).
    macs = D * H + H * 2 * Z + Z * H + H * D
    per_image = 2 * (macs + macs + (macs - D * H))  # a multiply-add is two operations
    assert training_step_flops(mlp_vae(), batch(8)) == 8 * per_image


def test_conv_count_includes_the_convolutions_forward_and_backward():
    torch.manual_seed(0)
    model = vt.VAE(vt.ConvEncoder(Z), vt.ConvDecoder(Z))
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    # (C_in·k²) multiply-adds per output value of a convolution; for a transposed one, per
    # input value times C_out: both are C_in·C_out·k² per position of the smaller grid.
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, (i[0].shape, o.shape)))
             for m in convs]
    model.decode(model.encode(batch(1))[0])
    for h in hooks:
        h.remove()
    conv_macs = []
    for m in convs:
        (_, _, hi, wi), (_, _, ho, wo) = sizes[m]
        k = m.kernel_size[0] * m.kernel_size[1]
        cells = ho * wo if isinstance(m, torch.nn.Conv2d) else hi * wi
        conv_macs.append(m.in_channels * m.out_channels * k * cells)
    dense_macs = sum(m.in_features * m.out_features for m in dense)
    first = conv_macs[0]  # the first convolution reads x: no input gradient
    per_image = 2 * (3 * (sum(conv_macs) + dense_macs) - first)
    assert training_step_flops(model, batch(4)) == 4 * per_image


def test_count_is_linear_in_the_batch_and_independent_of_the_values():
    model = mlp_vae()
    assert training_step_flops(model, batch(6)) == 3 * training_step_flops(model, batch(2))
    assert training_step_flops(model, torch.zeros(2, 1, 28, 28)) == training_step_flops(model, batch(2))


def test_counting_leaves_the_model_and_the_random_state_alone():
    model = mlp_vae().eval()
    loss = -vt.elbo(model, batch(2)).elbo.mean()
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    weights = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    training_step_flops(model, batch(4))
    assert torch.equal(torch.rand(3), expected), "the global random state moved"
    assert not model.training, "eval mode was not restored"
    for p, g, w in zip(model.parameters(), grads, weights):
        assert torch.equal(p.grad, g) and torch.equal(p.detach(), w)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_count_is_the_same_on_a_gpu():
    model = mlp_vae()
    on_cpu = training_step_flops(model, batch(4))
    assert training_step_flops(model.cuda(), batch(4)) == on_cpu
