"""An interactive latent-space explorer: one slider per latent dimension, the decoded image live.

With a Python kernel (Jupyter, Colab, VS Code) the explorer is an ``ipywidgets.VBox``: moving
a slider decodes the code with the model, in Python. Without one (the HTML book, a notebook
opened without its kernel) the same output also carries a self-contained HTML version: the
decoder's weights, base64-encoded (float16 when that is exact enough, else float32), and a
small script (``explorer.js``) that evaluates the fully connected decoder in plain
JavaScript and draws the mean of ``p_θ(x|z)`` on a canvas. It needs no network. A front end
shows whichever it prefers: Jupyter picks the live widget, the book (``_config.yml``,
``nb_mime_priority_overrides``) the HTML.
"""
from __future__ import annotations

import base64
import functools
import html
import io
import json
from importlib import resources

import ipywidgets
import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ArgumentError, ArgumentTypeError, check_float, check_int
from ..models.vae import ConditionalVAE, MLPDecoder
from .plots import decode_mean, to_image_array

__all__ = ["decode_to_png", "explorer_html", "latent_explorer"]

MAX_SLIDERS = 16  # more sliders than this are unusable on a page; fix the rest through z0
# float16 weights are used when, at every probe code, the page's pixels stay this close to
# PyTorch's (half the 1e-3 the tests allow); float32 otherwise
HTML_TOLERANCE = 5e-4
MAX_HTML_WEIGHTS = 4_000_000  # parameters; a larger decoder gets no kernel-free version

def decode_to_png(model, z, scale: int = 4, y=None) -> bytes:
    """PNG bytes of the mean of ``p_θ(x|z)`` for one code ``z`` ``(Z,)`` or ``(1, Z)``.

    The grey-scale image ``(H, W)`` in ``[0, 1]`` is rounded to 8 bits and enlarged ``scale``
    times by pixel repetition (no smoothing), giving ``(scale·H, scale·W)`` pixels.
    ``y`` is the class (int) for a :class:`~vae_tutorial.models.vae.ConditionalVAE`.
    """
    from PIL import Image  # a dependency of matplotlib, so always present

    scale = check_int("scale", scale)  # the type; the range below
    z = torch.as_tensor(z, dtype=torch.float32)
    if z.dim() == 2 and z.shape[0] == 1:
        z = z[0]
    if z.dim() != 1:
        raise ArgumentError(f"decode_to_png draws one code: expected z of shape (Z,) or (1, Z), got {tuple(z.shape)}")
    if int(scale) < 1:
        raise ArgumentError(f"scale must be a positive integer, got {scale}")
    img = to_image_array(decode_mean(model, z[None], y=y))[0]
    pixels = np.round(img * 255.0).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, int(scale), axis=0), int(scale), axis=1)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # a 2-D uint8 array is 8-bit grey ("L")
    return buf.getvalue()


# --- the kernel-free HTML version -------------------------------------------------------------

_ACTIVATIONS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.LeakyReLU: "leaky_relu"}


def _decoder_layers(model) -> list[tuple[str, nn.Module]] | None:
    """The decoder as a list of ``(op, module)`` that explorer.js can evaluate, or ``None``.

    Only an :class:`~vae_tutorial.models.vae.MLPDecoder` (``Linear`` layers and element-wise
    activations, its output reshaped to one grey-scale ``(1, H, W)`` image) qualifies.
    """
    decoder = getattr(model, "decoder", None)
    if type(decoder).forward is not MLPDecoder.forward or not isinstance(decoder, MLPDecoder):
        return None
    if len(decoder.out_shape) not in (2, 3) or (len(decoder.out_shape) == 3 and decoder.out_shape[0] != 1):
        return None
    layers = []
    for module in decoder.net:
        if isinstance(module, nn.Linear):
            layers.append(("linear", module))
        elif type(module) in _ACTIVATIONS:
            layers.append((_ACTIVATIONS[type(module)], module))
        elif not isinstance(module, nn.Identity):
            return None
    return layers


def _numpy_decode(layers, params: list[np.ndarray], x: np.ndarray, likelihood: str) -> np.ndarray:
    """What explorer.js computes, in float64 NumPy: inputs ``(B, Z[+C])`` -> pixels ``(B, H·W)``."""
    it = iter(params)
    for op, module in layers:
        if op == "linear":
            weight, bias = next(it), next(it)
            x = x @ weight.T + bias
        elif op == "relu":
            x = np.maximum(x, 0.0)
        elif op == "leaky_relu":
            x = np.where(x > 0, x, module.negative_slope * x)
        elif op == "tanh":
            x = np.tanh(x)
        elif op == "sigmoid":
            x = 1.0 / (1.0 + np.exp(-x))
    if likelihood == "bernoulli":
        mean = 1.0 / (1.0 + np.exp(-x))
    elif likelihood == "continuous_bernoulli":
        small = np.abs(x) < 0.1
        safe = np.where(small, 1.0, x)
        mean = np.where(small, 0.5 + x / 12 - x**3 / 720, -1.0 / np.expm1(-safe) - 1.0 / safe)
    else:
        mean = x
    return np.clip(mean, 0.0, 1.0)


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f2" if dtype == "float16" else "<f4").tobytes()).decode()


@functools.lru_cache(maxsize=1)
def _script() -> str:
    return resources.files(__package__).joinpath("explorer.js").read_text(encoding="utf-8")


_STYLE = """<style>
.vae-explorer { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 0.9rem; margin: 0.5em 0; }
.vae-explorer-panel { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5em 1.5em; }
.vae-explorer-image { image-rendering: pixelated; border: 1px solid #bbb; max-width: 100%; height: auto; }
.vae-explorer-column { display: flex; flex-direction: column; gap: 0.2em; min-width: 0; }
.vae-explorer-row { display: flex; align-items: center; gap: 0.5em; margin: 0; font-weight: normal; }
.vae-explorer-row input[type=range] { width: 12em; max-width: 55vw; margin: 0; }
.vae-explorer-name { min-width: 2.2em; }
.vae-explorer-readout { min-width: 3.2em; font-variant-numeric: tabular-nums; text-align: right; }
.vae-explorer-controls { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5em; margin-top: 0.6em; }
.vae-explorer-controls button, .vae-explorer-controls select { font: inherit; padding: 0.15em 0.7em; }
.vae-explorer-note { color: #666; font-size: 0.8rem; margin-top: 0.4em; }
.vae-explorer-warning { color: #b00; }
</style>"""


def explorer_html(model, z, z0=None, span: float = 3.0, step: float = 0.05, dims: int | None = None,
                  y=None, scale: int = 6, classes=None, seed: int = 0) -> str | None:
    """A self-contained HTML latent explorer that decodes in the browser, or ``None``.

    The page gets the decoder's weights (base64; float16 when, on a set of probe codes, its
    pixels stay within ``HTML_TOLERANCE`` of PyTorch's float32 ones, float32 otherwise) and
    ``explorer.js``, which evaluates the decoder in plain JavaScript: sliders, reset, "random
    z ~ p(z)" and, for a :class:`~vae_tutorial.models.vae.ConditionalVAE`, a class menu all work
    with no kernel and no network. ``z`` ``(Z,)`` is the code shown first; ``z0`` (default
    ``z``) the one "reset" returns to. Other arguments as for :func:`latent_explorer`.

    Returns ``None`` for a decoder explorer.js cannot evaluate (anything but an
    :class:`~vae_tutorial.models.vae.MLPDecoder` of grey-scale images) or one with more than
    ``MAX_HTML_WEIGHTS`` parameters.

    For tests, the spec also holds ``check``: PyTorch's decoded mean for ``z`` (the page
    compares its first picture with it and warns when they differ) and for one slider move.
    """
    span = check_float("span", span, min=0.0, min_open=True)
    step = check_float("step", step, min=0.0, min_open=True)
    scale = check_int("scale", scale, min=1)
    seed = check_int("seed", seed, min=0)
    z_dim = getattr(model, "latent_dim", None)
    if dims is not None and isinstance(z_dim, int):
        dims = check_int("dims", dims, min=1, max=z_dim)
    for name, value in (("z", z), ("z0", z0)):
        if value is not None and isinstance(z_dim, int) and torch.as_tensor(value).numel() != z_dim:
            raise ArgumentError(f"{name} must have shape ({z_dim},), the model's latent dimension; "
                                f"got {tuple(torch.as_tensor(value).shape)}")
    layers = _decoder_layers(model)
    if layers is None:
        return None
    params = [p.detach().to("cpu", torch.float64).numpy() for op, m in layers if op == "linear"
              for p in (m.weight, m.bias)]
    if sum(p.size for p in params) > MAX_HTML_WEIGHTS:
        return None
    z = torch.as_tensor(z, dtype=torch.float32).reshape(-1).cpu()
    z0 = z.clone() if z0 is None else torch.as_tensor(z0, dtype=torch.float32).reshape(-1).cpu()
    z_dim = int(model.latent_dim)
    dims = min(z_dim, MAX_SLIDERS) if dims is None else int(dims)
    conditional = isinstance(model, ConditionalVAE)
    n_classes = model.num_classes if conditional else 0
    y = (0 if y is None else int(y)) if conditional else None
    out_shape = model.decoder.out_shape
    height, width = out_shape[-2:]

    def onehot(labels):
        return np.eye(n_classes)[labels] if conditional else np.zeros((len(labels), 0))

    # Probe codes: the first picture, the origin, prior draws within the sliders' range, and
    # corners of the sliders' box (far from 0 the hidden activations, and so the rounding
    # errors of float16 weights, are largest).
    generator = torch.Generator().manual_seed(1234)
    draws = torch.randn(256, z_dim, generator=generator).clamp(-span, span)
    corners = span * torch.sign(torch.randn(64, z_dim, generator=generator))
    if dims <= 6:  # all of them
        grid = torch.cartesian_prod(*[torch.tensor([-span, span])] * dims).reshape(-1, dims)
        corners = z.repeat(len(grid), 1)
        corners[:, :dims] = grid
    probes = torch.cat([z[None], torch.zeros(1, z_dim), draws, corners])
    labels = [y or 0] * 2 + [k % max(n_classes, 1) for k in range(len(probes) - 2)]
    want = to_image_array(decode_mean(model, probes, y=torch.tensor(labels) if conditional else None))
    want = want.reshape(len(probes), -1).astype(np.float64)
    inputs = np.concatenate([probes.double().numpy(), onehot(labels)], axis=1)
    dtype = "float16"
    rounded = [p.astype(np.float16).astype(np.float64) for p in params]
    if np.abs(_numpy_decode(layers, rounded, inputs, model.likelihood) - want).max() > HTML_TOLERANCE:
        dtype = "float32"

    offsets, layer_specs, offset = [], [], 0
    for op, module in layers:
        entry = {"op": op}
        if op == "linear":
            entry.update({"in": module.in_features, "out": module.out_features, "offset": offset})
            offset += module.in_features * module.out_features + module.out_features
        elif op == "leaky_relu":
            entry["slope"] = float(module.negative_slope)
        layer_specs.append(entry)
    flat = np.concatenate([p.reshape(-1) for p in params])

    # One slider move for tests: the first slider, one unit of prior standard deviation away.
    moved = z.clone()
    target = float(z[0]) + 1.0 if float(z[0]) + 1.0 <= span else float(z[0]) - 1.0
    moved_value = round(round(target / step) * step, 6)  # on the slider grid
    moved[0] = moved_value
    check_means = to_image_array(decode_mean(model, torch.stack([z, moved]), y=y)).reshape(2, -1)
    spec = {
        "shape": [int(height), int(width)], "scale": int(scale), "span": float(span), "step": float(step),
        "dims": dims, "z": z.tolist(), "z0": z0.tolist(), "y": y, "seed": int(seed),
        "classes": ([str(c) for c in classes] if classes is not None else [str(c) for c in range(n_classes)])
        if conditional else None,
        "likelihood": model.likelihood, "dtype": dtype, "layers": layer_specs, "weights": _b64(flat, dtype),
        "check": {"tolerance": 1e-3, "mean": _b64(check_means[0], "float32"),
                  "moved": {"slider": 0, "value": moved_value, "mean": _b64(check_means[1], "float32")}},
    }
    # "<" escaped so that no string in the spec can close the <script> element
    spec_json = json.dumps(spec, separators=(",", ":")).replace("<", "\\u003c")
    label = html.escape(f"Latent explorer: {dims} sliders for z, the decoded image")
    return (f'{_STYLE}\n<div class="vae-explorer" role="group" aria-label="{label}">'
            f'<p>The latent explorer needs JavaScript (in Jupyter: run the cell, or trust the notebook).</p>'
            f'<script type="application/json" class="vae-explorer-spec">{spec_json}</script>'
            f"<script>\n{_script()}</script></div>")


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class _LatentExplorer(ipywidgets.VBox):
    """The ipywidgets explorer, whose output also carries the kernel-free HTML version.

    Works with ipywidgets 8 (which displays a widget through ``_repr_mimebundle_``) and 7.7
    (Colab's preinstalled version, which displays it through ``_ipython_display_``).
    """

    def _repr_mimebundle_(self, **kwargs):
        parent = getattr(super(), "_repr_mimebundle_", None)
        if parent is not None:  # ipywidgets >= 8
            bundle = parent(**kwargs)
        else:  # ipywidgets 7: the bundle its _ipython_display_ would show
            bundle = {"text/plain": repr(self)[:110]}
            if self._view_name is not None:
                bundle[WIDGET_VIEW] = {"version_major": 2, "version_minor": 0, "model_id": self._model_id}
        page = self.html() if bundle is not None and WIDGET_VIEW in bundle else None
        if page is not None:
            bundle["text/html"] = page
        return bundle

    if not hasattr(ipywidgets.Widget, "_repr_mimebundle_"):  # ipywidgets 7

        def _ipython_display_(self, **kwargs):
            from IPython.display import display

            display(self._repr_mimebundle_(), raw=True)
            handle_displayed = getattr(self, "_handle_displayed", None)  # 7's on-display callbacks
            if self._view_name is not None and handle_displayed is not None:
                handle_displayed(**kwargs)


def latent_explorer(model, z0=None, span: float = 3.0, step: float = 0.05, dims: int | None = None, y=None,
                    scale: int = 6, classes=None, seed: int = 0, continuous_update: bool = True):
    """A widget that decodes the code set by sliders, one per latent dimension.

    Args:
        model: a trained :class:`~vae_tutorial.models.vae.VAE` (any device).
        z0: the starting code ``(Z,)``; default ``0``, the mean of ``p(z) = N(0, I)``.
        span: each slider runs over ``[−span, span]`` (3: ±3 prior standard deviations).
        step: slider resolution.
        dims: sliders for the first ``dims`` coordinates (default all, at most 16); the
            others stay at their ``z0`` values.
        y: starting class for a :class:`~vae_tutorial.models.vae.ConditionalVAE` (a class menu is added).
        scale: pixel enlargement of the picture (see :func:`decode_to_png`).
        classes: class names for the menu of a conditional model.
        seed: seed of the "random z ~ p(z)" button (reproducible draws).

    Returns:
        an ``ipywidgets.VBox`` with extra attributes ``sliders`` (list of ``FloatSlider``),
        ``image`` (the ``ipywidgets.Image``), ``z()`` (the current code, a ``(Z,)`` tensor),
        ``reset()``, ``randomize()`` and ``html()`` (:func:`explorer_html` for the current
        code, or ``None``). The picture for ``z0`` is drawn at construction, so a saved
        notebook shows it. Displayed, its output holds both the live widget and, for an
        :class:`~vae_tutorial.models.vae.MLPDecoder`, the HTML version that needs no kernel.
    """
    w = ipywidgets
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "latent_dim", None), int):
        raise ArgumentTypeError(f"model must be a vae_tutorial model with a latent_dim (e.g. a VAE), "
                                f"got {type(model).__name__}")
    span = check_float("span", span)  # the types; the ranges below
    step = check_float("step", step)
    scale = check_int("scale", scale, min=1)
    seed = check_int("seed", seed, min=0)
    z_dim = int(model.latent_dim)
    if dims is None:
        dims = min(z_dim, MAX_SLIDERS)
    dims = check_int("dims", dims)
    if not 1 <= dims <= z_dim:
        raise ArgumentError(f"dims must be between 1 and the latent dimension {z_dim}, got {dims}")
    if span <= 0 or step <= 0:
        raise ArgumentError(f"span and step must be positive, got span={span}, step={step}")
    start = torch.zeros(z_dim) if z0 is None else torch.as_tensor(z0, dtype=torch.float32).reshape(-1).cpu().clone()
    if start.shape != (z_dim,):
        raise ArgumentError(f"z0 must have shape ({z_dim},), the model's latent dimension; got {tuple(start.shape)}")
    conditional = isinstance(model, ConditionalVAE)
    if conditional and y is None:
        y = 0
    z = start.clone()
    z[:dims] = z[:dims].clamp(-span, span)  # what the sliders can show
    reset_to = z.clone()
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
    box = _LatentExplorer([panel, w.HBox(controls)])
    box.sliders = sliders
    box.image = image
    box.z = lambda: state["z"].clone()
    box.reset = reset
    box.randomize = randomize
    box.html = lambda: explorer_html(model, state["z"], z0=reset_to, span=span, step=step, dims=dims,
                                     y=state["y"], scale=scale, classes=classes, seed=seed)
    return box
