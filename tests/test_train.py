"""vae_tutorial.training.train: learning, determinism, checkpoints and resume, failure modes, options."""
import math
import os
import pickle

import pytest
import torch

import vae_tutorial as vt
from vae_tutorial.training.data import ImageDataset
from vae_tutorial.errors import DataError
from vae_tutorial.training.train import NonFiniteLossError, load_checkpoint, save_checkpoint

SHAPE = (1, 8, 8)
FIT = dict(device="cpu", progress=False)


@pytest.fixture(scope="module")
def digits():
    return vt.load_dataset("digits"), vt.load_dataset("digits", "test")


@pytest.fixture(scope="module")
def small(digits):
    """512 training digits: 8 steps per epoch at batch size 64."""
    return digits[0].subset(512)


def mlp_vae(seed=0, z=2, likelihood="bernoulli"):
    torch.manual_seed(seed)
    return vt.VAE(vt.MLPEncoder(SHAPE, [32], z), vt.MLPDecoder(z, [32], SHAPE), likelihood)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history.records]


def ls(folder):
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- learning


def test_fit_improves_validation_elbo(digits):
    train, valid = digits
    model = mlp_vae(z=4)
    h = vt.fit(model, train, epochs=5, valid=valid, seed=0, **FIT)
    assert len(h) == 5 and h["epoch"] == [1, 2, 3, 4, 5]
    for key in ("train_elbo", "train_reconstruction", "train_kl", "valid_elbo", "valid_reconstruction",
                "valid_kl", "beta", "seconds"):
        assert len(h[key]) == 5 and all(math.isfinite(v) for v in h[key]), key
    for rec in h.records:  # the recorded terms fit together: ELBO = reconstruction − KL (β = 1)
        assert rec["valid_elbo"] == pytest.approx(rec["valid_reconstruction"] - rec["valid_kl"], abs=1e-4)
        assert rec["train_elbo"] == pytest.approx(rec["train_reconstruction"] - rec["train_kl"], abs=1e-4)
    # measured: epoch 1 ≈ −42 nats, epoch 5 ≈ −32 (seeds 0–2 improve by 9.4–10.3 nats)
    assert h["valid_elbo"][-1] > h["valid_elbo"][0] + 5


def test_same_seed_same_parameters_on_cpu(small):
    a, b = mlp_vae(), mlp_vae()
    ha = vt.fit(a, small, epochs=2, batch_size=64, seed=3, **FIT)
    hb = vt.fit(b, small, epochs=2, batch_size=64, seed=3, **FIT)
    assert_same_params(params(a), params(b))
    assert without_seconds(ha) == without_seconds(hb)
    c = mlp_vae()
    vt.fit(c, small, epochs=2, batch_size=64, seed=4, **FIT)
    assert not torch.equal(params(a)["decoder.net.2.weight"], params(c)["decoder.net.2.weight"])


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def uninterrupted(small):
    model = mlp_vae()
    h = vt.fit(model, small, epochs=4, batch_size=64, seed=1, **FIT)
    return params(model), without_seconds(h)


def test_resume_after_two_epochs_equals_uninterrupted_run(small, uninterrupted, tmp_path):
    ckpt = tmp_path / "run.pt"
    h2 = vt.fit(mlp_vae(), small, epochs=2, batch_size=64, seed=1, checkpoint=ckpt, **FIT)
    assert len(h2) == 2 and load_checkpoint(ckpt)["epoch"] == 2
    resumed = mlp_vae(seed=99)  # a fresh process would start from other weights: they are replaced
    h4 = vt.fit(resumed, small, epochs=4, batch_size=64, seed=1, checkpoint=ckpt, **FIT)
    assert_same_params(params(resumed), uninterrupted[0])
    assert without_seconds(h4) == uninterrupted[1]
    assert ls(tmp_path) == ["run.pt"]  # written atomically: no temporary files left
    # a finished run resumed again does nothing more
    again = mlp_vae(seed=5)
    h = vt.fit(again, small, epochs=4, batch_size=64, seed=1, checkpoint=ckpt, **FIT)
    assert len(h) == 4
    assert_same_params(params(again), uninterrupted[0])


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_crash_mid_epoch_keeps_last_checkpoint_and_resumes_exactly(small, uninterrupted, tmp_path, error):
    ckpt = tmp_path / "run.pt"
    calls = []

    def crashing_elbo(model, x, beta=1.0, *, y=None, generator=None):
        calls.append(1)
        if len(calls) == 2 * 8 + 3:  # epoch 3, step 3 (8 steps per epoch)
            raise error("simulated crash")
        return vt.elbo(model, x, beta, y=y, generator=generator)

    with pytest.raises(error, match="simulated crash"):
        vt.fit(mlp_vae(), small, epochs=4, batch_size=64, seed=1, checkpoint=ckpt, elbo_fn=crashing_elbo, **FIT)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert ls(tmp_path) == ["run.pt"]
    resumed = mlp_vae(seed=7)
    # the same objective (a custom elbo_fn is part of the run); it crashes only once
    vt.fit(resumed, small, epochs=4, batch_size=64, seed=1, checkpoint=ckpt, elbo_fn=crashing_elbo, **FIT)
    assert_same_params(params(resumed), uninterrupted[0])


def test_failed_save_leaves_previous_checkpoint_and_no_temp_file(tmp_path):
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"epoch": 1, "w": torch.ones(3)})
    before = ckpt.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint(ckpt, {"epoch": 2, "bad": lambda: None})  # lambdas cannot be pickled
    assert ckpt.read_bytes() == before
    assert ls(tmp_path) == ["c.pt"]
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_corrupt_checkpoint_is_reported_and_not_overwritten(small, tmp_path):
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(b"PK\x03\x04 this is not a whole checkpoint")
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match="broken.pt.*not a readable"):
        vt.fit(mlp_vae(), small, epochs=1, batch_size=64, checkpoint=ckpt, **FIT)
    assert ckpt.read_bytes() == before


class Payload:
    """An arbitrary class: unpickling it could run code, so weights_only must refuse it."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_checkpoint_loads_weights_only(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model": {"w": torch.arange(3.0)}, "history": [{"epoch": 1, "train_elbo": -1.5}]})
    state = load_checkpoint(good)
    assert torch.equal(state["model"]["w"], torch.arange(3.0)) and state["history"][0]["train_elbo"] == -1.5
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        torch.save({"model": {}, "x": Payload()}, f, pickle_module=pickle)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(evil)


def test_mismatched_settings_or_model_are_refused(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    vt.fit(mlp_vae(), small, epochs=1, batch_size=64, seed=0, checkpoint=ckpt, **FIT)
    with pytest.raises(ValueError, match="was made with .*batch_size.*64.*32"):
        vt.fit(mlp_vae(), small, epochs=2, batch_size=32, seed=0, checkpoint=ckpt, **FIT)
    with pytest.raises(ValueError, match="seed"):
        vt.fit(mlp_vae(), small, epochs=2, batch_size=64, seed=1, checkpoint=ckpt, **FIT)
    with pytest.raises(ValueError, match="does not fit this model"):
        vt.fit(mlp_vae(z=3), small, epochs=2, batch_size=64, seed=0, checkpoint=ckpt, **FIT)
    assert load_checkpoint(ckpt)["epoch"] == 1


# ----------------------------------------------------------------------------- failures


def test_huge_learning_rate_raises_non_finite_loss_error_without_checkpoint(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+"):
        vt.fit(mlp_vae(), small, epochs=2, batch_size=64, lr=1e10, checkpoint=ckpt, **FIT)
    assert not ckpt.exists()


def test_nan_data_is_refused_and_keeps_the_previous_epoch_checkpoint(small, tmp_path):
    ckpt = tmp_path / "run.pt"
    vt.fit(mlp_vae(), small, epochs=1, batch_size=64, checkpoint=ckpt, **FIT)
    bad = small.images.clone()
    bad[17, 0, 3, 3] = float("nan")
    # The data are checked once, before any step: the NaN is named, not trained on.
    with pytest.raises(DataError, match=r"NaN or infinite pixels \(first in example 17\)"):
        vt.fit(mlp_vae(), bad, epochs=3, batch_size=64, checkpoint=ckpt, **FIT)
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_bad_arguments(small):
    with pytest.raises(ValueError, match="objective"):
        vt.fit(mlp_vae(), small, epochs=1, objective="elbow", **FIT)
    with pytest.raises(ValueError, match="batch_size"):
        vt.fit(mlp_vae(), small, epochs=1, batch_size=0, **FIT)


# ----------------------------------------------------------------------------- options


def test_linear_warmup_values():
    s = vt.linear_warmup(4)
    assert [s(t) for t in (0, 1, 2, 4, 10)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    s2 = vt.linear_warmup(2, beta=3.0)
    assert [s2(t) for t in (0, 0.5, 2, 3)] == [0.0, 0.75, 3.0, 3.0]
    with pytest.raises(ValueError, match="positive"):
        vt.linear_warmup(0)


def test_beta_schedule_is_applied_per_step(small):
    betas = []

    def recording_elbo(model, x, beta=1.0, *, y=None, generator=None):
        betas.append(beta)
        return vt.elbo(model, x, beta, y=y, generator=generator)

    h = vt.fit(mlp_vae(), small, epochs=3, batch_size=64, beta=vt.linear_warmup(2), elbo_fn=recording_elbo, **FIT)
    assert len(betas) == 24
    assert betas[:8] == pytest.approx([s / 8 / 2 for s in range(8)])  # β(t) with t = epoch + step/steps
    assert betas[16:] == [1.0] * 8
    assert h["beta"] == [0.5, 1.0, 1.0]


def test_learning_rate_schedule_is_applied_per_step_and_resumes_exactly(small, tmp_path):
    from vae_tutorial.errors import ArgumentError, ArgumentTypeError, ResumeMismatchError
    from vae_tutorial.training.train import exponential_decay

    s = exponential_decay(1e-2, half_life=2.0, floor=1e-3)
    assert [s(t) for t in (0, 2, 4)] == pytest.approx([1e-2, 5e-3, 2.5e-3]) and s(100) == 1e-3
    rates = []

    class Spy(torch.optim.Adam):
        def step(self, closure=None):
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    real = torch.optim.Adam
    torch.optim.Adam = Spy
    try:
        vt.fit(mlp_vae(), small, epochs=2, batch_size=64, lr=s, **FIT)
    finally:
        torch.optim.Adam = real
    assert rates == pytest.approx([s(e + k / 8) for e in range(2) for k in range(8)])
    # a constant schedule is the constant learning rate, bit for bit
    a, b = mlp_vae(), mlp_vae()
    vt.fit(a, small, epochs=2, batch_size=64, lr=lambda t: 1e-3, **FIT)
    vt.fit(b, small, epochs=2, batch_size=64, lr=1e-3, **FIT)
    assert_same_params(params(a), params(b))
    # resuming from a checkpoint follows the schedule: same weights as one uninterrupted run
    whole, parts = mlp_vae(), mlp_vae()
    vt.fit(whole, small, epochs=3, batch_size=64, lr=s, **FIT)
    ckpt = tmp_path / "run.pt"
    for e in (1, 2, 3):
        vt.fit(parts, small, epochs=e, batch_size=64, lr=s, checkpoint=ckpt, **FIT)
    assert_same_params(params(whole), params(parts))
    with pytest.raises(ResumeMismatchError, match="learning-rate schedule"):
        vt.fit(mlp_vae(), small, epochs=4, batch_size=64, lr=exponential_decay(1e-2, 1.0), checkpoint=ckpt, **FIT)
    with pytest.raises(ArgumentError, match="learning-rate schedule gave 0.0"):
        vt.fit(mlp_vae(), small, epochs=1, lr=lambda t: 0.0, **FIT)
    with pytest.raises(ArgumentError, match="at epoch 0.500"):
        vt.fit(mlp_vae(), small, epochs=1, batch_size=64, lr=lambda t: 1e-3 if t < 0.5 else -1.0, **FIT)
    with pytest.raises(ArgumentTypeError, match="lr must be a number or a schedule"):
        vt.fit(mlp_vae(), small, epochs=1, lr=lambda t: "fast", **FIT)


def test_free_bits_changes_the_loss(small):
    base = mlp_vae()
    vt.fit(base, small, epochs=1, batch_size=64, **FIT)
    fb = mlp_vae()
    vt.fit(fb, small, epochs=1, batch_size=64, free_bits=0.5, **FIT)
    assert not torch.equal(params(base)["encoder.net.2.weight"], params(fb)["encoder.net.2.weight"])
    # with λ above every dimension's KL the KL term is constant: no gradient, same updates as β = 0
    huge, beta0 = mlp_vae(), mlp_vae()
    vt.fit(huge, small, epochs=1, batch_size=64, free_bits=1e6, **FIT)
    vt.fit(beta0, small, epochs=1, batch_size=64, beta=0.0, **FIT)
    for k, v in params(huge).items():
        torch.testing.assert_close(v, params(beta0)[k], rtol=1e-6, atol=1e-7)



@pytest.mark.parametrize("kind", ["diffusion", "autoencoder", "elbo_fn"])
def test_free_bits_without_a_per_dimension_kl_is_an_error(small, kind):
    # Before the fix free_bits was silently ignored for these models: training ran the plain ELBO.
    from vae_tutorial.models.diffusion import DiffusionModel
    from vae_tutorial.errors import ArgumentError

    torch.manual_seed(0)
    options = {}
    if kind == "diffusion":
        model, name = DiffusionModel(SHAPE, steps=4, hidden=8), "DiffusionModel"
    elif kind == "autoencoder":
        model = vt.Autoencoder(vt.MLPEncoder(SHAPE, [32], 2), vt.MLPDecoder(2, [32], SHAPE))
        name = "Autoencoder"
    else:  # a replacement loss that drops the per-dimension KL
        def no_per_dim(*args, **kwargs):
            terms = vt.elbo(*args, **kwargs)
            return type(terms)(terms.elbo, terms.reconstruction, terms.kl, None)

        model, name, options = mlp_vae(), "VAE", {"elbo_fn": no_per_dim}
    before = params(model)
    with pytest.raises(ArgumentError, match=rf"free_bits=0.5 .*{name}.*pass free_bits=0"):
        vt.fit(model, small, epochs=1, batch_size=64, free_bits=0.5, **options, **FIT)
    assert_same_params(before, params(model))  # raised before the first update
    vt.fit(model, small, epochs=1, batch_size=64, free_bits=0.0, **options, **FIT)  # λ = 0: fine

def test_iwae_objective_trains(small):
    model = mlp_vae()
    before = params(model)
    h = vt.fit(model, small, epochs=2, batch_size=64, objective="iwae", iwae_k=4, **FIT)
    assert len(h) == 2 and all(math.isfinite(v) for v in h["train_elbo"])
    assert not torch.equal(before["decoder.net.2.weight"], params(model)["decoder.net.2.weight"])
    # a different objective is a different run: its checkpoint settings say so
    other = mlp_vae()
    vt.fit(other, small, epochs=2, batch_size=64, **FIT)
    assert not torch.equal(params(other)["decoder.net.2.weight"], params(model)["decoder.net.2.weight"])


def grey_dataset(binarize):
    images = torch.full((8, 1, 4, 4), 0.5)
    return ImageDataset(images, torch.zeros(8, dtype=torch.long), classes=["a"], name="grey", split="train",
                        binarize=binarize)


@pytest.mark.parametrize("binarize", ["dynamic", None])
def test_dynamic_binarisation_resamples_each_epoch(binarize):
    seen = []

    def recording_elbo(model, x, beta=1.0, *, y=None, generator=None):
        seen.append(sorted(map(tuple, x.reshape(8, -1).tolist())))  # the rows, order-free
        return vt.elbo(model, x, beta, y=y, generator=generator)

    torch.manual_seed(0)
    model = vt.VAE(vt.MLPEncoder(16, [], 2), vt.MLPDecoder(2, [], (1, 4, 4)))
    vt.fit(model, grey_dataset(binarize), epochs=3, batch_size=8, elbo_fn=recording_elbo, **FIT)
    assert len(seen) == 3
    if binarize == "dynamic":
        assert all(set(v for row in epoch for v in row) <= {0.0, 1.0} for epoch in seen)
        assert seen[0] != seen[1] and seen[1] != seen[2]
    else:
        assert seen[0] == seen[1] == seen[2]


def test_conditional_vae_trains_with_labels(small):
    torch.manual_seed(0)
    c = 10
    model = vt.ConditionalVAE(vt.MLPEncoder(64 + c, [32], 2), vt.MLPDecoder(2 + c, [32], SHAPE), num_classes=c)
    h = vt.fit(model, small, epochs=3, batch_size=64, valid=small.subset(128), **FIT)
    assert all(math.isfinite(v) for v in h["valid_elbo"])
    assert h["train_elbo"][-1] > h["train_elbo"][0]
    with pytest.raises(ValueError, match="needs a data set with labels"):
        vt.fit(model, small.images, epochs=1, **FIT)
