"""fit's stabilisers (issue 23, item 1): gradient-norm clipping and VDVAE-style update skipping.

Each is off by default, validated like fit's other arguments, part of a run's identity on
resume, and does what it says: the gradient that reaches Adam has norm ≤ ``grad_clip``; a step
whose gradient norm is above ``skip_threshold`` or not finite changes nothing and is counted.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

import vae_tutorial as vt
from vae_tutorial.errors import ArgumentError, ArgumentTypeError, ResumeMismatchError
from vae_tutorial.training.train import NonFiniteLossError, load_checkpoint, save_checkpoint

SMALL = (1, 8, 8)


def _model(seed=0):
    torch.manual_seed(seed)
    return vt.VAE(vt.MLPEncoder(SMALL, [16], 2), vt.MLPDecoder(2, [16], SMALL))


def _data(n=64):
    return (torch.rand(n, *SMALL, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def _fit(model, epochs=2, **kw):
    return vt.fit(model, _data(), epochs=epochs, batch_size=16, lr=1e-2, seed=0, progress=False, device="cpu",
                  **kw)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("arg", ["grad_clip", "skip_threshold"])
@pytest.mark.parametrize("bad,error", [(0.0, ArgumentError), (-1.0, ArgumentError), (math.nan, ArgumentError),
                                       (math.inf, ArgumentError), ("5", ArgumentTypeError),
                                       (True, ArgumentTypeError)])
def test_bad_values_are_refused_naming_the_argument(arg, bad, error):
    model = _model()
    before = _params(model)
    with pytest.raises(error, match=arg):
        _fit(model, **{arg: bad})
    assert all(torch.equal(a, b) for a, b in zip(before, _params(model)))  # refused before any step


def test_the_gradient_adam_sees_is_clipped():
    norms = []

    def hook(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        _fit(_model(), epochs=1)
        unclipped, norms[:] = list(norms), []
        _fit(_model(), epochs=1, grad_clip=1.0)
    finally:
        handle.remove()
    assert max(unclipped) > 2.0  # so the clip below had work to do
    assert len(norms) == 4 and max(norms) <= 1.0 + 1e-4


def test_a_loose_stabiliser_changes_nothing():
    plain, loose = _model(), _model()
    _fit(plain)
    h = _fit(loose, grad_clip=1e9, skip_threshold=1e9)
    assert all(torch.equal(a, b) for a, b in zip(_params(plain), _params(loose)))
    assert h["skipped_steps"] == [0, 0]
    assert "skipped_steps" not in _fit(_model(), epochs=1).keys()  # recorded only when skipping is on


def test_a_nonfinite_step_is_skipped_and_the_run_goes_on():
    calls = []

    def nan_once(model, x, beta, *, y=None, generator=None):
        terms = vt.elbo(model, x, beta, y=y, generator=generator)
        calls.append(1)
        if len(calls) == 3:  # one batch's loss (and gradient) is NaN
            terms = dataclasses.replace(terms, elbo=terms.elbo * math.nan)
        return terms

    with pytest.raises(NonFiniteLossError):
        _fit(_model(), elbo_fn=nan_once)
    calls.clear()
    h = _fit(_model(), elbo_fn=nan_once, skip_threshold=1e9)
    assert h["skipped_steps"] == [1, 0]
    assert all(math.isfinite(e) for e in h["train_elbo"])


def test_every_step_skipped_raises_and_leaves_the_model_alone():
    model = _model()
    before = _params(model)
    with pytest.raises(NonFiniteLossError, match="skip_threshold"):
        _fit(model, skip_threshold=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(before, _params(model)))


@pytest.mark.parametrize("arg,value", [("grad_clip", 5.0), ("skip_threshold", 100.0)])
def test_the_stabilisers_are_part_of_the_run_on_resume(arg, value, tmp_path):
    ck = tmp_path / "run.pt"
    _fit(_model(), epochs=1, checkpoint=ck)
    with pytest.raises(ResumeMismatchError, match=arg):
        _fit(_model(), epochs=2, checkpoint=ck, **{arg: value})
    ck2 = tmp_path / "run2.pt"
    _fit(_model(), epochs=1, checkpoint=ck2, **{arg: value})
    with pytest.raises(ResumeMismatchError, match=arg):
        _fit(_model(), epochs=2, checkpoint=ck2)
    assert len(_fit(_model(), epochs=2, checkpoint=ck2, **{arg: value})) == 2  # the same settings resume


def test_a_checkpoint_from_before_the_stabilisers_resumes_without_them(tmp_path):
    ck = tmp_path / "old.pt"
    _fit(_model(), epochs=1, checkpoint=ck)
    state = load_checkpoint(ck)
    for key in ("grad_clip", "skip_threshold"):
        del state["settings"][key]
    save_checkpoint(ck, state)
    assert len(_fit(_model(), epochs=2, checkpoint=ck)) == 2
    with pytest.raises(ResumeMismatchError, match="grad_clip"):
        _fit(_model(), epochs=3, checkpoint=ck, grad_clip=1.0)
