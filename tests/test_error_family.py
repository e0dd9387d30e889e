"""One error family (issue 21, root cause 7): every error the package raises on purpose
derives from ``VAETutorialError`` and names its argument, so ``except VAETutorialError``
catches all of them and a reader knows what to change.

A static check fails on any ``raise ValueError(...)``-style statement in the package; the
catalogue cases of the second red-team round (../shared/reviews/redteam-2026-12-07.md,
UNCLEAR and SILENT-WRONG) check the messages.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import vae_tutorial as vt
from vae_tutorial import amortisation as am
from vae_tutorial import compare, compression, gradient_snr
from vae_tutorial.errors import DataError, VAETutorialError

PACKAGE = Path(vt.__file__).resolve().parent
BUILTIN = {"ValueError", "TypeError", "IndexError", "KeyError", "RuntimeError", "AttributeError",
           "ZeroDivisionError", "OverflowError"}


def test_the_package_raises_no_bare_builtin_error():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):  # the sub-packages too
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in BUILTIN:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} raise {exc.id}")
    assert not found, ("raise an error of vae_tutorial.errors (ArgumentError, ArgumentTypeError, DataError, "
                       "...) instead: " + "; ".join(found))


def _vae(likelihood="bernoulli", **kw):
    return vt.VAE(vt.MLPEncoder((1, 8, 8), [8], 2), vt.MLPDecoder(2, [8], (1, 8, 8)), likelihood, **kw)


@pytest.mark.parametrize("case, call, words", [
    ("F50", lambda: vt.load_dataset("cifar10"), ["unknown data set", "cifar10"]),
    ("F51", lambda: vt.load_dataset("digits", "valid"), ["split", "valid"]),
    ("F52", lambda: vt.load_dataset("digits", binarize=True), ["binarize"]),
    ("F54", lambda: vt.load_dataset("digits").subset(0), ["subset size"]),
    ("F56", lambda: vt.load_dataset("digits").subset([0, 5000]), ["subset indices"]),
    ("F59", lambda: _vae("poisson"), ["likelihood", "poisson"]),
    ("R01", lambda: compare.mean_se([1.0]), ["two values"]),
    ("R04", lambda: compare.edge_energy(torch.rand(3, 8, 8)), ["(B, C, H, W)"]),
    ("R06", lambda: gradient_snr.iwae_gradient_snr(_vae(), torch.rand(4, 1, 8, 8).round(), k=2, repeats=1),
     ["repeats"]),
    ("R10", lambda: gradient_snr.iwae_gradient_snr(_vae(), torch.rand(4, 1, 8, 8).round(), k=2, repeats="3"),
     ["repeats"]),
    ("R17", lambda: am.gaussian_elbo(_vae(), torch.rand(2, 1, 8, 8).round(), torch.zeros(2, 2),
                                     torch.zeros(2, 2), samples=0), ["samples"]),
    ("R22", lambda: am.mixture_iwae_bound(_vae(), torch.rand(2, 1, 8, 8).round(), [], k=2), ["k must"]),
    ("R27", lambda: compression.bits_back_encode(_vae("gaussian"), torch.zeros(1, 1, 8, 8)), ["Bernoulli"]),
    ("R28", lambda: compression.bits_back_encode(_vae(), torch.zeros(1, 1, 8, 8), pixel_bits=40),
     ["pixel_bits"]),
    ("R31", lambda: compression.bits_back_encode(_vae(), torch.zeros(1, 1, 8, 8), latent_bits=-1),
     ["latent_bits"]),
])
def test_a_clear_message_is_a_vae_tutorial_error(case, call, words):
    with pytest.raises(VAETutorialError) as e:
        call()
    assert all(w in str(e.value) for w in words), (case, str(e.value))
    assert isinstance(e.value, (ValueError, TypeError))  # and still what older code caught


@pytest.mark.parametrize("pixel", [0.3, 2.0])
def test_the_lossless_codec_refuses_what_it_cannot_code_losslessly(pixel):  # R26, R32
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, 3, 3] = pixel
    with pytest.raises(DataError, match="neither 0 nor 1"):
        compression.bits_back_encode(_vae().eval(), images)


def test_numpy_scalars_are_accepted_where_python_numbers_are():  # F60
    model = _vae("gaussian", gaussian_logvar=np.float32(-1.0))
    assert float(model.obs_logvar) == pytest.approx(-1.0)


# ----------------------------------------------------------------- shapes and dtypes (root cause 4)

def _models():
    from vae_tutorial.models.autoregressive import PixelCNNDecoder, PixelVAE
    from vae_tutorial.models.diffusion import DiffusionModel
    from vae_tutorial.models.hierarchical import HierarchicalVAE

    return {
        "mlp": _vae(),
        "hierarchical": HierarchicalVAE.mlp((2, 2), (8, 8), in_features=(1, 8, 8)),
        "pixelvae": PixelVAE(vt.MLPEncoder((1, 8, 8), [8], 2), PixelCNNDecoder(2, (1, 8, 8), channels=4, layers=1)),
        "diffusion": DiffusionModel((1, 8, 8), steps=2, hidden=8),
        "conv": vt.VAE(vt.ConvEncoder(2, (4, 8), 16), vt.ConvDecoder(2, (8, 4), 16)),
    }


@pytest.mark.parametrize("name", ["mlp", "hierarchical", "pixelvae", "diffusion", "conv"])
@pytest.mark.parametrize("entry", ["fit", "fit valid=", "elbo", "iwae_bound", "evaluate_model"])
def test_images_of_another_shape_are_refused_before_any_work(name, entry):  # H15, H16, A15, D19, F13, F48
    model = _models()[name]
    wrong = torch.rand(8, 1, 12, 12).round()
    right = torch.rand(8, 1, 28, 28).round() if name == "conv" else torch.rand(8, 1, 8, 8).round()
    before = [p.detach().clone() for p in model.parameters()]
    calls = {"fit": lambda: vt.fit(model, wrong, epochs=1, progress=False),
             "fit valid=": lambda: vt.fit(model, right, epochs=1, valid=wrong, progress=False),
             "elbo": lambda: vt.elbo(model, wrong),
             "iwae_bound": lambda: vt.iwae_bound(model, wrong, 2),
             "evaluate_model": lambda: vt.evaluate_model(model, wrong, k=2)}
    with pytest.raises(DataError, match=r"shape .*\(1, 12, 12\)"):
        calls[entry]()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))  # not a step taken


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_float64_and_half_batches_are_converted(dtype):  # H18, D29
    from vae_tutorial.models.diffusion import DiffusionModel

    for model in (_vae(), DiffusionModel((1, 8, 8), steps=2, hidden=8)):
        x = torch.rand(4, 1, 8, 8).round().to(dtype)
        assert vt.elbo(model, x).elbo.dtype == torch.float32
