"""The latent explorer: one slider per latent dimension, a PNG of the decoded code that follows them."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from vae_tutorial import VAE, ConditionalVAE, MLPDecoder, MLPEncoder
from vae_tutorial.widgets import decode_to_png, latent_explorer

SIDE = 8


def tiny_vae(latent_dim=3):
    torch.manual_seed(0)
    shape = (1, SIDE, SIDE)
    return VAE(MLPEncoder(shape, [16], latent_dim), MLPDecoder(latent_dim, [16], shape))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def expected_pixels(model, z, scale):
    mean = model.mean(model.decode(torch.as_tensor(z, dtype=torch.float32)[None]))[0, 0].detach().numpy()
    img = np.round(mean * 255).astype(np.uint8)
    return np.kron(img, np.ones((scale, scale), dtype=np.uint8))


def test_decode_to_png_is_the_decoded_mean_enlarged():
    model = tiny_vae()
    z = torch.tensor([0.5, -1.0, 2.0])
    png = decode_to_png(model, z, scale=3)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    got = pixels(png)
    assert got.shape == (3 * SIDE, 3 * SIDE)
    np.testing.assert_array_equal(got, expected_pixels(model, z, 3))
    assert decode_to_png(model, z[None], scale=3) == png
    with pytest.raises(ValueError, match="one code"):
        decode_to_png(model, torch.zeros(2, 3))


def test_one_slider_per_latent_dimension_and_initial_picture():
    model = tiny_vae(latent_dim=3)
    z0 = torch.tensor([0.2, -0.4, 1.0])
    w = latent_explorer(model, z0=z0, scale=2)
    assert len(w.sliders) == 3
    assert [s.description for s in w.sliders] == ["z1", "z2", "z3"]
    assert [s.value for s in w.sliders] == pytest.approx(z0.tolist())
    assert w.sliders[0].min == -3.0 and w.sliders[0].max == 3.0
    # drawn at construction, so the saved widget state shows it without a kernel
    np.testing.assert_array_equal(pixels(w.image.value), expected_pixels(model, z0, 2))
    assert w.image.format == "png"


def test_moving_a_slider_redraws_the_decoded_code():
    model = tiny_vae(latent_dim=3)
    w = latent_explorer(model, scale=2)
    before = bytes(w.image.value)
    w.sliders[1].value = 2.5
    after = bytes(w.image.value)
    assert after != before
    want = torch.tensor([0.0, 2.5, 0.0])
    torch.testing.assert_close(w.z(), want)
    assert after == decode_to_png(model, want, scale=2)
    np.testing.assert_array_equal(pixels(after), expected_pixels(model, want, 2))


def test_dims_limits_the_sliders_and_keeps_the_rest_of_z0():
    model = tiny_vae(latent_dim=20)
    assert len(latent_explorer(model).sliders) == 16  # at most 16 by default
    z0 = torch.linspace(-1, 1, 20)
    w = latent_explorer(model, z0=z0, dims=2)
    assert len(w.sliders) == 2
    w.sliders[0].value = 1.25
    want = z0.clone()
    want[0] = 1.25
    torch.testing.assert_close(w.z(), want)
    assert bytes(w.image.value) == decode_to_png(model, want, scale=6)


def test_random_and_reset_buttons():
    model = tiny_vae(latent_dim=3)
    w = latent_explorer(model, span=2.0, scale=2)
    start = bytes(w.image.value)
    w.randomize()
    assert not torch.equal(w.z(), torch.zeros(3))
    assert (w.z().abs() <= 2.0).all()
    assert bytes(w.image.value) == decode_to_png(model, w.z(), scale=2)
    w.reset()
    torch.testing.assert_close(w.z(), torch.zeros(3))
    assert bytes(w.image.value) == start


@pytest.mark.parametrize("kwargs, message", [
    ({"z0": torch.zeros(4)}, "z0"),
    ({"dims": 5}, "dims"),
    ({"span": 0.0}, "span"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        latent_explorer(tiny_vae(latent_dim=3), **kwargs)


def test_conditional_vae_gets_a_class_menu():
    torch.manual_seed(0)
    c, z = 3, 2
    model = ConditionalVAE(MLPEncoder(SIDE * SIDE + c, [16], z), MLPDecoder(z + c, [16], (1, SIDE, SIDE)),
                           num_classes=c)
    w = latent_explorer(model, y=1, classes=["a", "b", "c"], scale=2)
    assert len(w.sliders) == 2
    assert bytes(w.image.value) == decode_to_png(model, torch.zeros(2), scale=2, y=1)
    menu = w.children[1].children[0]
    assert menu.description == "class"
    menu.value = 2
    assert bytes(w.image.value) == decode_to_png(model, torch.zeros(2), scale=2, y=2)
