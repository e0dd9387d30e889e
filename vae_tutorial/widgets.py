"""An interactive latent-space explorer: one slider per latent dimension, the decoded image live.

The picture is an ``ipywidgets.Image`` holding PNG bytes (not an ``Output`` widget with a
matplotlib figure), so the widget state saved in an executed notebook carries the picture
and the HTML book shows it without a running kernel. Moving a slider needs a live kernel.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from torch import Tensor

from .models import ConditionalVAE
from .plots import decode_mean, to_image_array

__all__ = ["decode_to_png", "latent_explorer"]

MAX_SLIDERS = 16  # more sliders than this are unusable on a page; fix the rest through z0


def decode_to_png(model, z, scale: int = 4, y=None) -> bytes:
    """PNG bytes of the mean of ``p_θ(x|z)`` for one code ``z`` ``(Z,)`` or ``(1, Z)``.

    The grey-scale image ``(H, W)`` in ``[0, 1]`` is rounded to 8 bits and enlarged ``scale``
    times by pixel repetition (no smoothing), giving ``(scale·H, scale·W)`` pixels.
    ``y`` is the class (int) for a :class:`~vae_tutorial.models.ConditionalVAE`.
    """
    from PIL import Image  # a dependency of matplotlib, so always present

    z = torch.as_tensor(z, dtype=torch.float32)
    if z.dim() == 2 and z.shape[0] == 1:
        z = z[0]
    if z.dim() != 1:
        raise ValueError(f"decode_to_png draws one code: expected z of shape (Z,) or (1, Z), got {tuple(z.shape)}")
    if int(scale) < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    img = to_image_array(decode_mean(model, z[None], y=y))[0]
    pixels = np.round(img * 255.0).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, int(scale), axis=0), int(scale), axis=1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # a 2-D uint8 array is 8-bit grey ("L")
    return buf.getvalue()


def _widgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - ipywidgets is a dependency of the book
        raise ImportError("latent_explorer needs ipywidgets: pip install ipywidgets") from e
    return ipywidgets


def latent_explorer(model, z0=None, span: float = 3.0, step: float = 0.05, dims: int | None = None, y=None,
                    scale: int = 6, classes=None, seed: int = 0, continuous_update: bool = True):
    """A widget that decodes the code set by sliders, one per latent dimension.

    Args:
        model: a trained :class:`~vae_tutorial.models.VAE` (any device).
        z0: the starting code ``(Z,)``; default ``0``, the mean of ``p(z) = N(0, I)``.
        span: each slider runs over ``[−span, span]`` (3: ±3 prior standard deviations).
        step: slider resolution.
        dims: sliders for the first ``dims`` coordinates (default all, at most 16); the
            others stay at their ``z0`` values.
        y: starting class for a :class:`~vae_tutorial.models.ConditionalVAE` (a class menu is added).
        scale: pixel enlargement of the picture (see :func:`decode_to_png`).
        classes: class names for the menu of a conditional model.
        seed: seed of the "random z ~ p(z)" button (reproducible draws).

    Returns:
        an ``ipywidgets.VBox`` with extra attributes ``sliders`` (list of ``FloatSlider``),
        ``image`` (the ``ipywidgets.Image``), ``z()`` (the current code, a ``(Z,)`` tensor),
        ``reset()`` and ``randomize()``. The picture for ``z0`` is drawn at construction,
        so a saved notebook shows it.
    """
    w = _widgets()
    z_dim = int(model.latent_dim)
    if dims is None:
        dims = min(z_dim, MAX_SLIDERS)
    dims = int(dims)
    if not 1 <= dims <= z_dim:
        raise ValueError(f"dims must be between 1 and the latent dimension {z_dim}, got {dims}")
    if span <= 0 or step <= 0:
        raise ValueError(f"span and step must be positive, got span={span}, step={step}")
    start = torch.zeros(z_dim) if z0 is None else torch.as_tensor(z0, dtype=torch.float32).reshape(-1).clone()
    if start.shape != (z_dim,):
        raise ValueError(f"z0 must have shape ({z_dim},), the model's latent dimension; got {tuple(start.shape)}")
    conditional = isinstance(model, ConditionalVAE)
    if conditional and y is None:
        y = 0
    z = start.clone()
    z[:dims] = z[:dims].clamp(-span, span)  # what the sliders can show
    state = {"z": z, "y": None if y is None else int(y), "hold": False}

    image = w.Image(value=decode_to_png(model, z, scale, y=state["y"]), format="png")

    def redraw():
        if not state["hold"]:
            image.value = decode_to_png(model, state["z"], scale, y=state["y"])

    sliders = []
    for i in range(dims):
        s = w.FloatSlider(value=float(z[i]), min=-span, max=span, step=step, description=f"z{i + 1}",
                          continuous_update=continuous_update, readout_format=".2f",
                          layout=w.Layout(width="320px"))

        def on_change(change, i=i):
            state["z"][i] = float(change["new"])
            redraw()

        s.observe(on_change, names="value")
        sliders.append(s)

    def set_values(values: Tensor):
        state["hold"] = True  # one redraw for all sliders, not one per slider
        try:
            for s, v in zip(sliders, values.tolist()):
                s.value = float(min(max(v, -span), span))
        finally:
            state["hold"] = False
        redraw()

    generator = torch.Generator().manual_seed(int(seed))

    def reset(_=None):
        set_values(start[:dims])

    def randomize(_=None):
        set_values(torch.randn(dims, generator=generator))

    reset_button = w.Button(description="reset", tooltip="back to z0")
    random_button = w.Button(description="random z ~ p(z)", tooltip="draw the shown coordinates from N(0, 1)")
    reset_button.on_click(reset)
    random_button.on_click(randomize)
    controls = [reset_button, random_button]
    if conditional:
        names = list(classes) if classes is not None else [str(c) for c in range(model.num_classes)]
        menu = w.Dropdown(options=[(n, c) for c, n in enumerate(names)], value=state["y"], description="class")

        def on_class(change):
            state["y"] = int(change["new"])
            redraw()

        menu.observe(on_class, names="value")
        controls.insert(0, menu)

    columns = [sliders[k:k + 8] for k in range(0, dims, 8)]  # at most 8 per column
    panel = w.HBox([image, *[w.VBox(c) for c in columns]], layout=w.Layout(align_items="center"))
    box = w.VBox([panel, w.HBox(controls)])
    box.sliders = sliders
    box.image = image
    box.z = lambda: state["z"].clone()
    box.reset = reset
    box.randomize = randomize
    return box
