"""The latent explorer: one slider per latent dimension, a PNG of the decoded code that follows them."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from vae_tutorial import VAE, ConditionalVAE, MLPDecoder, MLPEncoder
from vae_tutorial.display.widgets import decode_to_png, latent_explorer

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


# --- the kernel-free HTML version ------------------------------------------------------------

def _spec(page: str) -> dict:
    import json
    import re
    return json.loads(re.search(r'class="vae-explorer-spec">(.*?)</script>', page).group(1))


def _floats(b64: str, dtype: str) -> np.ndarray:
    import base64
    return np.frombuffer(base64.b64decode(b64), dtype="<f2" if dtype == "float16" else "<f4").astype(np.float64)


def test_displayed_explorer_carries_a_live_widget_and_its_html():
    w = latent_explorer(tiny_vae(), z0=torch.tensor([0.5, -1.0, 2.0]), scale=2)
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # Jupyter: the live widget
    page = bundle["text/html"]  # the book: decoded in the browser
    assert page == w.html()
    assert '<div class="vae-explorer"' in page and "<script>" in page and "http" not in page.split("<script>")[-1]
    spec = _spec(page)
    assert spec["shape"] == [SIDE, SIDE] and spec["dims"] == 3 and spec["scale"] == 2
    assert spec["z"] == pytest.approx([0.5, -1.0, 2.0]) and spec["z0"] == spec["z"]
    assert spec["likelihood"] == "bernoulli" and spec["classes"] is None
    # the page follows the sliders: displayed again after a move, it starts from the new code
    w.sliders[0].value = -2.0
    moved = _spec(w._repr_mimebundle_()["text/html"])
    assert moved["z"] == pytest.approx([-2.0, -1.0, 2.0]) and moved["z0"] == pytest.approx([0.5, -1.0, 2.0])
    assert w._repr_mimebundle_()["text/html"] == w._repr_mimebundle_()["text/html"]  # no random ids


def test_embedded_weights_and_check_values_reproduce_the_decoder():
    from vae_tutorial.display.widgets import HTML_TOLERANCE, _decoder_layers, _numpy_decode, explorer_html
    model = tiny_vae()
    z = torch.tensor([0.3, -0.7, 1.1])
    spec = _spec(explorer_html(model, z, scale=2))
    assert spec["dtype"] == "float16"
    flat = _floats(spec["weights"], spec["dtype"])
    linears = [m for m in model.decoder.net if isinstance(m, torch.nn.Linear)]
    assert flat.size == sum(m.weight.numel() + m.bias.numel() for m in linears)
    params, offset = [], 0
    for layer, m in zip([s for s in spec["layers"] if s["op"] == "linear"], linears):
        assert layer["offset"] == offset
        n = layer["in"] * layer["out"]
        params += [flat[offset:offset + n].reshape(layer["out"], layer["in"]), flat[offset + n:offset + n + layer["out"]]]
        offset += n + layer["out"]
    # what the page computes (float16 weights, float64 arithmetic) against PyTorch (float32)
    want = model.mean(model.decode(z[None]))[0].detach().reshape(-1).double().numpy()
    got = _numpy_decode(_decoder_layers(model), params, z[None].double().numpy(), "bernoulli")[0]
    assert np.abs(got - want).max() <= HTML_TOLERANCE
    np.testing.assert_allclose(_floats(spec["check"]["mean"], "float32"), want, atol=1e-6)
    moved = spec["check"]["moved"]
    assert moved["slider"] == 0 and moved["value"] == pytest.approx(1.3)  # one unit away, on the step grid
    z_moved = z.clone()
    z_moved[0] = moved["value"]
    np.testing.assert_allclose(_floats(moved["mean"], "float32"),
                               model.mean(model.decode(z_moved[None]))[0].detach().reshape(-1).numpy(), atol=1e-6)


def test_weights_float16_cannot_carry_are_sent_as_float32():
    from vae_tutorial.display.widgets import explorer_html
    model = tiny_vae()
    with torch.no_grad():
        model.decoder.net[-1].weight.mul_(300.0)  # logits of hundreds: float16 rounding shows
    z = torch.tensor([0.01, 0.02, -0.01])
    spec = _spec(explorer_html(model, z))
    assert spec["dtype"] == "float32"
    assert _floats(spec["weights"], "float32")[:3] == pytest.approx(model.decoder.net[0].weight.reshape(-1)[:3].tolist())


def test_conditional_html_has_the_class_menu_and_names_cannot_close_the_script():
    from vae_tutorial.display.widgets import explorer_html
    torch.manual_seed(0)
    model = ConditionalVAE(MLPEncoder(SIDE * SIDE + 2, [16], 2), MLPDecoder(2 + 2, [16], (1, SIDE, SIDE)),
                           num_classes=2)
    page = explorer_html(model, torch.zeros(2), y=1, classes=["</script><b>", "b"])
    assert page.count("</script>") == 2  # the spec's and the code's own
    spec = _spec(page)
    assert spec["classes"] == ["</script><b>", "b"] and spec["y"] == 1
    want = model.mean(model.decode(torch.zeros(1, 2), torch.tensor([1])))[0].detach().reshape(-1).numpy()
    np.testing.assert_allclose(_floats(spec["check"]["mean"], "float32"), want, atol=1e-6)


def test_no_html_for_decoders_the_page_cannot_evaluate():
    from vae_tutorial import ConvDecoder, ConvEncoder
    from vae_tutorial.display.widgets import explorer_html
    torch.manual_seed(0)
    conv = VAE(ConvEncoder(2), ConvDecoder(2))
    assert explorer_html(conv, torch.zeros(2)) is None
    w = latent_explorer(conv, scale=1)
    bundle = w._repr_mimebundle_()
    assert "text/html" not in bundle and "application/vnd.jupyter.widget-view+json" in bundle
